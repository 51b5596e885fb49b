"""`make demo`, `make up`, `make down`: the Twilio sandbox and a local Airflow, in `.demo/`.

    python -m scripts.stack demo [--keep]   # start, trigger one run via the REST API, print the outcome, stop
    python -m scripts.stack up              # start in the background and print the UI URL and login
    python -m scripts.stack down            # stop what `up` (or `demo --keep`) started

Exit codes of `demo`: 0 delivered, 1 not delivered, 2 the demo itself failed, 3 unconfirmed
(scripts/demo_outcome.py).

Environment:
    AIRFLOW_PORT (28080), SANDBOX_PORT (8099)       ports on 127.0.0.1
    AIRFLOW_ADMIN_PASSWORD (admin)                  password of the `admin` UI user
    AIRFLOW__DATABASE__SQL_ALCHEMY_CONN             the metadata DB (default: SQLite in WAL mode in .demo/;
                                                    e.g. postgresql+psycopg2://postgres@127.0.0.1/airflow)
    KEEP=1                                          same as `demo --keep`
    DEMO_STEP_DELAY (1.5)                           sandbox seconds per delivery status step
    DEMO_TO (+15551234567)                          sandbox recipient; ending in 3003 -> undelivered (exit 1),
                                                    7777 -> no receipt (unconfirmed, exit 3)
    TWILIO_POKE_INTERVAL, TWILIO_MAX_WAIT,          checkStatus polling (demo: 3 s backing off to 6 s, 240 s
    TWILIO_STATUS_TIMEOUT                           timeout; real Twilio: 10 s, 30 s, 600 s)
    TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN,          real Twilio instead of the sandbox; the token is passed to
    TWILIO_FROM, TWILIO_TO                          Airflow only through the twilio_default connection
    TWILIO_CALLBACK_BASE_URL                        where status callbacks go (the api-server's receiver);
                                                    default with the sandbox: http://127.0.0.1:AIRFLOW_PORT
                                                    (callbacks on); with real Twilio: none (callbacks off,
                                                    Twilio cannot reach 127.0.0.1; give a public URL)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx

from sandbox import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN
from scripts.airflow_client import APIError, RunResult
from scripts.airflow_stack import REPO, AirflowStack, StackError, port_is_free
from scripts.demo_outcome import EXIT_DEMO_ERROR, EXIT_MEANINGS, RunFacts, demo_outcome
from scripts.process_groups import alive_pid_files, start_process, stop_pid_files
from twilio_messaging.errors import describe as describe_error

DAG_ID = "twilio_send_message_track_status"
DEMO_HOME = REPO / ".demo"
SANDBOX_FROM = "+15005550006"  # Twilio's magic "From" that always succeeds; the sandbox honours it too
SANDBOX_TO = "+15551234567"  # any number not in the sandbox's outcome table is delivered
END_TASKS = ("delivered", "failed")
RUN_TIMEOUT = 300.0  # seconds the demo waits for its run to finish


def say(text: str = "") -> None:
    print(text, flush=True)


class Settings:
    """Everything the three commands read from the environment, checked once."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.airflow_port = _port(env, "AIRFLOW_PORT", 28080)
        self.sandbox_port = _port(env, "SANDBOX_PORT", 8099)
        self.admin_password = env.get("AIRFLOW_ADMIN_PASSWORD") or "admin"
        self.step_delay = env.get("DEMO_STEP_DELAY") or "1.5"
        self.keep = env.get("KEEP", "").lower() in ("1", "true", "yes")
        self.account_sid = env.get("TWILIO_ACCOUNT_SID", "")
        self.auth_token = env.get("TWILIO_AUTH_TOKEN", "")
        self.real = bool(self.account_sid and self.auth_token)
        self.from_ = env.get("TWILIO_FROM", "") if self.real else SANDBOX_FROM
        self.to = env.get("TWILIO_TO", "") if self.real else (env.get("DEMO_TO") or SANDBOX_TO)
        # Demo-friendly polling; the DAG's production defaults (60 s, backing off to 15 min) stay untouched.
        self.poke_interval = env.get("TWILIO_POKE_INTERVAL") or ("10" if self.real else "3")
        self.max_wait = env.get("TWILIO_MAX_WAIT") or ("30" if self.real else "6")
        self.status_timeout = env.get("TWILIO_STATUS_TIMEOUT") or ("600" if self.real else "240")
        # Push first: the sandbox calls the api-server's receiver on loopback; real Twilio needs a public URL.
        local_receiver = f"http://127.0.0.1:{self.airflow_port}"
        given = env.get("TWILIO_CALLBACK_BASE_URL")  # set but empty: callbacks off
        self.callback_base_url = given if given is not None else ("" if self.real else local_receiver)
        # Airflow's own setting, honoured: PostgreSQL for a stack that several people click at once.
        self.database = env.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN") or None

    def twilio_conn(self) -> dict[str, Any]:
        """The twilio_default connection: real Twilio over https, or the sandbox with its own credentials."""
        if self.real:
            return http_connection("api.twilio.com", None, "https", self.account_sid, self.auth_token)
        return http_connection(
            "127.0.0.1", self.sandbox_port, "http", DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN
        )

    def target(self) -> str:
        return (
            "the REAL Twilio API (https://api.twilio.com)"
            if self.real
            else f"the sandbox on :{self.sandbox_port}"
        )


def http_connection(host: str, port: int | None, schema: str, login: str, password: str) -> dict[str, Any]:
    """A connection in Airflow's JSON form; the URI form would silently turn https into http."""
    conn: dict[str, Any] = {"conn_type": "http", "host": host, "schema": schema, "login": login}
    if port is not None:
        conn["port"] = port
    return {**conn, "password": password}


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name) or str(default)
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise SystemExit(f"{name}={raw!r} is not a port number (1-65535)")
    return int(raw)


def running(home: Path) -> list[str]:
    """Names of components from an earlier `up` whose process group is still alive."""
    return list(alive_pid_files(home / "pids"))


def check_ports(settings: Settings) -> None:
    busy = [
        f"{name}={port}"
        for name, port, needed in (
            ("AIRFLOW_PORT", settings.airflow_port, True),
            ("SANDBOX_PORT", settings.sandbox_port, not settings.real),
        )
        if needed and not port_is_free(port)
    ]
    if busy:
        raise StackError(
            f"port busy on 127.0.0.1: {', '.join(busy)}. Stop whatever uses it (`make down` if it is an "
            "earlier `make up`), or pick other ports, e.g. `AIRFLOW_PORT=28081 SANDBOX_PORT=8098 make demo`."
        )


def start_sandbox(settings: Settings, home: Path) -> None:
    """Run the sandbox as a separate process group, pid in .demo/pids/sandbox.pid; wait until it answers."""
    argv = [
        sys.executable,
        "-m",
        "sandbox",
        "--host",
        "127.0.0.1",
        "--port",
        str(settings.sandbox_port),
        "--step-delay",
        settings.step_delay,
    ]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    log_file = home / "process-logs" / "sandbox.log"
    proc = start_process(
        "sandbox", argv, env=env, cwd=REPO, log_file=log_file, pid_file=home / "pids" / "sandbox.pid"
    )
    url = f"http://127.0.0.1:{settings.sandbox_port}/_sandbox/health"
    deadline = time.monotonic() + 30
    with httpx.Client(timeout=2.0, trust_env=False) as http:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise StackError(f"the sandbox exited ({proc.returncode}); see {log_file}")
            try:
                if http.get(url).status_code == 200:
                    say(f"Twilio sandbox is up on http://127.0.0.1:{settings.sandbox_port} (pid {proc.pid})")
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
    raise StackError(f"the sandbox did not answer {url} within 30 s; see {log_file}")


def build_stack(settings: Settings, home: Path) -> AirflowStack:
    return AirflowStack(
        home,
        api_port=settings.airflow_port,
        twilio_conn=settings.twilio_conn(),
        admin_password=settings.admin_password,
        sql_alchemy_conn=settings.database,
        extra_env={
            "TWILIO_POKE_INTERVAL": settings.poke_interval,
            "TWILIO_MAX_WAIT": settings.max_wait,
            "TWILIO_STATUS_TIMEOUT": settings.status_timeout,
            "TWILIO_BATCH_STATUS_TIMEOUT": settings.status_timeout,
            # The trigger form's `from` default, so the form is complete as offered.
            "TWILIO_DEFAULT_FROM": settings.from_,
            "TWILIO_CALLBACK_BASE_URL": settings.callback_base_url,
        },
        log=lambda text: say(f"  {text}"),
    )


def start_all(settings: Settings, home: Path) -> AirflowStack:
    """Sandbox (unless real Twilio) and Airflow, with the DAG parsed and unpaused."""
    check_ports(settings)
    home.mkdir(parents=True, exist_ok=True)
    say(f"Messages go to {settings.target()}.")
    stack = build_stack(settings, home)
    try:
        if not settings.real:
            start_sandbox(settings, home)
        say(f"Starting Airflow 3 (api-server, scheduler, dag-processor, triggerer) in {home} ...")
        stack.start(wait_for_dags=[DAG_ID])
        stack.client().unpause(DAG_ID)
    except BaseException:
        stop_pid_files(home / "pids", log=lambda text: say(f"  {text}"))
        raise
    return stack


def login_text(settings: Settings, stack: AirflowStack) -> str:
    return (
        f"  UI:    {stack.base_url}/dags/{DAG_ID}\n"
        f"  Login: admin / {settings.admin_password}\n"
        f"  Logs:  {stack.log_dir}/ (components), {stack.home / 'logs'}/ (task logs)\n"
        "  Stop:  make down"
    )


# --------------------------------------------------------------------------------------------------------
# demo
# --------------------------------------------------------------------------------------------------------


def demo_conf(settings: Settings) -> dict[str, Any]:
    return {
        "to": settings.to,
        "from": settings.from_,
        "body": "Hello from Airflow! This message was sent and tracked by twilio_send_message_track_status.",
    }


def progress_printer(poke_interval: str) -> Callable[[float, str, str | None, int], None]:
    explained: set[str] = set()

    def on_change(elapsed: float, task_id: str, state: str | None, try_number: int) -> None:
        if task_id == "<run>":
            say(f"  {elapsed:6.1f}s  run                {state}")
            return
        if state is None:
            return
        note = ""
        if state == "up_for_reschedule" and "reschedule" not in explained:
            explained.add("reschedule")
            note = f"  <- not final yet; the sensor gave back its worker slot, next poke in {poke_interval}s"
        if try_number > 1 and state in ("running", "queued") and task_id not in explained:
            explained.add(task_id)
            note = (
                "  <- the scheduler's reschedule race (apache/airflow#71172) absorbed by a sensor retry; "
                "no second SMS"
                if task_id == "checkStatus"
                else "  <- retry (its log says why)"
            )
        say(f"  {elapsed:6.1f}s  {task_id:<18} {state:<18} try {try_number}{note}")

    return on_change


def path_taken(result: RunResult) -> str:
    ran = [ti for ti in result.tasks.values() if ti.get("state") not in (None, "skipped", "removed")]
    ran.sort(key=lambda ti: ti.get("start_date") or "9999")
    return " -> ".join(ti["task_id"] for ti in ran)


def sandbox_outcomes(settings: Settings) -> dict[str, str]:
    """The sandbox's outcome table ({last digits of To: description}); empty against real Twilio."""
    if settings.real:
        return {}
    url = f"http://127.0.0.1:{settings.sandbox_port}/_sandbox/config"
    try:
        return dict(httpx.get(url, timeout=5.0, trust_env=False).json().get("outcomes") or {})
    except (httpx.HTTPError, ValueError):
        return {}


def run_demo(settings: Settings, home: Path) -> int:
    if settings.real and not (settings.from_ and settings.to):
        raise StackError("real Twilio mode needs TWILIO_FROM and TWILIO_TO too (E.164, e.g. +15551234567)")
    if running(home):
        raise StackError(
            f"a stack from `make up` is still running ({', '.join(running(home))}); `make down` first"
        )
    started = time.monotonic()
    stack = start_all(settings, home)
    exit_code = EXIT_DEMO_ERROR
    try:
        client = stack.client()
        conf = demo_conf(settings)
        run_id = f"demo__{time.strftime('%Y%m%dT%H%M%S')}"
        say(f"\nTriggering {DAG_ID} via POST /api/v2/dags/{DAG_ID}/dagRuns (run_id {run_id})")
        say(f"  conf: {json.dumps(conf)}")
        client.trigger(DAG_ID, conf, run_id=run_id)
        say("Progress (task state changes):")
        result = client.wait_for_run(
            DAG_ID, run_id, timeout=RUN_TIMEOUT, on_change=progress_printer(settings.poke_interval)
        )
        end_task = next((t for t in END_TASKS if result.task_state(t) in ("success", "failed")), None)
        outputs = client.xcoms(DAG_ID, run_id, end_task) if end_task else {}
        routed = client.xcom(DAG_ID, run_id, "routeByStatus", "outcome") or {}
        say("\nOutcome")
        say(f"  run state:    {result.state} (in {result.seconds:.1f}s)")
        say(f"  path taken:   {path_taken(result)}")
        say(f"  messageSid:   {outputs.get('messageSid')}")
        say(f"  finalStatus:  {outputs.get('finalStatus')}")
        error_code = outputs.get("errorCode")
        meaning = f" - {describe_error(error_code)}" if error_code not in (None, "") else ""
        say(f"  errorCode:    {error_code}{meaning}")
        if result.try_number("checkStatus") > 1:
            say(
                f"  checkStatus:  try {result.try_number('checkStatus')}: the reschedule race "
                "(apache/airflow#71172) absorbed by a sensor retry, not a second SMS"
            )
        if settings.keep:
            say(f"  open the run: {stack.base_url}/dags/{DAG_ID}/runs/{run_id}")
        facts = RunFacts(
            run_state=result.state,
            task_states={task_id: result.task_state(task_id) for task_id in END_TASKS},
            outputs=outputs,
            reason=routed.get("reason"),
            to=settings.to,
            sandbox_outcomes=sandbox_outcomes(settings),
        )
        outcome = demo_outcome(facts)
        say("\n" + outcome.text())
        if end_task and outcome.exit_code:
            say(f"  task logs: {stack.home / 'logs'}/dag_id={DAG_ID}/run_id={run_id}/")
        exit_code = outcome.exit_code
    finally:
        if settings.keep:
            stack.detach()
            say("\nLeft running (KEEP=1 / --keep):\n" + login_text(settings, stack))
        else:
            say("\nStopping what the demo started (sandbox and the Airflow components) ...")
            stack.stop()
            stop_pid_files(home / "pids", log=lambda text: say(f"  {text}"))
            say("  done. Run `make up` to explore the UI, or `KEEP=1 make demo` to keep this stack running.")
    say(f"\nExit code {exit_code} ({EXIT_MEANINGS[exit_code]}), total {time.monotonic() - started:.0f}s")
    return exit_code


# --------------------------------------------------------------------------------------------------------
# up / down
# --------------------------------------------------------------------------------------------------------


def run_up(settings: Settings, home: Path) -> int:
    alive = running(home)
    if alive:
        say(f"Already running ({', '.join(alive)}).")
        say(f"  UI:    http://127.0.0.1:{settings.airflow_port}/dags/{DAG_ID}")
        say(f"  Login: admin / {settings.admin_password} (AIRFLOW_ADMIN_PASSWORD as set at `make up`)")
        say("  Stop:  make down")
        return 0
    stack = start_all(settings, home)
    stack.detach()
    say("\nAirflow is running in the background.\n" + login_text(settings, stack))
    say(f"  Trigger: open the UI, click Trigger on {DAG_ID}, fill in the form (to, from, body, ...).")
    return 0


def run_down(home: Path) -> int:
    stopped = stop_pid_files(home / "pids", log=lambda text: say(f"  {text}"))
    say("Stopped." if stopped else "Nothing was running.")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.stack", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="start, trigger one run, print the outcome, stop")
    demo.add_argument("--keep", action="store_true", help="leave the stack running afterwards (or KEEP=1)")
    sub.add_parser("up", help="start the stack in the background")
    sub.add_parser("down", help="stop the stack")
    args = parser.parse_args(argv)
    home = DEMO_HOME
    started = time.monotonic()
    try:
        if args.command == "down":
            return run_down(home)
        settings = Settings(os.environ)
        if args.command == "demo":
            settings.keep = settings.keep or args.keep
            return run_demo(settings, home)
        return run_up(settings, home)
    except (StackError, APIError) as exc:
        say(f"\nERROR: {exc}")
        if args.command == "demo":  # the demo's last line is its exit code, whatever went wrong
            total = time.monotonic() - started
            say(f"\nExit code {EXIT_DEMO_ERROR} ({EXIT_MEANINGS[EXIT_DEMO_ERROR]}), total {total:.0f}s")
        return EXIT_DEMO_ERROR
    except KeyboardInterrupt:
        say("\nInterrupted; stopping ...")
        stop_pid_files(home / "pids", log=lambda text: say(f"  {text}"))
        return 130


if __name__ == "__main__":
    sys.exit(main())

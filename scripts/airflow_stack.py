"""A real, local Airflow 3 stack (api-server, scheduler, dag-processor, triggerer) and a small REST client.

Used by `make demo/up/down` (scripts/stack.py), by the end-to-end tests (tests/e2e) and by the Celery test.
Every component runs as its own process in its own process group, with its pid in ``<home>/pids/`` so that
another process (``make down``) can stop it later. Nothing listens on anything but 127.0.0.1 except the
log servers, which Airflow binds to all interfaces; they get free ports so parallel stacks never collide.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
DEFAULT_COMPONENTS: tuple[str, ...] = ("scheduler", "dag-processor", "triggerer", "api-server")
# Airflow CLI arguments per component name.
COMPONENT_COMMANDS: dict[str, list[str]] = {
    "scheduler": ["scheduler"],
    "dag-processor": ["dag-processor"],
    "triggerer": ["triggerer"],
    "api-server": ["api-server"],
    "celery-worker": ["celery", "worker"],
}
# Component name -> key in /api/v2/monitor/health that must report "healthy".
HEALTH_KEYS: dict[str, str] = {
    "scheduler": "scheduler",
    "dag-processor": "dag_processor",
    "triggerer": "triggerer",
}
SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
TERMINAL_RUN_STATES = frozenset({"success", "failed"})

Log = Callable[[str], None]


class StackError(RuntimeError):
    """The stack could not be started, or a component died."""


def free_port(host: str = "127.0.0.1") -> int:
    """Return a port that is free on ``host`` right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True if nothing is bound to ``host:port`` (and nothing on all interfaces either)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


# --------------------------------------------------------------------------------------------------------
# Processes in their own process group, tracked by pid files.
# --------------------------------------------------------------------------------------------------------


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def start_process(
    name: str, argv: Sequence[str], *, env: Mapping[str, str], cwd: Path, log_file: Path, pid_file: Path
) -> subprocess.Popen:
    """Start ``argv`` in a new session (so it leads its own process group) and record its pid."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as out:
        proc = subprocess.Popen(
            list(argv),
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    pid_file.write_text(f"{proc.pid}\n")
    return proc


def stop_process_group(pid: int, *, timeout: float = 20.0) -> bool:
    """SIGTERM the process group led by ``pid``, SIGKILL what is left after ``timeout``.

    Returns True if the group existed. Callers holding only a pid file check ``expect_ok`` first.
    """
    if not _group_alive(pid):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _group_alive(pid):
            return True
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, 0)
    return True


def read_pid_files(pid_dir: Path) -> dict[str, int]:
    """{name: pid} for every ``pid_dir/<name>.pid``."""
    pids: dict[str, int] = {}
    for pid_file in sorted(pid_dir.glob("*.pid")):
        with contextlib.suppress(ValueError, OSError):
            pids[pid_file.stem] = int(pid_file.read_text().strip())
    return pids


def alive_pid_files(pid_dir: Path) -> dict[str, int]:
    """The recorded process groups that still exist (a recycled, non-Python pid does not count)."""
    return {
        name: pid for name, pid in read_pid_files(pid_dir).items() if _group_alive(pid) and expect_ok(pid)
    }


def stop_pid_files(pid_dir: Path, *, log: Log = print, timeout: float = 20.0) -> list[str]:
    """Stop every process group recorded in ``pid_dir/*.pid`` (all at once) and remove the files."""
    pids = read_pid_files(pid_dir)
    alive = alive_pid_files(pid_dir)
    for pid in alive.values():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)
    for name, pid in alive.items():
        stop_process_group(pid, timeout=timeout)
        log(f"stopped {name} (pid {pid})")
    for name in pids:
        (pid_dir / f"{name}.pid").unlink(missing_ok=True)
    return list(alive)


def expect_ok(pid: int) -> bool:
    """True if ``pid`` looks like one of ours (a Python/Airflow process) or has exited leaving its group."""
    cmd = _cmdline(pid)
    return not cmd or "python" in cmd or "airflow" in cmd


# --------------------------------------------------------------------------------------------------------
# REST client
# --------------------------------------------------------------------------------------------------------


class APIError(RuntimeError):
    """A non-2xx answer from the Airflow REST API."""

    def __init__(self, method: str, path: str, status_code: int, detail: Any) -> None:
        self.method, self.path, self.status_code, self.detail = method, path, status_code, detail
        super().__init__(f"{method} {path} -> HTTP {status_code}: {detail}")


@dataclass
class Observation:
    """One task instance state seen while polling a run."""

    at: float
    task_id: str
    state: str | None
    try_number: int


@dataclass
class RunResult:
    """What a finished (or timed-out) run looked like."""

    dag_id: str
    run_id: str
    state: str
    tasks: dict[str, dict[str, Any]]
    observations: list[Observation] = field(default_factory=list)
    seconds: float = 0.0

    def task_state(self, task_id: str) -> str | None:
        return self.tasks.get(task_id, {}).get("state")

    def try_number(self, task_id: str) -> int:
        return int(self.tasks.get(task_id, {}).get("try_number") or 0)

    def states_seen(self, task_id: str) -> list[tuple[str | None, int]]:
        """Distinct consecutive (state, try_number) pairs observed for ``task_id``, in order."""
        seen: list[tuple[str | None, int]] = []
        for obs in self.observations:
            if obs.task_id == task_id and (not seen or seen[-1] != (obs.state, obs.try_number)):
                seen.append((obs.state, obs.try_number))
        return seen


class AirflowClient:
    """Airflow REST API v2 with a JWT from ``/auth/token`` (refreshed once on 401)."""

    def __init__(self, base_url: str, username: str, password: str, *, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._username, self._password = username, password
        # trust_env=False: never route loopback calls through a proxy from the environment.
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, trust_env=False)
        self._token: str | None = None

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AirflowClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- auth and plumbing ------------------------------------------------------------------------------
    def token(self) -> str:
        """A fresh access token for the configured user."""
        resp = self._http.post("/auth/token", json={"username": self._username, "password": self._password})
        if resp.status_code not in (200, 201):
            raise APIError("POST", "/auth/token", resp.status_code, _detail(resp))
        self._token = resp.json()["access_token"]
        return self._token

    def request(self, method: str, path: str, *, ok: Iterable[int] = (200,), **kwargs: Any) -> httpx.Response:
        """Send an authenticated request; raise APIError unless the status is in ``ok``."""
        if self._token is None:
            self.token()
        resp = self._http.request(method, path, headers={"Authorization": f"Bearer {self._token}"}, **kwargs)
        if resp.status_code == 401:
            self.token()
            resp = self._http.request(
                method, path, headers={"Authorization": f"Bearer {self._token}"}, **kwargs
            )
        if resp.status_code not in tuple(ok):
            raise APIError(method, path, resp.status_code, _detail(resp))
        return resp

    def health(self) -> dict[str, Any]:
        resp = self._http.get("/api/v2/monitor/health")
        resp.raise_for_status()
        return resp.json()

    # -- DAGs and runs ----------------------------------------------------------------------------------
    def get_dag(self, dag_id: str) -> dict[str, Any]:
        return self.request("GET", f"/api/v2/dags/{dag_id}").json()

    def dag_details(self, dag_id: str) -> dict[str, Any]:
        return self.request("GET", f"/api/v2/dags/{dag_id}/details").json()

    def import_errors(self) -> list[dict[str, Any]]:
        return self.request("GET", "/api/v2/importErrors").json().get("import_errors", [])

    def unpause(self, dag_id: str) -> dict[str, Any]:
        return self.request("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False}).json()

    def trigger(self, dag_id: str, conf: Mapping[str, Any], *, run_id: str | None = None) -> dict[str, Any]:
        """Trigger a run now. ``logical_date`` must be present (null) or Airflow answers 422."""
        body: dict[str, Any] = {"logical_date": None, "conf": dict(conf)}
        if run_id:
            body["dag_run_id"] = run_id
        return self.request("POST", f"/api/v2/dags/{dag_id}/dagRuns", json=body).json()

    def get_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}").json()

    def list_runs(self, dag_id: str, *, limit: int = 100) -> list[dict[str, Any]]:
        resp = self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns", params={"limit": limit})
        return resp.json()["dag_runs"]

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances"
        return self.request("GET", path).json()["task_instances"]

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        """The XCom value, or None if the task did not push ``key``."""
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}"
        resp = self.request("GET", path, ok=(200, 404))
        return resp.json().get("value") if resp.status_code == 200 else None

    def xcoms(self, dag_id: str, run_id: str, task_id: str) -> dict[str, Any]:
        """All XComs that ``task_id`` pushed in the run, as {key: value}."""
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries"
        entries = self.request("GET", path).json().get("xcom_entries", [])
        return {entry["key"]: self.xcom(dag_id, run_id, task_id, entry["key"]) for entry in entries}

    def set_pool(self, name: str, slots: int, description: str = "") -> None:
        """Create the pool, or update its slots if it exists (same as ``airflow pools set``)."""
        body = {"name": name, "slots": slots, "description": description, "include_deferred": False}
        resp = self.request("POST", "/api/v2/pools", json=body, ok=(200, 201, 409))
        if resp.status_code == 409:
            self.request("PATCH", f"/api/v2/pools/{name}", json=body)

    def wait_for_run(
        self,
        dag_id: str,
        run_id: str,
        *,
        timeout: float = 300.0,
        interval: float = 0.5,
        on_change: Callable[[float, str, str | None, int], None] | None = None,
    ) -> RunResult:
        """Poll the run and its task instances until the run is success/failed (or ``timeout``).

        Every poll is recorded as an Observation, so callers can check the states a task went through
        (e.g. ``up_for_reschedule``). ``on_change(elapsed, task_id, state, try_number)`` is called for
        each task whose state or try number changed (task_id "<run>" for the run itself).
        """
        start = time.monotonic()
        last: dict[str, tuple[str | None, int]] = {}
        observations: list[Observation] = []
        run_state = "unknown"
        tasks: dict[str, dict[str, Any]] = {}
        while True:
            elapsed = time.monotonic() - start
            run_state = self.get_run(dag_id, run_id)["state"]
            tis = self.task_instances(dag_id, run_id)
            tasks = {ti["task_id"]: ti for ti in tis}
            for ti in tis:
                key = (ti["state"], int(ti.get("try_number") or 0))
                observations.append(Observation(elapsed, ti["task_id"], *key))
                if last.get(ti["task_id"]) != key:
                    last[ti["task_id"]] = key
                    if on_change:
                        on_change(elapsed, ti["task_id"], *key)
            if last.get("<run>") != (run_state, 0):
                last["<run>"] = (run_state, 0)
                if on_change:
                    on_change(elapsed, "<run>", run_state, 0)
            if run_state in TERMINAL_RUN_STATES or elapsed > timeout:
                break
            time.sleep(interval)
        return RunResult(dag_id, run_id, run_state, tasks, observations, time.monotonic() - start)


def _detail(resp: httpx.Response) -> Any:
    try:
        return resp.json().get("detail", resp.json())
    except (ValueError, AttributeError):
        return resp.text[:500]


# --------------------------------------------------------------------------------------------------------
# The stack
# --------------------------------------------------------------------------------------------------------


class AirflowStack:
    """Airflow components as separate processes around one AIRFLOW_HOME.

    Defaults: LocalExecutor on SQLite in ``home``, SimpleAuthManager with a known admin password, DAGs and
    plugins from the repository, fast DAG parsing. ``executor``, ``sql_alchemy_conn``, ``components`` and
    ``extra_env`` make it usable for CeleryExecutor/PostgreSQL too (add the "celery-worker" component).
    """

    def __init__(
        self,
        home: Path | str,
        *,
        api_port: int | None = None,
        host: str = "127.0.0.1",
        executor: str = "LocalExecutor",
        sql_alchemy_conn: str | None = None,
        components: Sequence[str] = DEFAULT_COMPONENTS,
        dags_folder: Path | str = REPO / "dags",
        plugins_folder: Path | str = REPO / "plugins",
        twilio_conn: Mapping[str, Any] | str | None = None,
        admin_user: str = "admin",
        admin_password: str = "admin",
        pools: Mapping[str, int] | None = None,
        fast_parsing: bool = True,
        extra_env: Mapping[str, str] | None = None,
        log: Log = print,
    ) -> None:
        unknown = set(components) - set(COMPONENT_COMMANDS)
        if unknown:
            raise ValueError(f"unknown components {sorted(unknown)}; known: {sorted(COMPONENT_COMMANDS)}")
        self.home = Path(home).resolve()
        self.host = host
        self.api_port = api_port or free_port(host)
        self.executor = executor
        self.sql_alchemy_conn = sql_alchemy_conn or f"sqlite:///{self.home / 'airflow.db'}"
        self.components = tuple(components)
        self.dags_folder = Path(dags_folder).resolve()
        self.plugins_folder = Path(plugins_folder).resolve()
        self.twilio_conn = twilio_conn
        self.admin_user, self.admin_password = admin_user, admin_password
        # Same size the batch DAG documents (`airflow pools set twilio_api 50`); each chunk task holds up to
        # TWILIO_BATCH_CONCURRENCY (10) slots, so a small pool would leave it queued forever.
        self.pools = dict(pools) if pools is not None else {"twilio_api": 50}
        self.fast_parsing = fast_parsing
        self.extra_env = dict(extra_env or {})
        self.log = log
        self.pid_dir = self.home / "pids"
        self.log_dir = self.home / "process-logs"
        self.procs: dict[str, subprocess.Popen] = {}
        self._client: AirflowClient | None = None

    # -- derived values ---------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.api_port}"

    @property
    def passwords_file(self) -> Path:
        return self.home / "simple_auth_manager_passwords.json.generated"

    def env(self) -> dict[str, str]:
        """The environment every component (and every CLI call) runs with."""
        # Drop whatever Airflow settings the caller has (pytest's UNIT_TEST_MODE would give each process
        # its own random JWT secret, and the tasks could not talk to the api-server).
        env = {
            k: v
            for k, v in os.environ.items()
            if not (
                k.startswith("AIRFLOW__") or k.startswith("AIRFLOW_CONN_") or k.startswith("AIRFLOW_VAR_")
            )
            and k not in ("AIRFLOW_HOME", "AIRFLOW_CONFIG")
        }
        bin_dir = str(Path(sys.executable).parent)
        env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
        env.setdefault("NO_PROXY", "127.0.0.1,localhost")
        env.setdefault("no_proxy", "127.0.0.1,localhost")
        env["PYTHONUNBUFFERED"] = "1"
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__EXECUTOR": self.executor,
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.sql_alchemy_conn,
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
                "AIRFLOW__CORE__PLUGINS_FOLDER": str(self.plugins_folder),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
                "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH_MANAGER,
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{self.admin_user}:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.passwords_file),
                "AIRFLOW__API__HOST": self.host,
                "AIRFLOW__API__PORT": str(self.api_port),
                "AIRFLOW__API__WORKERS": "1",
                # Both are needed when the api-server is not on localhost:8080, or every task dies with a
                # ConnectError to localhost:8080/execution/.
                "AIRFLOW__API__BASE_URL": self.base_url,
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
                "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.home / "logs"),
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(self._port_setting("worker_log")),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(self._port_setting("trigger_log")),
                "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
            }
        )
        if self.fast_parsing:
            env.update(
                {
                    # New DAG files are found within seconds; changed files re-parsed within 30 s; one parser
                    # process is plenty for a handful of files on a 2-core machine.
                    "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                    "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "30",
                    "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
                    "AIRFLOW__DAG_PROCESSOR__PRINT_STATS_INTERVAL": "300",
                }
            )
        if self.twilio_conn is not None:
            conn = self.twilio_conn if isinstance(self.twilio_conn, str) else json.dumps(self.twilio_conn)
            # JSON form: the URI form would silently turn https into http.
            env["AIRFLOW_CONN_TWILIO_DEFAULT"] = conn
        env.update(self.extra_env)
        return env

    def _port_setting(self, name: str) -> int:
        """A free port for a log server, chosen once per stack and remembered in the home."""
        cache = self.home / "ports.json"
        ports: dict[str, int] = {}
        with contextlib.suppress(OSError, ValueError):
            ports = json.loads(cache.read_text())
        if name not in ports:
            ports[name] = free_port()
            self.home.mkdir(parents=True, exist_ok=True)
            cache.write_text(json.dumps(ports))
        return ports[name]

    # -- lifecycle --------------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Create the home, pre-seed the admin password and migrate the metadata DB."""
        self.home.mkdir(parents=True, exist_ok=True)
        passwords: dict[str, str] = {}
        with contextlib.suppress(OSError, ValueError):
            passwords = json.loads(self.passwords_file.read_text())
        passwords[self.admin_user] = self.admin_password
        self.passwords_file.write_text(json.dumps(passwords))
        self.passwords_file.chmod(0o600)
        started = time.monotonic()
        self.airflow_cli("db", "migrate")
        self.log(f"airflow db migrate: {time.monotonic() - started:.1f}s")

    def airflow_cli(self, *args: str, timeout: float = 300.0) -> str:
        """Run an ``airflow`` CLI command with the stack's environment; raise StackError on failure."""
        proc = subprocess.run(
            [sys.executable, "-m", "airflow", *args],
            env=self.env(),
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if proc.returncode != 0:
            raise StackError(f"airflow {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        return proc.stdout

    def start(self, *, timeout: float = 180.0, wait_for_dags: Sequence[str] = ()) -> AirflowStack:
        """Prepare, start every component, and wait until healthy (and until ``wait_for_dags`` are parsed)."""
        if not port_is_free(self.api_port, self.host):
            raise StackError(f"port {self.api_port} on {self.host} is busy; choose another one")
        self.prepare()
        env = self.env()
        for name in self.components:
            self.procs[name] = start_process(
                name,
                [sys.executable, "-m", "airflow", *COMPONENT_COMMANDS[name]],
                env=env,
                cwd=self.home,
                log_file=self.log_dir / f"{name}.log",
                pid_file=self.pid_dir / f"{name}.pid",
            )
        self.log(f"started {', '.join(f'{n} (pid {p.pid})' for n, p in self.procs.items())}")
        try:
            self.wait_healthy(timeout=timeout)
            client = self.client()
            for pool, slots in self.pools.items():
                client.set_pool(pool, slots, "Twilio API calls (see README)")
            if wait_for_dags:
                self.wait_for_dags(wait_for_dags, timeout=timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def check_alive(self) -> None:
        """Raise StackError with the tail of its log if a component we started has exited."""
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise StackError(
                    f"{name} exited with code {proc.returncode}; last log lines:\n{self.log_tail(name)}"
                )

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.log_dir / f"{name}.log"
        if not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def wait_healthy(self, *, timeout: float = 180.0) -> dict[str, Any]:
        """Wait for /api/v2/monitor/health to report every started component healthy."""
        started = time.monotonic()
        deadline = started + timeout
        wanted = [HEALTH_KEYS[c] for c in self.components if c in HEALTH_KEYS]
        health: dict[str, Any] = {}
        with httpx.Client(timeout=5.0, trust_env=False) as http:
            while time.monotonic() < deadline:
                self.check_alive()
                try:
                    health = http.get(f"{self.base_url}/api/v2/monitor/health").json()
                except (httpx.HTTPError, ValueError):
                    health = {}
                if health and all((health.get(k) or {}).get("status") == "healthy" for k in wanted):
                    self.log(f"Airflow is healthy after {time.monotonic() - started:.1f}s ({self.base_url})")
                    return health
                time.sleep(0.5)
        raise StackError(f"Airflow not healthy after {timeout:.0f}s: {health}\n{self._all_tails()}")

    def wait_for_dags(self, dag_ids: Iterable[str], *, timeout: float = 120.0) -> None:
        """Wait until every DAG in ``dag_ids`` has been parsed and serialized; fail fast on import errors."""
        client = self.client()
        started = time.monotonic()
        pending = list(dag_ids)
        while pending:
            self.check_alive()
            for dag_id in list(pending):
                with contextlib.suppress(APIError):
                    client.get_dag(dag_id)
                    client.dag_details(dag_id)  # 404 until the serialized DAG exists
                    pending.remove(dag_id)
            errors = client.import_errors()
            if errors:
                text = "\n".join(f"{e.get('filename')}: {e.get('stack_trace', '')[-2000:]}" for e in errors)
                raise StackError(f"DAG import errors:\n{text}")
            if not pending:
                break
            if time.monotonic() - started > timeout:
                raise StackError(
                    f"DAGs {pending} not parsed after {timeout:.0f}s\n{self.log_tail('dag-processor')}"
                )
            time.sleep(1.0)
        self.log(f"DAGs parsed after {time.monotonic() - started:.1f}s")

    def client(self) -> AirflowClient:
        if self._client is None:
            self._client = AirflowClient(self.base_url, self.admin_user, self.admin_password)
        return self._client

    def stop(self, *, timeout: float = 20.0) -> None:
        """Stop every component by process group (SIGTERM, then SIGKILL) and remove the pid files."""
        if self._client is not None:
            self._client.close()
            self._client = None
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for name, proc in self.procs.items():
            stop_process_group(proc.pid, timeout=timeout)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=1)
            (self.pid_dir / f"{name}.pid").unlink(missing_ok=True)
        if self.procs:
            self.log(f"stopped {', '.join(f'{n} (pid {p.pid})' for n, p in self.procs.items())}")
        self.procs.clear()

    def detach(self) -> None:
        """Leave the components running (``make up``); their pid files stay for ``make down``."""
        if self._client is not None:
            self._client.close()
            self._client = None
        self.procs.clear()

    def _all_tails(self) -> str:
        return "\n".join(f"--- {name} ---\n{self.log_tail(name, 15)}" for name in self.components)

    def __enter__(self) -> AirflowStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

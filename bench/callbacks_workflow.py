"""Benchmark: workflow runs on a real scheduler, status callbacks vs polling at the production interval.

    .venv/bin/python -m bench.callbacks_workflow                   # 20 runs each, one at a time (23 minutes)
    .venv/bin/python -m bench.callbacks_workflow --in-flight 10    # 10 runs in flight (6 minutes)

For each configuration it starts the sandbox (``--step-delay 1 --jitter 0``: final 3 s after the create)
and its own Airflow (api-server, scheduler, dag-processor, triggerer; LocalExecutor on SQLite,
scripts/airflow_stack.py) with the production poke interval (``TWILIO_POKE_INTERVAL=60``, backoff to 15 min):

- ``polling``: callbacks off (the baseline);
- ``callbacks``: ``TWILIO_CALLBACK_BASE_URL`` set to the api-server: sendMessage asks the sandbox to call the
  receiver, checkStatus reads the store (poke interval ``TWILIO_CALLBACK_POKE_INTERVAL``, 2 s by default;
  ``--callback-poke-intervals`` adds configurations with other values).

It keeps ``--in-flight`` runs going (1 by default: the latency of a run, not of a queue of runs competing for
the cores) until ``--runs`` have finished and reports the time from each message's
final status (its creation + 3 s; the sandbox's ``date_created`` has whole seconds) to its run's end (median
and p90), checkStatus runs with a try 2 (apache/airflow#71172), requests to Twilio per run (creates excluded),
and runs that ended wrongly. Not in ``make bench`` (minutes); the figures are in bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from pathlib import Path

from bench.reschedule_race import DAG_ID, SENDER, trigger
from sandbox.testing import run_sandbox
from scripts.airflow_client import APIError, RunResult
from scripts.airflow_stack import AirflowStack, free_port

STEP_DELAY = 1.0
FINAL_AFTER = 3 * STEP_DELAY


@dataclass
class Figures:
    name: str
    runs: int
    median_s: float
    p90_s: float
    try2: int
    requests_per_run: float
    wrong: int
    load: str
    # Medians of the steps after the final status: to checkStatus' end (the poke that saw it), then to
    # routeByStatus' end, then to the run's end (the end task and the run's own bookkeeping).
    to_check_end_s: float = 0.0
    check_to_route_end_s: float = 0.0
    route_to_run_end_s: float = 0.0

    def line(self) -> str:
        return (
            f"{self.name:<10} runs {self.runs}: final status -> run end median {self.median_s:.1f} s, "
            f"p90 {self.p90_s:.1f} s; checkStatus try 2 in {self.try2} runs; {self.requests_per_run:.2f} "
            f"status requests per run; wrong {self.wrong}; load {self.load}; steps (medians): final -> "
            f"checkStatus end {self.to_check_end_s:.1f} s, -> routeByStatus end "
            f"{self.check_to_route_end_s:.1f} s, -> run end {self.route_to_run_end_s:.1f} s"
        )


def _at(value: object) -> float:
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def measure(
    name: str, runs: int, in_flight: int, callbacks: bool, poke_interval: float | None, extra: dict[str, str]
) -> Figures:
    load_before = os.getloadavg()[0]
    tag = f"cbwf {time.time():.0f} {name}"
    api_port = free_port()
    env = {"TWILIO_POKE_INTERVAL": "60", "TWILIO_MAX_WAIT": "900", "TWILIO_STATUS_TIMEOUT": "900"}
    if callbacks:
        env["TWILIO_CALLBACK_BASE_URL"] = f"http://127.0.0.1:{api_port}"
        if poke_interval is not None:  # else the production default
            env["TWILIO_CALLBACK_POKE_INTERVAL"] = f"{poke_interval:g}"
    env.update(extra)
    with (
        tempfile.TemporaryDirectory(prefix="cbwf-") as tmp,
        run_sandbox("--step-delay", str(STEP_DELAY), "--jitter", "0") as sb,
    ):
        stack = AirflowStack(
            Path(tmp),
            api_port=api_port,
            twilio_conn=sb.conn_json(),
            extra_env=env,
            log=lambda text: print(f"  [stack] {text}", flush=True),
        )
        with stack:
            stack.wait_for_dags([DAG_ID])
            client = stack.client()
            client.unpause(DAG_ID)
            pending: list[str] = []
            results: list[RunResult] = []
            ended: dict[str, datetime] = {}
            triggered = 0
            while len(results) < runs:
                while triggered < runs and len(pending) < in_flight:
                    run_id = f"cbwf_{triggered:03d}"
                    conf = {"to": f"+1555400{triggered:04d}", "from": SENDER, "body": f"{tag} #{triggered}"}
                    trigger(client, conf, run_id)
                    pending.append(run_id)
                    triggered += 1
                for run_id in list(pending):
                    try:
                        run = client.get_run(DAG_ID, run_id)
                    except APIError:
                        continue
                    if run["state"] in ("success", "failed"):
                        pending.remove(run_id)
                        ended[run_id] = datetime.fromisoformat(str(run["end_date"]).replace("Z", "+00:00"))
                        results.append(client.wait_for_run(DAG_ID, run_id, timeout=0))
                time.sleep(1.0)
            messages = {m["body"].rsplit("#", 1)[1]: m for m in sb.messages() if m["body"].startswith(tag)}
            fetches = sb.stats()["requests"]["fetch"]
    latencies = []
    steps: list[tuple[float, float, float]] = []
    for result in results:
        message = messages[str(int(result.run_id.rsplit("_", 1)[1]))]
        final_at = parsedate_to_datetime(message["date_created"]).timestamp() + FINAL_AFTER
        run_end = ended[result.run_id].timestamp()
        latencies.append(run_end - final_at)
        check_end = _at(result.tasks["checkStatus"]["end_date"])
        route_end = _at(result.tasks["routeByStatus"]["end_date"])
        steps.append((check_end - final_at, route_end - check_end, run_end - route_end))
    latencies.sort()
    wrong = sum(1 for r in results if r.state != "success" or r.task_state("delivered") != "success")
    return Figures(
        name=name,
        runs=len(results),
        median_s=statistics.median(latencies),
        p90_s=latencies[int(0.9 * (len(latencies) - 1))],
        try2=sum(1 for r in results if r.try_number("checkStatus") > 1),
        requests_per_run=fetches / len(results),
        wrong=wrong + abs(len(messages) - len(results)),
        load=f"{load_before:.1f} -> {os.getloadavg()[0]:.1f}",
        to_check_end_s=statistics.median(step[0] for step in steps),
        check_to_route_end_s=statistics.median(step[1] for step in steps),
        route_to_run_end_s=statistics.median(step[2] for step in steps),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.callbacks_workflow", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--in-flight", type=int, default=1)
    parser.add_argument(
        "--callback-poke-intervals",
        type=float,
        nargs="*",
        default=[],
        help="also measure callbacks with these TWILIO_CALLBACK_POKE_INTERVAL values (s)",
    )
    parser.add_argument(
        "--idle-sleep",
        type=float,
        nargs="*",
        default=[],
        help="also measure callbacks with the scheduler's scheduler_idle_sleep_time at these values (s)",
    )
    parser.add_argument("--only-callbacks", action="store_true", help="skip the polling baseline")
    args = parser.parse_args(argv)
    lines = []
    Configuration = tuple[str, bool, float | None, dict[str, str]]
    configurations: list[Configuration] = [("polling", False, None, {}), ("callbacks", True, None, {})]
    configurations += [(f"callbacks, poke {s:g} s", True, s, {}) for s in args.callback_poke_intervals]
    configurations += [
        (
            f"callbacks, idle sleep {s:g} s",
            True,
            None,
            {"AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": f"{s:g}"},
        )
        for s in args.idle_sleep
    ]
    if args.only_callbacks:
        configurations = configurations[1:]
    print(f"load average at start (1/5/15 min): {' / '.join(f'{x:.1f}' for x in os.getloadavg())}")
    for name, callbacks, poke_interval, extra in configurations:
        print(f"== {name}: {args.runs} runs, {args.in_flight} in flight", flush=True)
        figures = measure(name, args.runs, args.in_flight, callbacks, poke_interval, extra)
        print(figures.line(), flush=True)
        lines.append(figures.line())
    print("\n".join(["", *lines]))
    return 0


if __name__ == "__main__":
    sys.exit(main())

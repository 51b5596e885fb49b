"""How often the reschedule race (apache/airflow#71172) hits checkStatus on a real local stack.

    .venv/bin/python -m bench.reschedule_race                      # 50 runs at the demo's 3 s, then at 60 s
    .venv/bin/python -m bench.reschedule_race --poke 3 10 --runs 50 --in-flight 10

For each poke interval it starts the sandbox and its own Airflow (api-server, scheduler, dag-processor,
triggerer; LocalExecutor on SQLite, scripts/airflow_stack.py) with TWILIO_POKE_INTERVAL set, keeps
``--in-flight`` workflow runs going until ``--runs`` have finished, and counts:
- runs whose checkStatus needed a try 2 or more (the race, absorbed by the sensor's retries),
- reschedules (each one is a chance for the race) and the scheduler log's stale-event lines, which name the
  cause: "finished with state success, but the task instance's state attribute is queued",
- runs that ended wrongly (not delivered, or a message count other than one per run),
- median run time (latency), and the load average before and after.
Not a test, not in `make bench` (minutes per interval); its figures are in docs/reliability.md.
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
from pathlib import Path

from sandbox.testing import run_sandbox
from scripts.airflow_client import AirflowClient, APIError, RunResult
from scripts.airflow_stack import AirflowStack

DAG_ID = "twilio_send_message_track_status"
SENDER = "+15005550006"
RESCHEDULED = "Rescheduling task, marking task as UP_FOR_RESCHEDULE"
STALE_EVENT = "but the task instance's state attribute is"  # the scheduler's line for a stale event


@dataclass
class Figures:
    poke: float
    runs: int
    raced_runs: int
    extra_tries: int
    reschedules: int
    stale_events: int
    wrong: int
    messages: int
    median_s: float
    p90_s: float
    wall_s: float
    load_before: float
    load_after: float

    def line(self) -> str:
        share = self.raced_runs / self.runs if self.runs else 0.0
        per_resched = self.extra_tries / self.reschedules if self.reschedules else 0.0
        return (
            f"RACE poke={self.poke:g}s: try 2+ on checkStatus in {self.raced_runs}/{self.runs} runs "
            f"({share:.0%}; {self.extra_tries} extra tries over {self.reschedules} reschedules = "
            f"{per_resched:.1%} per reschedule; {self.stale_events} stale-event lines in the scheduler log); "
            f"wrong runs {self.wrong}, messages {self.messages}; run time median {self.median_s:.1f}s "
            f"p90 {self.p90_s:.1f}s; {self.runs} runs in {self.wall_s:.0f}s; "
            f"load {self.load_before:.1f} -> {self.load_after:.1f}"
        )


def measure(poke: float, runs: int, in_flight: int, step_delay: float) -> Figures:
    load_before = os.getloadavg()[0]
    tag = f"race {time.time():.0f} poke {poke:g}"
    with (
        tempfile.TemporaryDirectory(prefix="race-") as tmp,
        run_sandbox("--step-delay", str(step_delay)) as sb,
    ):
        stack = AirflowStack(
            Path(tmp),
            twilio_conn=sb.conn_json(),
            extra_env={
                "TWILIO_POKE_INTERVAL": f"{poke:g}",
                "TWILIO_MAX_WAIT": f"{max(poke, 6.0):g}" if poke < 60 else "900",
                "TWILIO_STATUS_TIMEOUT": "900",
            },
            log=lambda text: print(f"  [stack] {text}", flush=True),
        )
        with stack:
            stack.wait_for_dags([DAG_ID])
            client = stack.client()
            client.unpause(DAG_ID)
            started = time.monotonic()
            pending: list[str] = []
            results: list[RunResult] = []
            triggered = 0
            while len(results) < runs:
                while triggered < runs and len(pending) < in_flight:
                    run_id = f"race_{triggered:03d}"
                    conf = {"to": f"+1555300{triggered:04d}", "from": SENDER, "body": f"{tag} #{triggered}"}
                    trigger(client, conf, run_id)
                    pending.append(run_id)
                    triggered += 1
                for run_id in list(pending):
                    try:
                        state = client.get_run(DAG_ID, run_id)["state"]
                    except APIError:
                        continue  # SQLite busy; ask again next round
                    if state in ("success", "failed"):
                        pending.remove(run_id)
                        results.append(client.wait_for_run(DAG_ID, run_id, timeout=0))
                time.sleep(1.0)
            wall = time.monotonic() - started
            stale = (stack.log_dir / "scheduler.log").read_text(errors="replace").count(STALE_EVENT)
            messages = [m for m in sb.messages() if m["body"].startswith(tag)]
            durations = sorted(_seconds(client.get_run(DAG_ID, r.run_id)) for r in results)
            tries = [r.try_number("checkStatus") for r in results]
            resched = sum(_reschedules(stack, r.run_id) for r in results)
    wrong = sum(1 for r in results if r.state != "success" or r.task_state("delivered") != "success")
    return Figures(
        poke=poke,
        runs=len(results),
        raced_runs=sum(1 for t in tries if t > 1),
        extra_tries=sum(t - 1 for t in tries if t > 1),
        reschedules=resched,
        stale_events=stale,
        wrong=wrong + abs(len(messages) - len(results)),
        messages=len(messages),
        median_s=statistics.median(durations),
        p90_s=durations[int(0.9 * (len(durations) - 1))],
        wall_s=wall,
        load_before=load_before,
        load_after=os.getloadavg()[0],
    )


def _reschedules(stack: AirflowStack, run_id: str) -> int:
    """checkStatus' reschedules in the run: one such log line per poke that was not final."""
    folder = stack.home / "logs" / f"dag_id={DAG_ID}" / f"run_id={run_id}" / "task_id=checkStatus"
    return sum(path.read_text(errors="replace").count(RESCHEDULED) for path in folder.glob("attempt=*.log"))


def trigger(client: AirflowClient, conf: dict[str, str], run_id: str) -> None:
    """Trigger, riding out SQLite's "database is locked" (HTTP 500) on a loaded 2-core machine."""
    for attempt in range(10):
        try:
            client.trigger(DAG_ID, conf, run_id=run_id)
            return
        except APIError as exc:
            if exc.status_code == 409:  # the failed-looking attempt did create it
                return
            if exc.status_code != 500 or attempt == 9:
                raise
            time.sleep(1.0 + attempt)


def _seconds(run: dict[str, object]) -> float:
    start, end = (
        datetime.fromisoformat(str(run[k]).replace("Z", "+00:00")) for k in ("start_date", "end_date")
    )
    return (end - start).total_seconds()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.reschedule_race", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--poke", type=float, nargs="+", default=[3.0, 60.0], help="poke intervals (s)")
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--in-flight", type=int, default=10, help="runs kept going at once")
    parser.add_argument(
        "--step-delay", type=float, default=1.5, help="sandbox seconds per status step (demo)"
    )
    args = parser.parse_args(argv)
    lines = []
    for poke in args.poke:
        print(f"== poke interval {poke:g}s: {args.runs} runs, {args.in_flight} in flight", flush=True)
        figures = measure(poke, args.runs, args.in_flight, args.step_delay)
        print(figures.line(), flush=True)
        lines.append(figures.line())
    print("\n".join(["", *lines]))
    return 0


if __name__ == "__main__":
    sys.exit(main())

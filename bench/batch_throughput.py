"""Batch throughput benchmark: the batch DAG against the physical limit and against a naive DAG.

    .venv/bin/python -m bench.batch_throughput            # full run (about 5 minutes on 2 cores)
    .venv/bin/python -m bench.batch_throughput --quick    # N = 1,000 only, smaller naive run

The sandbox runs with 50 ms latency per request and a concurrency limit of C = 50 (a 51st request in flight
gets 429), so no client can create more than C / latency = 1,000 messages/s. Statuses move on a short
clock (50 ms per step) unless noted. Everything runs in this process with ``dag.test`` (one task at a time,
pools not enforced) against one SQLite metadata DB in a temporary AIRFLOW_HOME.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
LATENCY_MS = 50
LIMIT_C = 50
PHYSICAL_LIMIT = LIMIT_C / (LATENCY_MS / 1000)
FAULTS = {"latency_ms": LATENCY_MS, "concurrency_limit": LIMIT_C}
FROM = "+15005550006"
TEMPLATE = "Hi {name}, your appointment is on {date}."


def _airflow_env(home: Path) -> None:
    """An isolated Airflow home whose dags folder holds the batch DAG and the naive baseline (symlinks)."""
    dags = home / "dags"
    dags.mkdir(parents=True)
    (dags / "twilio_batch_notifications.py").symlink_to(REPO / "dags" / "twilio_batch_notifications.py")
    (dags / "naive_dag.py").symlink_to(REPO / "bench" / "naive_dag.py")
    os.environ.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(dags),
        AIRFLOW__CORE__PLUGINS_FOLDER=str(REPO / "plugins"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__UNIT_TEST_MODE="True",
        AIRFLOW__LOGGING__BASE_LOG_FOLDER=str(home / "logs"),
        AIRFLOW__LOGGING__LOGGING_LEVEL="WARNING",
        TWILIO_STORAGE=f"file://{home / 'storage'}",
        TWILIO_BATCH_SCHEDULE="none",
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
    )
    for path in (str(REPO), str(REPO / "plugins")):
        if path not in sys.path:
            sys.path.insert(0, path)


@contextlib.contextmanager
def _quiet(log_path: Path) -> Iterator[None]:
    """Send Airflow's task logs (written to fd 1/2 by dag.test) to a file, keep the table readable."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with log_path.open("a") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def recipients(n: int) -> list[dict[str, str]]:
    # Ending in 0: never one of the sandbox's outcome endings (3003, 7777, ...), so every message delivers.
    return [{"to": f"+1555{i:06d}0", "name": f"Person {i}", "date": "Monday"} for i in range(n)]


def library_send(sb: Any, n: int, concurrency: int = LIMIT_C) -> dict[str, Any]:
    """The send path of one chunk task, without Airflow: all N rows through send_rows."""
    import asyncio

    from tests.batch.inmemory import prepare_batch
    from twilio_messaging.batch.plan import Sender
    from twilio_messaging.batch.send import send_rows
    from twilio_messaging.batch.throttle import throttled_client
    from twilio_messaging.connection import TwilioConnection

    sb.reset()
    sb.set_faults(**FAULTS)
    sender = Sender(from_=FROM)
    prepared = prepare_batch(recipients(n), TEMPLATE, sender, chunk_size=n)
    connection = TwilioConnection(base_url=sb.base_url, username=sb.account_sid, secret=sb.auth_token)

    async def run() -> tuple[float, Any]:
        client, transport = throttled_client(connection, concurrency)
        async with client:
            started = time.perf_counter()
            await send_rows(client, prepared.chunks[0]["rows"], sender, concurrency=concurrency)
            return time.perf_counter() - started, transport

    seconds, transport = asyncio.run(run())
    stats = sb.stats()
    return {"n": n, "seconds": seconds, "rate": n / seconds, "created": stats["requests"]["create"],
            "refused_429": stats["faults"]["concurrency_429"] + stats["faults"]["429"],
            "throttled": transport.limiter.stats.throttled, "stored": len(sb.messages())}  # fmt: skip


def raw_send(sb: Any, n: int, concurrency: int = LIMIT_C) -> dict[str, Any]:
    """Ceiling of this machine at this moment: bare httpx POSTs, no validation, retries or limiter."""
    import asyncio

    import httpx

    sb.reset()
    sb.set_faults(**FAULTS)
    single = httpx.Limits(max_connections=1, max_keepalive_connections=1)

    class Spread(httpx.AsyncBaseTransport):
        """One connection per pool, as ThrottledTransport does (one big httpcore pool is far slower)."""

        def __init__(self) -> None:
            self.pools = [httpx.AsyncHTTPTransport(limits=single) for _ in range(concurrency)]
            self.next = 0

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            self.next = (self.next + 1) % concurrency
            return await self.pools[self.next].handle_async_request(request)

    async def run() -> float:
        auth = (sb.account_sid, sb.auth_token)
        async with httpx.AsyncClient(base_url=sb.base_url, auth=auth, transport=Spread()) as client:
            queue = list(range(n))

            async def worker() -> None:
                while queue:
                    i = queue.pop()
                    data = {"To": f"+1555{i:06d}0", "From": FROM, "Body": "raw"}
                    await client.post(f"/2010-04-01/Accounts/{sb.account_sid}/Messages.json", data=data)

            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return time.perf_counter() - started

    seconds = asyncio.run(run())
    return {"n": n, "seconds": seconds, "rate": n / seconds, "stored": len(sb.messages())}


def load_dag(dag_id: str, file: str) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"]) / file))
    if bag.import_errors:
        raise RuntimeError(f"{file} does not import: {bag.import_errors}")
    return bag.dags[dag_id]


def task_instances(dag_id: str, run_id: str) -> list[Any]:
    from airflow.models import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = session.query(TaskInstance).filter_by(dag_id=dag_id, run_id=run_id).all()
        session.expunge_all()
        return tis


def xcom_value(dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> tuple[Any, int]:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = (
            session.query(XComModel)
            .filter_by(dag_id=dag_id, run_id=run_id, task_id=task_id, key="return_value", map_index=map_index)
            .one_or_none()
        )
        if row is None:
            return None, 0
        return XComModel.deserialize_value(row), len(
            json.dumps(row.value) if not isinstance(row.value, str | bytes) else row.value
        )


def dag_batch(sb: Any, n: int, chunk_size: int, log: Path, **env: str) -> dict[str, Any]:
    """One run of twilio_batch_notifications with dag.test; times from the metadata DB."""
    sb.reset()
    sb.set_faults(**FAULTS)
    clocks = {"TWILIO_BATCH_POKE_INTERVAL": "1", "TWILIO_BATCH_FIRST_FETCH_AFTER": "1"}
    os.environ.update(
        {"TWILIO_BATCH_CONCURRENCY": str(LIMIT_C), "TWILIO_BATCH_STATUS_TIMEOUT": "600", **clocks, **env}
    )
    os.environ["AIRFLOW_CONN_TWILIO_DEFAULT"] = sb.conn_json()
    dag = load_dag("twilio_batch_notifications", "twilio_batch_notifications.py")
    # Each run its own dedupe key: the runs send to the same numbers on the same day on purpose.
    conf = {"recipients": recipients(n), "from": FROM, "body_template": TEMPLATE, "chunk_size": chunk_size,
            "opt_out_path": None, "concurrency": LIMIT_C, "dedupe_key": f"b{time.time_ns()}"}  # fmt: skip
    started = time.perf_counter()
    with _quiet(log):
        run = dag.test(run_conf=conf)
    wall = time.perf_counter() - started
    tis = task_instances(dag.dag_id, run.run_id)
    send_tis = [ti for ti in tis if ti.task_id == "send_chunk"]
    send_ti_seconds = sum((ti.end_date - ti.start_date).total_seconds() for ti in send_tis)
    in_task = sum(
        xcom_value(dag.dag_id, run.run_id, "send_chunk", ti.map_index)[0]["seconds"] for ti in send_tis
    )
    _, chunk_bytes = xcom_value(dag.dag_id, run.run_id, "prepare")
    summary, _ = xcom_value(dag.dag_id, run.run_id, "summary")
    stats = sb.stats()
    created = stats["requests"]["create"]
    return {
        "refused_429": stats["faults"]["concurrency_429"] + stats["faults"]["429"],
        "n": n, "chunk_size": chunk_size, "state": str(run.state), "wall": wall,
        "run_seconds": (run.end_date - run.start_date).total_seconds(),
        "send_rate_in_task": n / in_task, "send_rate_ti": n / send_ti_seconds,
        "fetch_per_message": stats["requests"]["fetch"] / created, "created": created,
        "delivered": summary["delivered"], "tis": len(tis), "chunks_xcom_bytes": chunk_bytes,
    }  # fmt: skip


def naive_batch(sb: Any, n: int, log: Path) -> dict[str, Any]:
    sb.reset()
    sb.set_faults(**FAULTS)
    os.environ["TWILIO_BATCH_POKE_INTERVAL"] = "1"
    os.environ["AIRFLOW_CONN_TWILIO_DEFAULT"] = sb.conn_json()
    dag = load_dag("naive_batch_baseline", "naive_dag.py")
    rows = [{"to": r["to"], "body": TEMPLATE.format(**r)} for r in recipients(n)]
    started = time.perf_counter()
    with _quiet(log):
        run = dag.test(run_conf={"recipients": rows, "from": FROM})
    wall = time.perf_counter() - started
    requests = sb.stats()["requests"]
    return {
        "n": n,
        "state": str(run.state),
        "wall": wall,
        "run_seconds": (run.end_date - run.start_date).total_seconds(),
        "tis": len(task_instances(dag.dag_id, run.run_id)),
        "created": requests["create"],
        "fetch_per_message": requests["fetch"] / max(1, requests["create"]),
    }


def machine() -> str:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError, ValueError, IndexError):
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 1024 / 1024:.0f} GiB RAM"
    system = f"{platform.system()} {platform.release()}, Python {platform.python_version()}"
    return f"{os.cpu_count()} cores ({cpu}){mem}, {system}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="N = 1,000 only and a 20-recipient naive run")
    parser.add_argument("--naive-n", type=int, default=None, help="recipients in the naive run (default 50)")
    args = parser.parse_args(argv)
    sizes = [1000] if args.quick else [1000, 10_000]
    naive_n = args.naive_n or (20 if args.quick else 50)

    home = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    _airflow_env(home)
    log = home / "airflow-tasks.log"
    from airflow.utils import db

    from sandbox.testing import run_sandbox

    with _quiet(log):
        db.resetdb()
    print(f"Batch throughput benchmark on {machine()}")
    print(
        f"Sandbox: {LATENCY_MS} ms latency, concurrency limit C = {LIMIT_C}: limit {PHYSICAL_LIMIT:.0f} msg/s"
    )
    print(f"Airflow task logs: {log}")
    print(f"Load average at start: {os.getloadavg()[0]:.1f} (other processes share the cores)\n")
    results: dict[str, Any] = {"raw": [], "library": [], "dag": [], "naive": None, "realistic": None}
    with run_sandbox("--step-delay", "0.05") as sb:
        for n in sizes:
            results["raw"].append(raw_send(sb, n))
            results["library"].append(library_send(sb, n))
            raw, lib = results["raw"][-1]["rate"], results["library"][-1]["rate"]
            print(f"N={n}: bare httpx {raw:.0f} msg/s, library send {lib:.0f} msg/s", flush=True)
        for n in sizes:
            results["dag"].append(dag_batch(sb, n, 500 if n <= 1000 else 1000, log))
            print(f"DAG N={n}: {results['dag'][-1]['run_seconds']:.1f} s end to end", flush=True)
        results["naive"] = naive_batch(sb, naive_n, log)
        print(f"naive N={naive_n}: {results['naive']['run_seconds']:.1f} s end to end", flush=True)
    # Tracking on a realistic delivery clock (~3 s per status step, +/-60%: ~9 s to a final status).
    with run_sandbox("--profile", "realistic") as sb:
        results["realistic"] = dag_batch(
            sb, 1000, 500, log, TWILIO_BATCH_POKE_INTERVAL="5", TWILIO_BATCH_FIRST_FETCH_AFTER="5"
        )
        print(
            f"DAG N=1000, realistic clock: {results['realistic']['run_seconds']:.1f} s end to end\n",
            flush=True,
        )
    print_table(results)
    print(f"\nLoad average at the end (1/5/15 min): {' / '.join(f'{x:.1f}' for x in os.getloadavg())}")
    (home / "results.json").write_text(json.dumps(results, indent=1, default=str))
    print(f"\nRaw results: {home / 'results.json'}")
    return 0


def print_table(results: dict[str, Any]) -> None:
    rows: list[tuple[str, str, str]] = []

    def add(measure: str, result: str, versus: str = "") -> None:
        rows.append((measure, result, versus))

    def of_limit(rate: float) -> str:
        return f"{rate / PHYSICAL_LIMIT:.0%}"

    for raw, lib in zip(results["raw"], results["library"], strict=True):
        label = f"bare httpx POSTs, concurrency {LIMIT_C} (machine ceiling now), N={raw['n']:,}"
        add(label, f"{raw['rate']:.0f} msg/s", f"{of_limit(raw['rate'])} of {PHYSICAL_LIMIT:.0f}")
        label = f"send, library (one chunk, concurrency {LIMIT_C}), N={lib['n']:,}"
        versus = f"{of_limit(lib['rate'])} of limit, {lib['rate'] / raw['rate']:.0%} of bare"
        add(label, f"{lib['rate']:.0f} msg/s", versus)
    for run in results["dag"]:
        label = f"send phase in the DAG, N={run['n']:,} (chunks of {run['chunk_size']})"
        rates = f"{run['send_rate_in_task']:.0f} msg/s in-task, {run['send_rate_ti']:.0f} per TI time"
        add(label, rates, f"{of_limit(run['send_rate_in_task'])} / {of_limit(run['send_rate_ti'])} of limit")
    naive = results["naive"]
    per_1000 = naive["run_seconds"] * 1000 / naive["n"]
    for run in results["dag"]:
        if run["n"] == 1000:
            add("end to end, batch DAG, N=1,000", f"{run['run_seconds']:.1f} s", run["state"])
            label = f"end to end, naive DAG, N={naive['n']} (x{1000 / naive['n']:g} = N=1,000, linear)"
            add(label, f"{naive['run_seconds']:.1f} s -> {per_1000:.0f} s", naive["state"])
            add("speed-up vs naive at N=1,000", f"{per_1000 / run['run_seconds']:.1f}x", "target >= 10x")
    for run in [*results["dag"], results["realistic"]]:
        realistic = run is results["realistic"]
        clock = "realistic clock ~9 s, poke = first fetch = 5 s" if realistic else "50 ms steps, poke 1 s"
        add(
            f"status fetches per message, N={run['n']:,} ({clock})", f"{run['fetch_per_message']:.2f}", "<= 3"
        )
    for run in results["dag"]:
        per = run["tis"] * 1000 / run["n"]
        add(f"task instances, batch DAG, N={run['n']:,}", f"{run['tis']} ({per:.1f} per 1,000)",
            f"3 + 2 x N/{run['chunk_size']}")  # fmt: skip
        add(f"chunks XCom (prepare), N={run['n']:,}", f"{run['chunks_xcom_bytes'] / 1024:.0f} KiB")
    per = naive["tis"] * 1000 / naive["n"]
    add(f"task instances, naive DAG, N={naive['n']}", f"{naive['tis']} ({per:.0f} per 1,000)", "1 + 2 x N")
    add(f"status fetches per message, naive, N={naive['n']}", f"{naive['fetch_per_message']:.2f}")
    width = [max(len(row[i]) for row in [("measure", "result", "vs"), *rows]) for i in range(3)]
    for row in [("measure", "result", "vs"), tuple("-" * w for w in width), *rows]:
        print(" | ".join(cell.ljust(w) for cell, w in zip(row, width, strict=True)))


if __name__ == "__main__":
    sys.exit(main())

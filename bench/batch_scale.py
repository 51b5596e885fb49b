"""Batch scale benchmark: the batch DAG end to end at N = 100,000 and 1,000,000, phase by phase.

    .venv/bin/python -m bench.batch_scale                    # N = 100,000 (about 10 minutes on 2 idle cores)
    .venv/bin/python -m bench.batch_scale --sizes 100000 1000000 --naive-n 20
    .venv/bin/python -m bench.batch_scale --sizes 2000       # smoke run
    .venv/bin/python -m bench.batch_scale --modes polling callbacks --naive-n 0   # status callbacks too

Same set-up as ``bench/batch_throughput.py``: ``dag.test`` in this process (one task at a time) against the
sandbox at 50 ms latency with a concurrency limit of C = 50, so no client creates more than 1,000 msg/s.
The recipients come from a CSV file (``recipients_path``), as a list of that size would in production.

Per phase (prepare, send_chunk, track_chunk, summary) it reports wall time, the peak RSS while that task's
code ran (``/proc/self/clear_refs`` resets the high-water mark before each call; dag.test and Airflow share
the process, so this includes their baseline, printed too), XCom bytes in total and per task instance,
metadata DB growth, storage bytes of the run folder, status fetches per message, task instances, and the
data one send_chunk reads (its XCom argument and its manifest). A naive DAG (one task pair per recipient)
runs at a small N in the same process for the ratio.

``--modes polling callbacks`` runs each size twice: as above (polling: list pages and fetches), then with
status callbacks on: the sandbox calls the receiver (the plugin's app served by uvicorn in its own process,
as on the api-server, with the default SQLite store) and tracking reads the store, asking Twilio only for
what no final callback covers (and the failures' error texts). It reports the status requests to Twilio per
message (fetches + list pages, from the sandbox's stats) and the summary, which must equal polling's.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import functools
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench.batch_throughput import (
    FAULTS,
    FROM,
    LIMIT_C,
    PHYSICAL_LIMIT,
    TEMPLATE,
    _airflow_env,
    _quiet,
    load_dag,
    machine,
    naive_batch,
    raw_send,
    task_instances,
)

PHASES = ("prepare", "send_chunk", "track_poke", "summarise")
PHASE_FUNCTIONS = {
    "prepare": ("twilio_messaging.batch.prepare", "prepare_run"),
    "send_chunk": ("twilio_messaging.batch.send", "send_chunk"),
    "track_poke": ("twilio_messaging.batch.track", "track_poke"),
    "summarise": ("twilio_messaging.batch.report", "summarise"),
}


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _reset_peak() -> None:
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux >= 4.0)


class PhaseMeter:
    """Wraps the batch task callables: wall time and peak RSS of each call, grouped by phase."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.peak_kib: dict[str, int] = defaultdict(int)
        self.first: dict[str, float] = {}
        self.last: dict[str, float] = {}

    def install(self) -> None:
        import importlib

        # Each phase's task function, in the module the DAG calls it from.
        for name, (module_name, attribute) in PHASE_FUNCTIONS.items():
            module = importlib.import_module(module_name)
            setattr(module, attribute, self._wrap(name, getattr(module, attribute)))

    def _wrap(self, name: str, func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def measured(*args: Any, **kwargs: Any) -> Any:
            _reset_peak()
            started = time.perf_counter()
            self.first.setdefault(name, started)
            try:
                return func(*args, **kwargs)
            finally:
                ended = time.perf_counter()
                self.last[name] = ended
                self.seconds[name] += ended - started
                self.calls[name] += 1
                self.peak_kib[name] = max(self.peak_kib[name], _status_kib("VmHWM"))

        return measured


def write_recipients(path: Path, n: int) -> int:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["to", "name", "date"])
        for i in range(n):
            # Ending in 0: never one of the sandbox's outcome endings (3003, 7777, ...): all deliver.
            writer.writerow([f"+1555{i:07d}0", f"Person {i}", "Monday"])
    return path.stat().st_size


def xcom_sizes(dag_id: str, run_id: str) -> list[tuple[str, int, str, int]]:
    """(task_id, map_index, key, bytes of the stored value) for every XCom of the run."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(XComModel).filter_by(dag_id=dag_id, run_id=run_id).all()
        return [
            (
                row.task_id,
                row.map_index,
                row.key,
                len(row.value if isinstance(row.value, str | bytes) else json.dumps(row.value)),
            )
            for row in rows
        ]


def folder_bytes(folder: Path) -> tuple[int, int]:
    files = [p for p in folder.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files), len(files)


@contextlib.contextmanager
def callbacks_on(sb: Any, home: Path, n: int) -> Iterator[None]:
    """Status callbacks for the batch: the receiver in its own process, its store read by the tracking."""
    from bench.callbacks_throughput import PATH, start_receiver

    store = f"sqlite:///{home / f'callbacks-{n}-{time.time_ns()}.sqlite3'}"
    proc, url = start_receiver(store, str(home), token=sb.auth_token, account=sb.account_sid)
    os.environ.update(TWILIO_CALLBACK_BASE_URL=url.removesuffix(PATH), TWILIO_CALLBACK_STORE=store)
    try:
        yield
    finally:
        for name in ("TWILIO_CALLBACK_BASE_URL", "TWILIO_CALLBACK_STORE"):
            os.environ.pop(name, None)
        proc.terminate()
        proc.wait(timeout=30)


def scale_run(
    sb: Any, n: int, home: Path, log: Path, meter: PhaseMeter, callbacks: bool = False
) -> dict[str, Any]:

    sb.reset()
    sb.set_faults(**FAULTS)
    if callbacks:
        with callbacks_on(sb, home, n):
            result = _scale_run(sb, n, home, log, meter)
        result["callbacks"] = sb.stats().get("callbacks", {})
        return result
    return _scale_run(sb, n, home, log, meter)


def _scale_run(sb: Any, n: int, home: Path, log: Path, meter: PhaseMeter) -> dict[str, Any]:
    from twilio_messaging.batch.layout import RunLayout

    data = home / "data"
    data.mkdir(exist_ok=True)
    source = data / f"recipients_{n}.csv"
    source_bytes = write_recipients(source, n)
    os.environ.update(
        TWILIO_BATCH_CONCURRENCY=str(LIMIT_C),
        TWILIO_BATCH_STATUS_TIMEOUT="3600",
        TWILIO_BATCH_POKE_INTERVAL="1",
        TWILIO_BATCH_FIRST_FETCH_AFTER="1",
        TWILIO_BATCH_DATA_DIRS=str(data),
        AIRFLOW_CONN_TWILIO_DEFAULT=sb.conn_json(),
    )
    dag = load_dag("twilio_batch_notifications", "twilio_batch_notifications.py")
    conf = {"recipients_path": str(source), "from": FROM, "body_template": TEMPLATE, "opt_out_path": None,
            "concurrency": LIMIT_C, "dedupe_key": f"bench-{n}-{time.time_ns()}"}  # fmt: skip
    db_file = home / "airflow.db"
    db_before = db_file.stat().st_size
    meter.__init__()  # type: ignore[misc]
    baseline_kib = _status_kib("VmRSS")
    started = time.perf_counter()
    with _quiet(log):
        run = dag.test(run_conf=conf)
    wall = time.perf_counter() - started
    db_after = db_file.stat().st_size
    tis = task_instances(dag.dag_id, run.run_id)
    xcoms = xcom_sizes(dag.dag_id, run.run_id)
    per_ti: dict[tuple[str, int], int] = defaultdict(int)
    for task_id, index, _, size in xcoms:
        per_ti[(task_id, index)] += size
    prepare_refs = next(
        (
            size
            for task_id, index, key, size in xcoms
            if (task_id, index, key) == ("prepare", -1, "return_value")
        ),
        0,
    )
    layout = RunLayout.of(dag.dag_id, run.run_id)
    storage, files = folder_bytes(Path(layout.folder.path))
    manifests = sorted(Path(layout.folder.path, "manifests").glob("*.jsonl"))
    manifest_bytes = [p.stat().st_size for p in manifests]
    summary = json.loads(Path(layout.summary.path).read_text())
    stats = sb.stats()
    created = stats["requests"]["create"]
    by_task: dict[str, list[Any]] = defaultdict(list)
    for ti in tis:
        by_task[ti.task_id].append(ti)

    def span(task_id: str) -> float:
        group = [ti for ti in by_task[task_id] if ti.start_date and ti.end_date]
        if not group:
            return 0.0
        return (max(ti.end_date for ti in group) - min(ti.start_date for ti in group)).total_seconds()

    def ti_seconds(task_id: str) -> float:
        return sum((ti.end_date - ti.start_date).total_seconds() for ti in by_task[task_id] if ti.end_date)

    send_counts = meter.calls["send_chunk"] or 1
    return {
        "n": n, "state": str(run.state), "wall": wall,
        "run_seconds": (run.end_date - run.start_date).total_seconds(),
        "limit_seconds": n / PHYSICAL_LIMIT,
        "source_bytes": source_bytes,
        "chunks": summary["chunks"], "chunk_size": summary["chunk_size"],
        "delivered": summary["delivered"], "failed": summary["failed"], "to_send": summary["to_send"],
        "created": created, "fetches": stats["requests"]["fetch"],
        "fetch_per_message": stats["requests"]["fetch"] / max(1, created),
        "list_pages": stats["requests"]["list"],
        "tracking_requests_per_message": (stats["requests"]["fetch"] + stats["requests"]["list"])
        / max(1, created),
        "tis": len(tis), "tis_by_task": {k: len(v) for k, v in by_task.items()},
        "phase_span": {task: span(task) for task in by_task},
        "phase_ti_seconds": {task: ti_seconds(task) for task in by_task},
        "phase_in_code": dict(meter.seconds), "phase_calls": dict(meter.calls),
        "phase_peak_mib": {k: v / 1024 for k, v in meter.peak_kib.items()},
        "baseline_rss_mib": baseline_kib / 1024,
        "send_rate_ti": n / ti_seconds("send_chunk") if ti_seconds("send_chunk") else 0.0,
        "send_rate_in_task": n / meter.seconds["send_chunk"] if meter.seconds["send_chunk"] else 0.0,
        "xcom_total": sum(per_ti.values()), "xcom_max_per_ti": max(per_ti.values(), default=0),
        "xcom_mean_per_ti": sum(per_ti.values()) / max(1, len(tis)),
        "xcom_max_ti": max(per_ti, key=per_ti.__getitem__, default=None),
        "db_growth": db_after - db_before,
        "storage_bytes": storage, "storage_files": files,
        "send_chunk_reads": {"xcom_refs_bytes": prepare_refs,
                             "manifest_bytes_mean": sum(manifest_bytes) / max(1, len(manifest_bytes)),
                             "calls": send_counts},
    }  # fmt: skip


def print_rows(result: dict[str, Any]) -> None:
    n = result["n"]
    mib = result["phase_peak_mib"]
    print(f"\nN = {n:,} ({result['mode']}): {result['state']}, {result['run_seconds']:.0f} s end to end "
          f"(limit {result['limit_seconds']:.0f} s: {result['run_seconds'] / result['limit_seconds']:.2f}x), "
          f"{result['chunks']} chunks of {result['chunk_size']}")  # fmt: skip
    print("| phase | span s | TI s | in code s | calls | peak RSS MiB |")
    print("|---|---|---|---|---|---|")
    names = {
        "prepare": "prepare",
        "send_chunk": "send_chunk",
        "track_chunk": "track_poke",
        "summary": "summarise",
    }
    for task, code in names.items():
        cells = [result["phase_span"].get(task, 0), result["phase_ti_seconds"].get(task, 0),
                 result["phase_in_code"].get(code, 0)]  # fmt: skip
        timing = " | ".join(f"{cell:.0f}" for cell in cells)
        print(f"| {task} | {timing} | {result['phase_calls'].get(code, 0)} | {mib.get(code, 0):.0f} |")
    bare = result.get("bare_httpx_rate") or 0.0
    versus = f", {result['send_rate_in_task'] / bare:.0%} of bare httpx before" if bare else ""
    print(f"baseline RSS before the run {result['baseline_rss_mib']:.0f} MiB; "
          f"send {result['send_rate_in_task']:.0f} msg/s in code, {result['send_rate_ti']:.0f} per TI time "
          f"({result['send_rate_ti'] / PHYSICAL_LIMIT:.0%} of the limit{versus})")  # fmt: skip
    print(f"XCom {result['xcom_total'] / 1024:.0f} KiB total, {result['xcom_mean_per_ti']:.0f} B mean "
          f"per TI, max {result['xcom_max_per_ti'] / 1024:.1f} KiB ({result['xcom_max_ti']}); metadata DB "
          f"+{result['db_growth'] / 1e6:.1f} MB; storage {result['storage_bytes'] / 1e6:.0f} MB in "
          f"{result['storage_files']} files; fetches/message {result['fetch_per_message']:.2f} "
          f"+ {result['list_pages']} list pages = {result['tracking_requests_per_message']:.3f} status "
          f"requests/message; "
          f"task instances {result['tis']}")  # fmt: skip
    print(f"summary: {result['to_send']:,} to send, {result['delivered']:,} delivered, {result['failed']:,} "
          f"failed; {result['fetches']:,} fetches + {result['list_pages']:,} list pages"
          + (f"; callbacks {result['callbacks']}" if "callbacks" in result else ""))  # fmt: skip
    reads = result["send_chunk_reads"]
    print(f"one send_chunk reads {reads['xcom_refs_bytes'] / 1024:.0f} KiB of XCom (all chunk references) + "
          f"{reads['manifest_bytes_mean'] / 1024:.0f} KiB of manifest (its chunk)", flush=True)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000])
    parser.add_argument("--naive-n", type=int, default=20, help="recipients in the naive run (0: none)")
    parser.add_argument(
        "--modes", nargs="+", choices=("polling", "callbacks"), default=["polling"],
        help="how messages are tracked: polling (default), callbacks (status callbacks to the receiver)",
    )  # fmt: skip
    args = parser.parse_args(argv)

    home = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    _airflow_env(home)
    log = home / "airflow-tasks.log"
    from airflow.utils import db

    from sandbox.testing import run_sandbox

    with _quiet(log):
        db.resetdb()
    meter = PhaseMeter()
    meter.install()
    print(f"Batch scale benchmark on {machine()}")
    print(f"Airflow home {home}; task logs {log}")
    print(
        f"Load average at start (1/5/15 min): {' / '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True
    )
    results: dict[str, Any] = {"scale": [], "naive": None, "load": []}
    with run_sandbox("--step-delay", "0.05") as sb:
        if args.naive_n:
            results["naive"] = naive_batch(sb, args.naive_n, log)
            naive = results["naive"]
            per_1000 = naive["run_seconds"] / naive["n"] * 1000
            print(f"naive N={naive['n']}: {naive['run_seconds']:.1f} s end to end, {naive['tis']} task "
                  f"instances, {per_1000:.0f} s per 1,000", flush=True)  # fmt: skip
        for n, mode in ((n, mode) for n in args.sizes for mode in args.modes):
            ceiling = raw_send(sb, 10_000)  # what bare httpx gets from this machine right now, for the ratio
            share = ceiling["rate"] / PHYSICAL_LIMIT
            print(f"bare httpx now: {ceiling['rate']:.0f} msg/s ({share:.0%} of the limit)", flush=True)
            result = scale_run(sb, n, home, log, meter, callbacks=mode == "callbacks")
            result["mode"] = mode
            result["bare_httpx_rate"] = ceiling["rate"]
            result["load_after"] = os.getloadavg()
            results["scale"].append(result)
            print_rows(result)
            print(f"load average after (1/5/15 min): {' / '.join(f'{x:.1f}' for x in result['load_after'])}")
            (home / "results.json").write_text(json.dumps(results, indent=1, default=str))
    print(f"\nRaw results: {home / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

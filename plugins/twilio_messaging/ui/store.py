"""Reading a run from where Airflow and the DAGs keep it: the metadata DB (run, task instances, XComs)
and the run's storage folder. Only the rows the tab shows are fetched; a batch's chunk XComs never are.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airflow.models.dagrun import DagRun
from airflow.models.taskinstance import TaskInstance
from airflow.models.xcom import XComModel
from airflow.sdk import ObjectStoragePath
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from twilio_messaging import contract, storage
from twilio_messaging.batch import layout
from twilio_messaging.ui.report_table import ReadablePath

TIMELINE_FILE = contract.TIMELINE_FILE
BATCH_SUMMARY_TASK = contract.SUMMARY_TASK


@dataclass(frozen=True)
class RunRecord:
    dag_id: str
    run_id: str
    state: str
    conf: dict[str, Any]
    start_date: str
    end_date: str


def _iso(value: Any) -> str:
    return value.isoformat() if value is not None else ""


def load_run(session: Session, dag_id: str, run_id: str) -> RunRecord | None:
    run = session.scalar(select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id))
    if run is None:
        return None
    return RunRecord(
        dag_id,
        run_id,
        str(run.state or "none"),
        dict(run.conf or {}),
        _iso(run.start_date),
        _iso(run.end_date),
    )


def load_task_states(session: Session, dag_id: str, run_id: str) -> dict[str, dict[str, Any]]:
    """{task_id: {state, start_date, end_date, try_number, states}}; ``states`` counts mapped instances."""
    rows = session.execute(
        select(
            TaskInstance.task_id,
            TaskInstance.map_index,
            TaskInstance.state,
            TaskInstance.start_date,
            TaskInstance.end_date,
            TaskInstance.try_number,
        ).where(TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id)
    ).all()
    tasks: dict[str, dict[str, Any]] = {}
    for task_id, map_index, state, start, end, try_number in rows:
        entry = tasks.setdefault(
            task_id, {"state": None, "start_date": "", "end_date": "", "try_number": 0, "states": {}}
        )
        name = str(state) if state is not None else "none"
        entry["states"][name] = entry["states"].get(name, 0) + 1
        if map_index == -1 or entry["state"] is None:
            entry.update(state=name, start_date=_iso(start), end_date=_iso(end), try_number=try_number or 0)
    return tasks


def _value(row: XComModel) -> Any:
    try:
        return XComModel.deserialize_value(row)
    except Exception:  # a value set through the execution API is already plain JSON
        return row.value


def load_xcoms(
    session: Session, dag_id: str, run_id: str, pairs: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], Any]:
    """The unmapped XComs named by ``pairs`` ((task_id, key)); missing ones are absent."""
    wanted = set(pairs)
    if not wanted:
        return {}
    rows = session.scalars(
        select(XComModel).where(
            XComModel.dag_id == dag_id,
            XComModel.run_id == run_id,
            XComModel.map_index == -1,
            XComModel.task_id.in_({task for task, _ in wanted}),
            XComModel.key.in_({key for _, key in wanted}),
        )
    ).all()
    return {(row.task_id, row.key): _value(row) for row in rows if (row.task_id, row.key) in wanted}


def recent_runs(session: Session, dag_ids: Iterable[str], limit: int) -> list[RunRecord]:
    """The newest runs of ``dag_ids`` (already filtered to what the user may read)."""
    ids = list(dag_ids)
    if not ids:
        return []
    runs = session.scalars(
        select(DagRun)
        .where(DagRun.dag_id.in_(ids))
        .order_by(func.coalesce(DagRun.start_date, DagRun.queued_at).desc().nulls_last(), DagRun.id.desc())
        .limit(limit)
    ).all()
    return [
        RunRecord(
            r.dag_id,
            r.run_id,
            str(r.state or "none"),
            dict(r.conf or {}),
            _iso(r.start_date),
            _iso(r.end_date),
        )
        for r in runs
    ]


def outcomes_of(
    session: Session, runs: Iterable[RunRecord], task_id: str, key: str
) -> dict[tuple[str, str], Any]:
    """One XCom per run, in one query: {(dag_id, run_id): value}."""
    pairs = {(r.dag_id, r.run_id) for r in runs}
    if not pairs:
        return {}
    rows = session.scalars(
        select(XComModel).where(
            XComModel.task_id == task_id,
            XComModel.key == key,
            XComModel.map_index == -1,
            XComModel.run_id.in_({run for _, run in pairs}),
            XComModel.dag_id.in_({dag for dag, _ in pairs}),
        )
    ).all()
    return {(row.dag_id, row.run_id): _value(row) for row in rows if (row.dag_id, row.run_id) in pairs}


# ---- the run's storage folder --------------------------------------------------------------------


def run_folder(dag_id: str, run_id: str) -> ObjectStoragePath:
    return storage.run_path(dag_id, run_id)


def stored_timeline(dag_id: str, run_id: str) -> list[dict[str, Any]] | None:
    """The sensor's observations so far (written at each poke while checkStatus runs)."""
    try:
        value = storage.read_json(run_folder(dag_id, run_id) / TIMELINE_FILE)
    except (OSError, ValueError):
        return None
    return value if isinstance(value, list) else None


def summary_location(dag_id: str, run_id: str) -> ObjectStoragePath:
    return layout.summary_path(dag_id, run_id)


def report_location(dag_id: str, run_id: str, fmt: str) -> ObjectStoragePath:
    return layout.report_path(dag_id, run_id, fmt)


def batch_summary(session: Session, dag_id: str, run_id: str) -> dict[str, Any] | None:
    """``summary.json`` from the run's storage, else the summary task's XCom."""
    with contextlib.suppress(OSError, ValueError):
        value = storage.read_json(summary_location(dag_id, run_id))
        if isinstance(value, dict):
            return value
    value = load_xcoms(session, dag_id, run_id, [(BATCH_SUMMARY_TASK, contract.RETURN_VALUE)]).get(
        (BATCH_SUMMARY_TASK, contract.RETURN_VALUE)
    )
    return value if isinstance(value, dict) else None


def _allowed_roots() -> list[str]:
    """Where a report may be read from: the (local) storage base."""
    base = storage.storage_base()
    return [os.path.realpath(base.path)] if storage.is_local(base) else []


def _inside(path: str, roots: Iterable[str]) -> bool:
    real = os.path.realpath(path)
    return any(real == root or real.startswith(root.rstrip(os.sep) + os.sep) for root in roots)


def batch_report(
    dag_id: str, run_id: str, summary: Mapping[str, Any] | None
) -> tuple[ReadablePath, str] | None:
    """The report file and its format: the run's storage folder first, else the path in the summary.

    A path from the summary is only followed inside the storage base: XComs
    can be written through the REST API, and this must never serve another file of the api-server.
    """
    for fmt in ("csv", "json"):
        with contextlib.suppress(OSError, ValueError, KeyError):
            location = report_location(dag_id, run_id, fmt)
            if location.exists():
                return location, fmt
    recorded = (summary or {}).get("report_path")
    if not isinstance(recorded, str) or not recorded:
        return None
    fmt = "json" if recorded.endswith(".json") else "csv" if recorded.endswith(".csv") else ""
    if not fmt:
        return None
    if "://" in recorded:
        path: ReadablePath = ObjectStoragePath(recorded)
        base = storage.storage_base()
        if not str(path).startswith(str(base).rstrip("/") + "/"):
            return None
        return (path, fmt) if path.exists() else None  # type: ignore[attr-defined]
    if not _inside(recorded, _allowed_roots()):
        return None
    local = Path(recorded)
    return (local, fmt) if local.is_file() else None

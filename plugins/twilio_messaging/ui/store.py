"""Reading a run from where Airflow and the DAGs keep it: the metadata DB (run, task instances, XComs)
and the run's storage folder. Only the rows the tab shows are fetched; a batch's chunk XComs never are.
"""

from __future__ import annotations

import contextlib
import logging
import os
import posixpath
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import islice
from typing import Any
from urllib.parse import unquote

from airflow.models.dagrun import DagRun
from airflow.models.taskinstance import TaskInstance
from airflow.models.xcom import XComModel
from airflow.sdk import ObjectStoragePath
from airflow.utils.state import TaskInstanceState
from sqlalchemy import func, select
from sqlalchemy.orm import Session, joinedload

from twilio_messaging import contract, storage
from twilio_messaging.batch import layout
from twilio_messaging.ui.report_table import ReadablePath
from twilio_messaging.ui.task_errors import TaskFailure, error_sentence, log_href

log = logging.getLogger(__name__)

TIMELINE_FILE = contract.TIMELINE_FILE
BATCH_SUMMARY_TASK = contract.SUMMARY_TASK
MAX_LOG_MESSAGES = 20_000  # a failed task's log is read up to here for its error


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


def task_failure(session: Session, dag_id: str, run_id: str, *, read_log: bool = True) -> TaskFailure | None:
    """The run's first failed task instance, with the error sentence of its last try's log.

    ``read_log=False`` (a user the auth manager gives no access to task logs) names the task and links
    to its log page, without the sentence.
    """
    ti = session.scalars(
        select(TaskInstance)
        .where(
            TaskInstance.dag_id == dag_id,
            TaskInstance.run_id == run_id,
            TaskInstance.state == TaskInstanceState.FAILED,
        )
        .options(joinedload(TaskInstance.dag_run))  # the log handler renders the file name from it
        .order_by(TaskInstance.end_date.asc().nulls_last(), TaskInstance.map_index)
        .limit(1)
    ).first()
    if ti is None:
        return None
    try_number = int(ti.try_number or 0)
    message, kind = "", ""
    if read_log and try_number > 0:
        try:
            from airflow.utils.log.log_reader import TaskLogReader

            stream, _ = TaskLogReader().read_log_chunks(ti, try_number, {"download_logs": True})  # type: ignore[typeddict-item,typeddict-unknown-key]
            message, kind = error_sentence(islice(stream, MAX_LOG_MESSAGES))
        except Exception:  # an unreadable log must not take the tab down; the link still leads to it
            log.warning("Messages tab: could not read the log of %s of %s/%s", ti.task_id, dag_id, run_id)
    return TaskFailure(
        task_id=ti.task_id,
        try_number=try_number,
        map_index=ti.map_index,
        message=message,
        error_type=kind,
        log_href=log_href(dag_id, run_id, ti.task_id, ti.map_index, try_number),
    )


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


def _scheme(location: str) -> str:
    head, sep, _ = location.partition("://")
    return head.lower() if sep else ""


def _key(location: str) -> str:
    """What follows ``scheme://``, percent-decoded (``%2e%2e`` is ``..``), without a trailing slash."""
    _, sep, rest = location.partition("://")
    return unquote(rest if sep else location).rstrip("/")


def inside_run(dag_id: str, run_id: str, location: str | ObjectStoragePath) -> ObjectStoragePath | None:
    """The file ``location`` names, if it lies inside the run's own storage folder; else None (logged).

    The one gate for every path the tab reads, whether it comes from the layout, an XCom, a summary or a
    request: XComs can be written through the REST API, so a path in one is a request to read a file.
    ``location`` is a URL (``file://``, ``s3://``…), an absolute local path, or a name relative to the
    folder. Locally the path is resolved (symlinks and ``..``) before it is compared; on an object store
    (no symlinks there) it is normalised, and its scheme and bucket must be the folder's.
    """
    folder = run_folder(dag_id, run_id)
    text = str(location)
    if isinstance(location, str) and not _scheme(text) and not text.startswith("/"):
        text = f"{str(folder).rstrip('/')}/{text}"
    if storage.is_local(folder):
        if _scheme(text) not in ("", "file", "local"):
            return _refused(dag_id, run_id, location, "another scheme than the run folder's")
        root = os.path.realpath(folder.path)
        real = os.path.realpath(_key(text))
        if not real.startswith(root.rstrip(os.sep) + os.sep):
            return _refused(dag_id, run_id, location, f"resolves to {real}, outside {root}")
        return ObjectStoragePath("file://" + real)
    if _scheme(text) != folder.protocol:
        return _refused(dag_id, run_id, location, "another scheme than the run folder's")
    root_key = posixpath.normpath(folder.path)
    key = posixpath.normpath(unquote(ObjectStoragePath(text).path))
    if not key.startswith(root_key.rstrip("/") + "/"):
        return _refused(dag_id, run_id, location, f"{key} is outside {root_key}")
    return folder / key[len(root_key) + 1 :]  # joined on the folder: its connection and options stay


def _refused(dag_id: str, run_id: str, location: object, why: str) -> ObjectStoragePath | None:
    log.warning(
        "Messages tab: refused to read %r for run %s of %s: %s (only files in the run's own storage folder "
        "are read)",
        str(location),
        run_id,
        dag_id,
        why,
    )
    return None


def _read_json(dag_id: str, run_id: str, name: str) -> Any:
    path = inside_run(dag_id, run_id, name)
    if path is None:
        return None
    try:
        return storage.read_json(path)
    except (OSError, ValueError):
        return None


def stored_timeline(dag_id: str, run_id: str) -> list[dict[str, Any]] | None:
    """The sensor's observations so far (written at each poke while checkStatus runs)."""
    value = _read_json(dag_id, run_id, TIMELINE_FILE)
    return value if isinstance(value, list) else None


def batch_summary(session: Session, dag_id: str, run_id: str) -> dict[str, Any] | None:
    """``summary.json`` from the run's storage, else the summary task's XCom."""
    value = _read_json(dag_id, run_id, layout.summary_path(dag_id, run_id).name)
    if isinstance(value, dict):
        return value
    value = load_xcoms(session, dag_id, run_id, [(BATCH_SUMMARY_TASK, contract.RETURN_VALUE)]).get(
        (BATCH_SUMMARY_TASK, contract.RETURN_VALUE)
    )
    return value if isinstance(value, dict) else None


def batch_report(
    dag_id: str, run_id: str, summary: Mapping[str, Any] | None
) -> tuple[ReadablePath, str] | None:
    """The report file and its format: the run's storage folder first, else the path in the summary.

    Both go through ``inside_run``: a summary (an XCom) naming a file outside the run's folder is refused.
    """
    candidates: list[tuple[str | ObjectStoragePath, str]] = [
        (layout.report_path(dag_id, run_id, fmt).name, fmt) for fmt in ("csv", "json")
    ]
    recorded = (summary or {}).get("report_path")
    if isinstance(recorded, str) and recorded:
        fmt = "json" if recorded.endswith(".json") else "csv" if recorded.endswith(".csv") else ""
        if fmt:
            candidates.append((recorded, fmt))
    for location, fmt in candidates:
        path = inside_run(dag_id, run_id, location)
        with contextlib.suppress(OSError, ValueError):
            if path is not None and path.is_file():
                return path, fmt
    return None

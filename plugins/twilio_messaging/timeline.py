"""The status timeline of a tracked message: every status a poke saw, kept in the run's storage folder.

    <TWILIO_STORAGE>/<dag_id>/<run_id>/status-timeline.json
    [{"at": "2026-12-02T01:00:00+00:00", "status": "queued", "errorCode": null}, ...]

The file outlives the sensor's reschedules and retries (its own XComs are cleared each time it starts
again), so each poke appends to what the earlier ones wrote, and the UI can show a run still in flight.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TypedDict

from airflow.sdk import ObjectStoragePath

from twilio_messaging.errors import error_code
from twilio_messaging.outputs import TIMELINE_FILE
from twilio_messaging.storage import read_json, run_path, write_json_atomic


class StatusObservation(TypedDict):
    at: str  # ISO-8601, UTC
    status: str
    errorCode: int | None


def timeline_path(dag_id: str, run_id: str, name: str = TIMELINE_FILE) -> ObjectStoragePath:
    return run_path(dag_id, run_id) / name


def observation(report: Mapping[str, Any], at: datetime | None = None) -> StatusObservation:
    """One timeline entry from a status report ({status, errorCode, ...})."""
    return {
        "at": (at or datetime.now(UTC)).isoformat(),
        "status": str(report.get("status") or "unknown"),
        "errorCode": error_code(report.get("errorCode")),
    }


def read_timeline(path: ObjectStoragePath) -> list[StatusObservation]:
    value = read_json(path, default=[])
    return value if isinstance(value, list) else []


def append_observation(path: ObjectStoragePath, entry: StatusObservation) -> list[StatusObservation]:
    """Append one entry (atomically: a reader sees the old list or the new one) and return the list."""
    timeline = [*read_timeline(path), entry]
    write_json_atomic(path, timeline)
    return timeline

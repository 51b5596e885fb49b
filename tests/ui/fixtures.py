"""Records of runs in the shapes the DAGs write them (XComs, the status timeline, batch summary/report)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

SID = "SM" + "ab" * 16
HOSTILE_BODY = "<script>alert(1)</script> {{ 7*7 }}"
REPORT_FIELDS = ("row", "to", "outcome", "status", "sid", "error_code", "error_meaning", "reason")


def ti_states(**states: str) -> dict[str, dict[str, Any]]:
    return {
        task: {
            "state": state,
            "start_date": "",
            "end_date": "2026-12-02T01:00:09+00:00",
            "states": {state: 1},
        }
        for task, state in states.items()
    }


UNDELIVERED_TIS = ti_states(
    sendMessage="success",
    checkStatus="success",
    routeByStatus="success",
    delivered="skipped",
    failed="failed",
)
DELIVERED_TIS = ti_states(
    sendMessage="success",
    checkStatus="success",
    routeByStatus="success",
    delivered="success",
    failed="skipped",
)
NOTHING_SENT_TIS = ti_states(
    sendMessage="failed",
    checkStatus="upstream_failed",
    routeByStatus="success",
    delivered="skipped",
    failed="failed",
)

TIMELINE = [
    {"at": "2026-12-02T01:00:02+00:00", "status": "queued", "errorCode": None},
    {"at": "2026-12-02T01:00:04+00:00", "status": "sent", "errorCode": None},
    {"at": "2026-12-02T01:00:06+00:00", "status": "undelivered", "errorCode": 30003},
]


def undelivered_xcoms(timeline_on: str | None = "failed") -> dict[tuple[str, str], Any]:
    outcome = {
        "end": "failed",
        "messageSid": SID,
        "finalStatus": "undelivered",
        "errorCode": 30003,
        "errorMessage": "Unreachable destination handset",
        "reason": None,
    }
    xcoms: dict[tuple[str, str], Any] = {
        ("sendMessage", "messageSid"): SID,
        ("sendMessage", "initialStatus"): "queued",
        ("sendMessage", "accountSid"): "AC" + "0" * 32,
        ("sendMessage", "sentAt"): "2026-12-02T01:00:01+00:00",
        ("checkStatus", "return_value"): {"status": "undelivered", "errorCode": 30003, "errorMessage": None},
        ("routeByStatus", "outcome"): outcome,
        ("failed", "messageSid"): SID,
        ("failed", "finalStatus"): "undelivered",
        ("failed", "errorCode"): 30003,
    }
    if timeline_on:
        xcoms[(timeline_on, "statusTimeline")] = TIMELINE
    return xcoms


def nothing_sent_xcoms() -> dict[tuple[str, str], Any]:
    # What sendMessage publishes: Twilio's words; the code and its docs link are apart.
    message = "The 'To' number +15005550001 is not a valid phone number."
    return {
        ("sendMessage", "sendError"): {"errorCode": 21211, "errorMessage": message},
        ("routeByStatus", "outcome"): {
            "end": "failed",
            "messageSid": None,
            "finalStatus": None,
            "errorCode": 21211,
            "errorMessage": message,
            "reason": "no message was created: " + message,
        },
    }


def report_records(n: int, *, fail_every: int = 10) -> list[dict[str, Any]]:
    """``n`` rows, every ``fail_every``-th undelivered with 30003, row 3 rejected with 21211."""
    records = []
    for row in range(1, n + 1):
        record = {
            "row": row,
            "to": f"+1555{row:07d}",
            "outcome": "delivered",
            "status": "delivered",
            "sid": f"SM{row:032x}",
            "error_code": None,
            "error_meaning": None,
            "reason": None,
        }
        if row % fail_every == 0:
            record.update(
                outcome="failed", status="undelivered", error_code=30003, error_meaning="Unreachable"
            )
        elif row == 3:
            record.update(
                outcome="rejected",
                status="rejected",
                sid=None,
                error_code=21211,
                reason="Twilio error 21211: bad",
            )
        records.append(record)
    return records


def summary_of(records: list[dict[str, Any]], report_path: str | None = None) -> dict[str, Any]:
    from tests.batch.inmemory import summarise_records as summarise

    return {**summarise(records, report_path), "failure_threshold": 0.1}


def write_report(records: list[dict[str, Any]], path: Path, fmt: str = "csv") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        if fmt == "json":
            json.dump(records, handle, indent=1)
        else:
            writer = csv.DictWriter(handle, fieldnames=REPORT_FIELDS)
            writer.writeheader()
            writer.writerows(records)
    return path

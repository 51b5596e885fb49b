"""The batch summary (what the run publishes) and the per-recipient report file (CSV or JSON).

Outcomes, one per input row:

- ``delivered`` / ``failed``: the final Twilio status, mapped by ``statuses.end_state``;
- ``unconfirmed``: still in flight (usually ``sent``) when tracking stopped;
- ``rejected``: Twilio refused the create request (error code from the API, nothing was sent);
- ``unknown``: the chunk's send task failed, so whether the message went out is not known (see its log);
- ``invalid`` / ``opted_out`` / ``duplicate``: skipped before sending.

The failure rate is ``(failed + rejected + unknown) / to_send``: skipped rows never fail a batch.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from twilio_messaging.errors import describe
from twilio_messaging.statuses import end_state, is_terminal, unconfirmed

DELIVERED = "delivered"
FAILED = "failed"
UNCONFIRMED = "unconfirmed"
REJECTED = "rejected"
UNKNOWN = "unknown"
SENT_OUTCOMES = (DELIVERED, FAILED, UNCONFIRMED, REJECTED, UNKNOWN)
REPORT_FIELDS = ("row", "to", "outcome", "status", "sid", "error_code", "error_meaning", "reason")
REPORT_FORMATS = ("csv", "json")
# How many failures and skipped rows the summary XCom lists; the report file always has all of them.
SUMMARY_LIST_LIMIT = 100
REPORT_DIR_ENV = "TWILIO_BATCH_REPORT_DIR"


def message_record(
    row: int,
    to: str,
    sid: str | None,
    status: str | None,
    error_code: Any = None,
    error_message: str | None = None,
) -> dict[str, Any]:
    """One recipient's line, from what was sent or tracked. ``sid`` None means Twilio rejected the create."""
    code = int(error_code) if error_code not in (None, "") else None
    if sid is None:
        outcome, shown = REJECTED, REJECTED
    elif is_terminal(status):
        outcome, shown = (DELIVERED if end_state(status) == "delivered" else FAILED), status
    else:
        outcome, shown = UNCONFIRMED, unconfirmed(status)
    record: dict[str, Any] = {
        "row": row,
        "to": to,
        "outcome": outcome,
        "status": shown,
        "sid": sid,
        "error_code": code,
        "error_meaning": describe(code) if code else None,
        "reason": error_message,
    }
    return record


def unknown_record(row: int, to: str, reason: str) -> dict[str, Any]:
    return {
        "row": row,
        "to": to,
        "outcome": UNKNOWN,
        "status": None,
        "sid": None,
        "error_code": None,
        "error_meaning": None,
        "reason": reason,
    }


def skipped_record(skipped: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "row": skipped["row"],
        "to": skipped["to"],
        "outcome": skipped["outcome"],
        "status": None,
        "sid": None,
        "error_code": None,
        "error_meaning": None,
        "reason": skipped["reason"],
    }


def build_records(messages: Iterable[Mapping[str, Any]], skipped: Iterable[Mapping[str, Any]]) -> list[dict]:
    """Every row of the source, in source order."""
    records = [dict(record) for record in messages] + [skipped_record(row) for row in skipped]
    return sorted(records, key=lambda record: record["row"])


def summarise(records: Sequence[Mapping[str, Any]], report_path: str | None = None) -> dict[str, Any]:
    """Counts by outcome and final status, the failure rate, and the first failures and skipped rows."""
    by_outcome = Counter(record["outcome"] for record in records)
    by_status = Counter(record["status"] for record in records if record["status"])
    to_send = sum(by_outcome[o] for o in SENT_OUTCOMES)
    failed = by_outcome[FAILED] + by_outcome[REJECTED] + by_outcome[UNKNOWN]
    failures = [
        {k: record[k] for k in ("row", "to", "sid", "status", "error_code", "error_meaning", "reason")}
        for record in records
        if record["outcome"] in (FAILED, REJECTED, UNKNOWN)
    ]
    skipped = [
        {k: record[k] for k in ("row", "to", "outcome", "reason")}
        for record in records
        if record["outcome"] not in SENT_OUTCOMES
    ]
    return {
        "rows": len(records),
        "to_send": to_send,
        "sent": to_send - by_outcome[REJECTED] - by_outcome[UNKNOWN],
        "delivered": by_outcome[DELIVERED],
        "failed": failed,
        "unconfirmed": by_outcome[UNCONFIRMED],
        "unknown": by_outcome[UNKNOWN],
        "failure_rate": round(failed / to_send, 4) if to_send else 0.0,
        "by_outcome": dict(sorted(by_outcome.items())),
        "by_status": dict(sorted(by_status.items())),
        "error_codes": dict(
            sorted(Counter(str(f["error_code"]) for f in failures if f["error_code"]).items())
        ),
        "failures": failures[:SUMMARY_LIST_LIMIT],
        "failures_total": len(failures),
        "skipped": skipped[:SUMMARY_LIST_LIMIT],
        "skipped_total": len(skipped),
        "report_path": report_path,
    }


def default_report_dir() -> Path:
    """``$TWILIO_BATCH_REPORT_DIR``, else ``$AIRFLOW_HOME/reports/twilio_batch`` (home: ``~/airflow``)."""
    configured = os.environ.get(REPORT_DIR_ENV)
    if configured:
        return Path(configured).expanduser()
    home = os.environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow")
    return Path(home) / "reports" / "twilio_batch"


def report_path(directory: Path, dag_id: str, run_id: str, fmt: str) -> Path:
    """``<dir>/<dag_id>/<run_id>.<fmt>`` with the run id made safe for every file system."""
    safe_run = re.sub(r"[^A-Za-z0-9_.-]+", "_", run_id).strip("._") or "run"
    return directory / dag_id / f"{safe_run}.{fmt}"


def write_report(records: Sequence[Mapping[str, Any]], path: Path, fmt: str) -> Path:
    """Write the per-recipient report atomically (a reader never sees half a file)."""
    if fmt not in REPORT_FORMATS:
        raise ValueError(f"report format must be one of {REPORT_FORMATS}, got {fmt!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8", newline="") as handle:
        if fmt == "json":
            json.dump([{k: record.get(k) for k in REPORT_FIELDS} for record in records], handle, indent=1)
        else:
            writer = csv.DictWriter(handle, fieldnames=REPORT_FIELDS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(records)
    tmp.replace(path)
    return path

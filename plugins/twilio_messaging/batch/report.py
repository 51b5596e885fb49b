"""The batch summary (what the run publishes) and the per-recipient report file (CSV or JSON).

Outcomes, one per input row:

- ``delivered`` / ``failed``: the final Twilio status, mapped by ``statuses.end_state``;
- ``unconfirmed``: still in flight (usually ``sent``) when tracking stopped;
- ``rejected``: Twilio refused the create request (error code from the API, nothing was sent);
- ``unknown``: the chunk's send task failed, so whether the message went out is not known (see its log);
- ``invalid`` / ``opted_out`` / ``duplicate`` / ``already_sent``: skipped before sending (``already_sent``
  carries the SID an earlier run under the same dedupe key sent).

The failure rate is ``(failed + rejected + unknown) / to_send``: skipped rows never fail a batch.

``SummaryBuilder`` and ``ReportWriter`` take the records one at a time, so the summary's memory does not
grow with the batch.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import IO, Any

from twilio_messaging.batch.records import MessageRecord, SkippedRow
from twilio_messaging.contract import (
    DELIVERED,
    FAILED,
    FAILED_OUTCOMES,
    REJECTED,
    REPORT_COLUMNS,
    REPORT_FORMATS,
    SENT_OUTCOMES,
    UNCONFIRMED,
    UNKNOWN,
)
from twilio_messaging.errors import describe, error_code
from twilio_messaging.statuses import end_state, is_terminal, unconfirmed

# How many failures and skipped rows the summary lists as examples; the report file has all of them.
SUMMARY_LIST_LIMIT = 20


def message_record(
    row: int,
    to: str,
    sid: str | None,
    status: str | None,
    twilio_error_code: Any = None,
    error_message: str | None = None,
) -> MessageRecord:
    """One recipient's line, from what was sent or tracked. ``sid`` None means Twilio rejected the create.

    A status that is not final yet is shown as it is (``queued``, ``sent``): the outcome ``unconfirmed`` is
    only given when tracking ends without a final status (``final_record``).
    """
    code = error_code(twilio_error_code)
    outcome: str
    shown: str | None
    if sid is None:
        outcome, shown = REJECTED, REJECTED
    elif is_terminal(status):
        outcome, shown = (DELIVERED if end_state(status) == "delivered" else FAILED), status
    else:
        outcome, shown = "accepted", status
    return {
        "row": row,
        "to": to,
        "outcome": outcome,
        "status": shown,
        "sid": sid,
        "error_code": code,
        "error_meaning": describe(code) if code else None,
        "reason": error_message,
    }


ACCEPTED = "accepted"  # created by Twilio, on its way; only in send results, never in a report


def final_record(record: MessageRecord) -> MessageRecord:
    """The record as the report shows it once tracking is over: still in flight means unconfirmed."""
    if record["outcome"] != ACCEPTED:
        return record
    return {**record, "outcome": UNCONFIRMED, "status": unconfirmed(record["status"])}


def unknown_record(row: int, to: str, reason: str) -> MessageRecord:
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


def skipped_record(skipped: SkippedRow | Mapping[str, Any]) -> MessageRecord:
    return {
        "row": skipped["row"],
        "to": skipped["to"],
        "outcome": skipped["outcome"],
        "status": skipped.get("status"),
        "sid": skipped.get("sid"),
        "error_code": None,
        "error_meaning": None,
        "reason": skipped["reason"],
    }


def build_records(
    messages: Iterable[MessageRecord], skipped: Iterable[SkippedRow | Mapping[str, Any]]
) -> list[MessageRecord]:
    """Every row of a small batch, in source order (``SummaryBuilder`` takes them streamed)."""
    records = [final_record(record) for record in messages] + [skipped_record(row) for row in skipped]
    return sorted(records, key=lambda record: record["row"])


class SummaryBuilder:
    """Counts records one at a time; keeps only counters and the first few examples."""

    def __init__(self) -> None:
        self.rows = 0
        self.by_outcome: Counter[str] = Counter()
        self.by_status: Counter[str] = Counter()
        self.error_codes: Counter[int] = Counter()
        self.failures: list[dict[str, Any]] = []
        self.skipped: list[dict[str, Any]] = []

    def add(self, record: MessageRecord) -> None:
        self.rows += 1
        outcome = record["outcome"]
        self.by_outcome[outcome] += 1
        if record["status"]:
            self.by_status[record["status"]] += 1
        if outcome in FAILED_OUTCOMES:
            if record["error_code"]:
                self.error_codes[record["error_code"]] += 1
            if len(self.failures) < SUMMARY_LIST_LIMIT:
                failure = dict(record)
                del failure["outcome"]
                self.failures.append(failure)
        elif outcome not in SENT_OUTCOMES and len(self.skipped) < SUMMARY_LIST_LIMIT:
            example = {
                "row": record["row"],
                "to": record["to"],
                "outcome": outcome,
                "reason": record["reason"],
            }
            if record["sid"]:
                example["sid"] = record["sid"]
            self.skipped.append(example)

    def summary(self, report_path: str | None = None, report_uri: str | None = None) -> dict[str, Any]:
        """Counts by outcome and final status, the failure rate, failures by error code with meanings."""
        by_outcome = self.by_outcome
        to_send = sum(by_outcome[o] for o in SENT_OUTCOMES)
        failed = sum(by_outcome[o] for o in FAILED_OUTCOMES)
        failures_total = failed
        skipped_total = self.rows - to_send
        return {
            "rows": self.rows,
            "to_send": to_send,
            "sent": to_send - by_outcome[REJECTED] - by_outcome[UNKNOWN],
            "delivered": by_outcome[DELIVERED],
            "failed": failed,
            "unconfirmed": by_outcome[UNCONFIRMED],
            "unknown": by_outcome[UNKNOWN],
            "failure_rate": round(failed / to_send, 4) if to_send else 0.0,
            "by_outcome": dict(sorted(by_outcome.items())),
            "by_status": dict(sorted(self.by_status.items())),
            "error_codes": {str(code): n for code, n in sorted(self.error_codes.items())},
            "failures_by_code": {
                str(code): {"count": n, "meaning": describe(code)}
                for code, n in sorted(self.error_codes.items())
            },
            "failures": self.failures,
            "failures_total": failures_total,
            "skipped": self.skipped,
            "skipped_total": skipped_total,
            "report_path": report_path,
            "report_uri": report_uri,
        }


def summarise(records: Iterable[MessageRecord], report_path: str | None = None) -> dict[str, Any]:
    builder = SummaryBuilder()
    for record in records:
        builder.add(record)
    return builder.summary(report_path)


class ReportWriter:
    """Writes report lines one at a time to an open text handle, as CSV or as a JSON list."""

    def __init__(self, handle: IO[str], fmt: str) -> None:
        if fmt not in REPORT_FORMATS:
            raise ValueError(f"report format must be one of {REPORT_FORMATS}, got {fmt!r}")
        self.handle, self.fmt, self.count = handle, fmt, 0
        if fmt == "csv":
            self.csv = csv.DictWriter(handle, fieldnames=REPORT_COLUMNS, extrasaction="ignore")
            self.csv.writeheader()
        else:
            handle.write("[")

    def add(self, record: MessageRecord) -> None:
        if self.fmt == "csv":
            self.csv.writerow(record)
        else:
            self.handle.write(
                ("\n" if not self.count else ",\n") + json.dumps({k: record.get(k) for k in REPORT_COLUMNS})
            )
        self.count += 1

    def close(self) -> None:
        if self.fmt == "json":
            self.handle.write("\n]\n")

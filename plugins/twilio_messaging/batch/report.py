"""The batch summary (what the run publishes) and the per-recipient report file (CSV or JSON), one line per
input row with its outcome (``records`` says what each outcome means).

The failure rate is ``(failed + rejected + unknown) / to_send``: skipped rows never fail a batch.

``SummaryBuilder`` and ``ReportWriter`` take the records one at a time, so the summary's memory does not
grow with the batch. ``summarise`` is the DAG's summary task: it streams every chunk's records, in row order,
into both; ``failure_verdict`` is check_failure_rate's.
"""

from __future__ import annotations

import csv
import heapq
import json
import logging
from collections import Counter
from collections.abc import Mapping
from itertools import chain
from typing import IO, Any

from twilio_messaging.batch import ledger
from twilio_messaging.batch.layout import RunLayout
from twilio_messaging.batch.plan import load_results, read_plan
from twilio_messaging.batch.records import MessageRecord, final_record, skipped_record, unknown_record
from twilio_messaging.batch.track import StorageStore, apply_known
from twilio_messaging.contract import (
    ALREADY_SENT,
    DELIVERED,
    FAILED_OUTCOMES,
    REJECTED,
    REPORT_COLUMNS,
    REPORT_FORMATS,
    SENT_OUTCOMES,
    UNCONFIRMED,
    UNKNOWN,
)
from twilio_messaging.errors import describe
from twilio_messaging.storage import is_local, open_atomic, write_json_atomic

log = logging.getLogger(__name__)

# How many failures and skipped rows the summary lists as examples; the report file has all of them.
SUMMARY_LIST_LIMIT = 20


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


# ---- the summary and check_failure_rate tasks -----------------------------------------------------------


def chunk_records(layout: RunLayout, chunk: int) -> list[MessageRecord]:
    """A chunk's best-known records, in row order: tracked, else sent plus any stored statuses (rows the
    send did not record are unknown), else all unknown (the send task failed before it started)."""
    tracked = layout.tracked(chunk)
    if tracked.exists():
        return list(ledger.iter_jsonl(tracked))  # type: ignore[arg-type]
    results = load_results(layout, chunk)
    manifest = list(ledger.iter_jsonl(layout.manifest(chunk)))
    reason = f"the send task of chunk {chunk} failed; see its log"
    if results is None:
        return [unknown_record(row["row"], row["to"], reason) for row in manifest]
    store = StorageStore(layout.tracking(chunk))
    known = apply_known(results["records"], store.load())
    store.clear()  # what tracking left behind
    out = {record["row"]: final_record(record) for record in known}
    for row in manifest:
        if row["row"] not in out:
            out[row["row"]] = unknown_record(row["row"], row["to"], reason)
    return [out[number] for number in sorted(out)]


def summarise(layout: RunLayout) -> dict[str, Any]:
    """Stream every chunk's records and the skipped rows, in row order, into the report and the counts;
    write ``summary.json`` and return the summary (the summary task's XCom)."""
    try:
        plan = read_plan(layout)
    except Exception:
        raise FileNotFoundError(f"{layout.batch} is missing: prepare did not finish for this run") from None
    fmt = plan.report_format
    messages = chain.from_iterable(chunk_records(layout, chunk) for chunk in range(plan.chunks))
    skipped = (skipped_record(row) for row in ledger.iter_jsonl(layout.skipped))
    builder = SummaryBuilder()
    target = layout.report(fmt)
    with open_atomic(target) as handle:
        writer = ReportWriter(handle, fmt)
        for record in heapq.merge(messages, skipped, key=lambda record: record["row"]):
            writer.add(record)
            builder.add(record)
        writer.close()
    shown_path = target.path if is_local(target) else str(target)
    summary = builder.summary(shown_path, str(target))
    summary.update(
        {
            "dedupe_key": plan.dedupe_key,
            "already_sent": summary["by_outcome"].get(ALREADY_SENT, 0),
            "allow_resend": plan.allow_resend,
            "chunks": plan.chunks,
            "chunk_size": plan.chunk_size,
            "storage": str(layout.folder),
            "failure_threshold": plan.failure_threshold,
        }
    )
    write_json_atomic(layout.summary, summary)
    log.info(
        "Batch: %d rows, %d to send: %d delivered, %d failed, %d unconfirmed, %d unknown; skipped %s; "
        "dedupe key %r; failure rate %.2f%%; report %s",
        summary["rows"],
        summary["to_send"],
        summary["delivered"],
        summary["failed"],
        summary["unconfirmed"],
        summary["unknown"],
        {k: v for k, v in summary["by_outcome"].items() if k not in SENT_OUTCOMES},
        summary["dedupe_key"],
        100 * summary["failure_rate"],
        target,
    )
    return summary


def failure_verdict(summary: Mapping[str, Any], threshold: float) -> str | None:
    """Why the run must fail, or None: failure rate over the threshold, or messages in an unknown state."""
    reasons = []
    if summary["failure_rate"] > threshold:
        reasons.append(
            f"{summary['failed']} of {summary['to_send']} messages failed "
            f"({100 * summary['failure_rate']:.1f}%), over the failure_threshold of {100 * threshold:.1f}%"
        )
    if summary.get("unknown"):
        reasons.append(f"{summary['unknown']} messages are in chunks whose send task failed")
    if not reasons:
        return None
    codes = ", ".join(f"{code}: {count}" for code, count in summary.get("error_codes", {}).items())
    return (
        "; ".join(reasons)
        + (f". Error codes: {codes}" if codes else "")
        + f". Report: {summary['report_path']}"
    )

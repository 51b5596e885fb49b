"""In-memory forms of the batch engine, for tests and benchmarks that work on small lists in one process.

The DAG streams rows through storage (``prepare.prepare_run``, ``report.summarise``); these hold everything in
memory so a test can look at it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from twilio_messaging.batch.ledger import SentBefore
from twilio_messaging.batch.plan import Sender
from twilio_messaging.batch.prepare import RowFilter, is_skipped
from twilio_messaging.batch.recipients import iter_rows
from twilio_messaging.batch.records import (
    ManifestRow,
    MessageRecord,
    SkippedRow,
    final_record,
    skipped_record,
)
from twilio_messaging.batch.report import SummaryBuilder
from twilio_messaging.batch.templating import BodyTemplate
from twilio_messaging.batch.track import Known
from twilio_messaging.contract import SKIP_OUTCOMES
from twilio_messaging.validation import InvalidInput


def load_rows(path: str | Path, field: str = "recipients_path") -> list[dict[str, Any]]:
    """Rows from a ``.csv``, ``.json`` or ``.jsonl`` file, as a list (``iter_rows`` streams them)."""
    return list(iter_rows(path, field))


def chunked(items: Sequence[Any], size: int) -> Iterator[list[Any]]:
    if size < 1:
        raise InvalidInput("chunk_size", "must be at least 1")
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


@dataclass
class PreparedBatch:
    chunks: list[dict[str, Any]]
    skipped: list[SkippedRow]
    total_rows: int
    to_send: int = 0

    def counts(self) -> dict[str, int]:
        out = {"rows": self.total_rows, "to_send": self.to_send, "chunks": len(self.chunks)}
        for outcome in SKIP_OUTCOMES:
            out[outcome] = sum(1 for row in self.skipped if row["outcome"] == outcome)
        return out


def prepare_batch(
    rows: Iterable[Mapping[str, Any]],
    template: str | BodyTemplate,
    sender: Sender,
    opt_out: set[str] | frozenset[str] = frozenset(),
    chunk_size: int = 500,
    sent_before: Mapping[str, SentBefore] | None = None,
) -> PreparedBatch:
    """Validate, render, dedupe and chunk ``rows`` in memory; row numbers are 1-based source positions."""
    body_template = template if isinstance(template, BodyTemplate) else BodyTemplate.parse(template)
    if chunk_size < 1:
        raise InvalidInput("chunk_size", "must be at least 1")
    check = RowFilter(body_template, sender, opt_out, sent_before or {})
    sendable: list[ManifestRow] = []
    skipped: list[SkippedRow] = []
    total = 0
    for number, row in enumerate(rows, start=1):
        total = number
        item = check.check(number, row)
        if is_skipped(item):
            skipped.append(item)
        else:
            sendable.append(cast(ManifestRow, item))
    chunks = [{"chunk": index, "rows": part} for index, part in enumerate(chunked(sendable, chunk_size))]
    return PreparedBatch(chunks=chunks, skipped=skipped, total_rows=total, to_send=len(sendable))


class MemoryStore:
    """A ``TrackStore`` in memory (tests and benchmarks that drive pokes in one process)."""

    def __init__(self) -> None:
        self.known: Known = {}
        self.saves = 0

    def load(self) -> Known:
        return dict(self.known)

    def save(self, known: Known) -> None:
        self.saves += 1
        self.known = dict(known)

    def clear(self) -> None:
        self.known = {}


def build_records(
    messages: Iterable[MessageRecord], skipped: Iterable[SkippedRow | Mapping[str, Any]]
) -> list[MessageRecord]:
    """Every row of a small batch, in source order (``SummaryBuilder`` takes them streamed)."""
    records = [final_record(record) for record in messages] + [skipped_record(row) for row in skipped]
    return sorted(records, key=lambda record: record["row"])


def summarise_records(records: Iterable[MessageRecord], report_path: str | None = None) -> dict[str, Any]:
    builder = SummaryBuilder()
    for record in records:
        builder.add(record)
    return builder.summary(report_path)

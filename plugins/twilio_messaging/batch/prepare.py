"""Turning recipient rows into sendable rows, one at a time, before anything is sent.

Every row ends up either sendable (exactly once per normalised number) or skipped with an outcome and a
reason: ``invalid`` (bad number, template field missing, body too long, ...), ``opted_out``, ``duplicate``
or ``already_sent`` (an earlier run under the same dedupe key sent it). A bad row never fails the batch; a
bad template or sender does, before any SMS goes out.

``RowFilter`` keeps only what deduplication needs (one entry per number), so a caller can stream any number
of rows through it; ``prepare_batch`` is the in-memory form for small lists and tests.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeGuard, cast

from twilio_messaging.batch.ledger import SentBefore
from twilio_messaging.batch.recipients import TO_FIELD, bare_number, normalise_number
from twilio_messaging.batch.records import ManifestRow, SkippedRow
from twilio_messaging.batch.templating import BodyTemplate, MissingField
from twilio_messaging.contract import ALREADY_SENT, DUPLICATE, INVALID, OPTED_OUT, SKIP_OUTCOMES
from twilio_messaging.validation import InvalidInput, MessageRequest, validate_message

MAX_CHUNK_SIZE = 5000  # the chunk_size param's maximum: one task's rows stay small in memory and storage
# Without chunk_size: enough chunks to keep the default pool busy (50 slots / 10 per chunk task = 5 at once,
# twice over), none smaller than 500 rows, since every task instance has a fixed cost (seconds on Celery,
# more for a Kubernetes pod), and none larger than the maximum.
AUTO_CHUNKS = 10
AUTO_MIN_CHUNK = 500

# Any well-formed number: validates the sender part of a request on its own.
_PROBE_TO = "+15005550006"


@dataclass(frozen=True)
class Sender:
    """What every message of a batch shares: the sender and the optional status callback."""

    from_: str | None = None
    messaging_service_sid: str | None = None
    status_callback: str | None = None

    def request(self, to: str, body: str) -> MessageRequest:
        """A validated request (prepare checks every row with it)."""
        return validate_message(
            to=to,
            from_=self.from_,
            body=body,
            status_callback=self.status_callback,
            messaging_service_sid=self.messaging_service_sid,
        )

    def prepared_request(self, row: ManifestRow) -> MessageRequest:
        """The request for a manifest row, which prepare has validated already (so it is not again)."""
        return MessageRequest(
            to=row["to"],
            from_=self.from_,
            body=row["body"],
            status_callback=self.status_callback,
            messaging_service_sid=self.messaging_service_sid,
        )

    def check(self) -> None:
        """Raise ``InvalidInput`` if the shared fields are wrong, so the whole batch stops early."""
        self.request(_PROBE_TO, "probe")


@dataclass
class RowFilter:
    """Classifies rows one by one; remembers one entry per number sent (for duplicates), nothing else."""

    template: BodyTemplate
    sender: Sender
    opt_out: frozenset[str] | set[str] = frozenset()
    sent_before: Mapping[str, SentBefore] = field(default_factory=dict)
    first_row_of: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.sender.check()

    def check(self, number: int, row: Mapping[str, Any]) -> ManifestRow | SkippedRow:
        raw_to = row.get(TO_FIELD)
        shown_to = "" if raw_to is None else str(raw_to)
        to = normalise_number(raw_to)
        try:
            if not to:
                raise InvalidInput(TO_FIELD, "is required; the row has no value in the 'to' column")
            request = self.sender.request(to, self.template.render(row))
        except (MissingField, InvalidInput) as exc:
            return {"row": number, "to": shown_to, "outcome": INVALID, "reason": str(exc)}
        if to in self.opt_out or bare_number(to) in self.opt_out:
            return {"row": number, "to": to, "outcome": OPTED_OUT, "reason": "number is on the opt-out list"}
        if to in self.first_row_of:
            first = self.first_row_of[to]
            return {
                "row": number,
                "to": to,
                "outcome": DUPLICATE,
                "reason": f"same number as row {first}, which is sent instead",
            }
        self.first_row_of[to] = number
        before = self.sent_before.get(to)
        if before is not None and before.sid:
            return {
                "row": number,
                "to": to,
                "outcome": ALREADY_SENT,
                "reason": f"already sent by run {before.run_id} under the same dedupe key",
                "sid": before.sid,
                "status": before.status,
            }
        out: ManifestRow = {"row": number, "to": request.to, "body": request.body or ""}
        if before is not None and before.since:
            out["since"] = before.since  # that run died mid-chunk: maybe sent; looked up before sending
        return out


def is_skipped(item: ManifestRow | SkippedRow) -> TypeGuard[SkippedRow]:
    return "outcome" in item


def auto_chunk_size(to_send: int) -> int:
    """About ``AUTO_CHUNKS`` chunks of ``AUTO_MIN_CHUNK``..``MAX_CHUNK_SIZE`` rows, split evenly."""
    if to_send < 1:
        return 1
    size = min(MAX_CHUNK_SIZE, max(AUTO_MIN_CHUNK, math.ceil(to_send / AUTO_CHUNKS)))
    return math.ceil(to_send / math.ceil(to_send / size))


def chunk_size_for(to_send: int, wanted: int | None, max_map_length: int) -> int:
    """The chunk size: ``wanted``, else ``auto_chunk_size``; grown so that the chunks fit in
    ``[core] max_map_length`` mapped tasks.

    Raises ``InvalidInput`` (naming the setting and the numbers) when even ``MAX_CHUNK_SIZE`` cannot fit.
    """
    if wanted is not None and wanted < 1:
        raise InvalidInput("chunk_size", "must be at least 1")
    if wanted is None:
        wanted = auto_chunk_size(to_send)
    needed = math.ceil(to_send / max_map_length) if to_send else 1
    if needed > MAX_CHUNK_SIZE:
        raise InvalidInput(
            "chunk_size",
            f"{to_send:,} messages need {math.ceil(to_send / MAX_CHUNK_SIZE):,} chunks even at the largest "
            f"chunk size of {MAX_CHUNK_SIZE:,}, but Airflow maps at most {max_map_length:,} tasks "
            f"([core] max_map_length, env AIRFLOW__CORE__MAX_MAP_LENGTH): raise that setting to at least "
            f"{math.ceil(to_send / MAX_CHUNK_SIZE):,} or split the list into runs of at most "
            f"{max_map_length * MAX_CHUNK_SIZE:,} recipients",
        )
    return max(wanted, needed)


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

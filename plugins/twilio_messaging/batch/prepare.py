"""Turning recipient rows into sendable chunks, before anything is sent.

Every row ends up either in a chunk (exactly once per normalised number) or in ``skipped`` with an outcome
and a reason: ``invalid`` (bad number, template field missing, body too long, ...), ``opted_out`` or
``duplicate``. A bad row never fails the batch; a bad template or sender does, before any SMS goes out.

Chunks are compact for XCom: ``{"chunk": i, "rows": [[row_number, to, body], ...]}``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from twilio_messaging.batch.recipients import TO_FIELD, bare_number, normalise_number
from twilio_messaging.batch.templating import BodyTemplate, MissingField
from twilio_messaging.validation import InvalidInput, MessageRequest, validate_message

INVALID = "invalid"
OPTED_OUT = "opted_out"
DUPLICATE = "duplicate"
SKIP_OUTCOMES = (INVALID, OPTED_OUT, DUPLICATE)

# Any well-formed number: validates the sender part of a request on its own.
_PROBE_TO = "+15005550006"


@dataclass(frozen=True)
class Sender:
    """What every message of a batch shares: the sender and the optional status callback."""

    from_: str | None = None
    messaging_service_sid: str | None = None
    status_callback: str | None = None

    def request(self, to: str, body: str) -> MessageRequest:
        return validate_message(
            to=to,
            from_=self.from_,
            body=body,
            status_callback=self.status_callback,
            messaging_service_sid=self.messaging_service_sid,
        )

    def check(self) -> None:
        """Raise ``InvalidInput`` if the shared fields are wrong, so the whole batch stops early."""
        self.request(_PROBE_TO, "probe")


@dataclass
class PreparedBatch:
    chunks: list[dict[str, Any]]
    skipped: list[dict[str, Any]]
    total_rows: int
    to_send: int = field(default=0)

    def counts(self) -> dict[str, int]:
        out = {"rows": self.total_rows, "to_send": self.to_send, "chunks": len(self.chunks)}
        for outcome in SKIP_OUTCOMES:
            out[outcome] = sum(1 for row in self.skipped if row["outcome"] == outcome)
        return out


def chunked(items: Sequence[Any], size: int) -> Iterator[list[Any]]:
    if size < 1:
        raise InvalidInput("chunk_size", "must be at least 1")
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def prepare_batch(
    rows: Sequence[Mapping[str, Any]],
    template: str | BodyTemplate,
    sender: Sender,
    opt_out: set[str] | frozenset[str] = frozenset(),
    chunk_size: int = 500,
) -> PreparedBatch:
    """Validate, render, dedupe and chunk ``rows``; row numbers are 1-based positions in the source."""
    body_template = template if isinstance(template, BodyTemplate) else BodyTemplate.parse(template)
    sender.check()
    if chunk_size < 1:
        raise InvalidInput("chunk_size", "must be at least 1")
    sendable: list[list[Any]] = []
    skipped: list[dict[str, Any]] = []
    first_row_of: dict[str, int] = {}
    for number, row in enumerate(rows, start=1):
        raw_to = row.get(TO_FIELD)
        shown_to = "" if raw_to is None else str(raw_to)
        to = normalise_number(raw_to)
        try:
            if not to:
                raise InvalidInput(TO_FIELD, "is required; the row has no value in the 'to' column")
            body = body_template.render(row)
            request = sender.request(to, body)
        except MissingField as exc:
            skipped.append({"row": number, "to": shown_to, "outcome": INVALID, "reason": str(exc)})
            continue
        except InvalidInput as exc:
            skipped.append({"row": number, "to": shown_to, "outcome": INVALID, "reason": str(exc)})
            continue
        if to in opt_out or bare_number(to) in opt_out:
            skipped.append(
                {"row": number, "to": to, "outcome": OPTED_OUT, "reason": "number is on the opt-out list"}
            )
            continue
        if to in first_row_of:
            skipped.append(
                {
                    "row": number,
                    "to": to,
                    "outcome": DUPLICATE,
                    "reason": f"same number as row {first_row_of[to]}, which is sent instead",
                }
            )
            continue
        first_row_of[to] = number
        sendable.append([number, request.to, request.body])
    chunks = [{"chunk": index, "rows": rows_} for index, rows_ in enumerate(chunked(sendable, chunk_size))]
    return PreparedBatch(chunks=chunks, skipped=skipped, total_rows=len(rows), to_send=len(sendable))

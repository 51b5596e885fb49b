"""The shapes of what a batch run writes to storage and XCom (JSON-friendly ``TypedDict``s), and the
one place a recipient's record is made (from what was sent or tracked, or why it was not).

Outcomes, one per input row (``twilio_messaging.contract`` names them):

- ``delivered`` / ``failed``: the final Twilio status, mapped by ``statuses.end_state``;
- ``unconfirmed``: still in flight (usually ``sent``) when tracking stopped;
- ``rejected``: Twilio refused the create request (error code from the API, nothing was sent);
- ``unknown``: the chunk's send task failed, so whether the message went out is not known (see its log);
- ``invalid`` / ``opted_out`` / ``duplicate`` / ``already_sent``: skipped before sending (``already_sent``
  carries the SID an earlier run under the same dedupe key sent).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NotRequired, TypedDict

from twilio_messaging.contract import DELIVERED, FAILED, REJECTED, UNCONFIRMED, UNKNOWN
from twilio_messaging.errors import describe, error_code
from twilio_messaging.statuses import end_state, is_terminal, unconfirmed


class ManifestRow(TypedDict):
    """One message to send: a line of a chunk manifest. Already validated by prepare."""

    row: int
    to: str
    body: str
    # An earlier run under the same dedupe key may have sent this one (it died mid-chunk): look it up first.
    since: NotRequired[str]
    # With pace: segments queued for the sender before this one (its slot is prepared_at + offset / mps).
    offset: NotRequired[int]


class SkippedRow(TypedDict):
    """A row that is not sent: invalid, opted_out, duplicate or already_sent (with the earlier SID)."""

    row: int
    to: str
    outcome: str
    reason: str
    sid: NotRequired[str | None]
    status: NotRequired[str | None]


class MessageRecord(TypedDict):
    """One input row's line in the results, the tracking and the report (``report.REPORT_FIELDS``)."""

    row: int
    to: str
    outcome: str
    status: str | None
    sid: str | None
    error_code: int | None
    error_meaning: str | None
    reason: str | None


# What prepare's XCom holds per chunk (send_chunk's mapped argument): the chunk's index, nothing more. The
# manifest's path follows from it (``layout.RunLayout.manifest``) and its row count is in ``batch.json``, so
# the list a mapped task resolves whole stays a few bytes per chunk.
ChunkRef = int


class ChunkResults(TypedDict):
    """``results/chunk-N.json``: rewritten atomically while the chunk sends, ``complete`` at the end."""

    chunk: int
    started_at: str  # when the first try began sending: a later try looks up what it may have created
    sent_at: str | None
    complete: bool
    records: list[MessageRecord]
    # Twilio's date_created of the first and last message created (every try): tracking lists that window.
    created_first: NotRequired[str | None]
    created_last: NotRequired[str | None]


class SendCounts(TypedDict):
    """send_chunk's XCom."""

    chunk: int
    sent_at: str
    messages: int
    accepted: int  # Twilio created them; their delivery is tracked next
    rejected: int
    reused: int  # already created by an earlier try of this task, not sent again
    seconds: float
    throttled: int


class TrackCounts(TypedDict):
    """track_chunk's XCom."""

    chunk: int
    delivered: int
    failed: int
    unconfirmed: int
    rejected: int


class LedgerEntry(TypedDict):
    """``_ledger/<key>/<run_id>.json``: a run that sends under a dedupe key."""

    run_id: str
    chunks: int
    prepared_at: str


# ---- making records -------------------------------------------------------------------------------


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

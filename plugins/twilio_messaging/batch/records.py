"""The shapes of what a batch run writes to storage and XCom (JSON-friendly ``TypedDict``s)."""

from __future__ import annotations

from typing import NotRequired, TypedDict


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

"""The batch's plan: what prepare decides once for the whole run and writes to ``batch.json``, and the files
it leaves for the later tasks (manifests, checkpointed results), read back with a clear error when a worker
does not see them.

send_chunk, track_chunk and summary read the plan; none of them reads the run's params again, so a batch
is sent, tracked and reported as prepare decided it (sender, concurrency, pace and rate, chunks, dedupe key,
connection, report format and failure threshold).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from twilio_messaging.batch.layout import RunLayout
from twilio_messaging.batch.ledger import iter_jsonl
from twilio_messaging.batch.records import ChunkRef, ChunkResults, ManifestRow
from twilio_messaging.settings import STORAGE_ENV, BatchSettings
from twilio_messaging.storage import read_json, storage_base, write_json_atomic
from twilio_messaging.validation import InvalidInput, MessageRequest, validate_message

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


def sender_from_params(params: Mapping[str, Any], settings: BatchSettings) -> Sender:
    """The shared sender; with neither ``from`` nor ``messagingServiceSid`` the deployment default is used."""
    from_ = params.get("from") or None
    service = params.get("messagingServiceSid") or None
    if from_ is None and service is None:
        from_ = settings.default_from
    # The run's own statusCallback wins; else the receiver, when callbacks are on.
    callback = params.get("statusCallback") or settings.status_callback
    return Sender(from_=from_, messaging_service_sid=service, status_callback=callback)


def concurrency_from_params(params: Mapping[str, Any], settings: BatchSettings) -> int:
    """The param may lower the per-task concurrency, never raise it above the pool slots a task holds."""
    wanted = params.get("concurrency") or settings.concurrency
    if not isinstance(wanted, int) or wanted < 1:
        raise InvalidInput("concurrency", "must be a whole number of at least 1")
    return min(wanted, settings.concurrency)


def dedupe_key(
    params: Mapping[str, Any],
    logical_date: datetime | None,
    data_interval_end: datetime | None,
    run_after: datetime | None,
) -> str:
    """The ``dedupe_key`` param, else the UTC day the run is for: its data interval's end (the day a
    scheduled run fires), else its logical date, else when it was triggered. A scheduled and a manual run
    on the same day share it."""
    given = params.get("dedupe_key")
    if given is not None and str(given).strip():
        return str(given).strip()
    day = data_interval_end or logical_date or run_after or datetime.now(UTC)
    return day.astimezone(UTC).date().isoformat()


@dataclass(frozen=True)
class BatchPlan:
    """What prepare decided, once, for every later task of the run (``batch.json``)."""

    prepared_at: str  # ISO-8601 UTC: the anchor of ``pace`` and of look-ups
    dedupe_key: str
    allow_resend: bool
    conn_id: str
    account_sid: str | None  # None: the connection's Account SID login
    sender: Sender
    concurrency: int  # requests in flight per chunk task
    pace: bool  # spread the sends at ``sender_mps``
    sender_mps: float | None  # the sender's rate, segments/s
    segments: int | None
    chunk_size: int
    chunk_rows: list[int]  # rows per chunk, in chunk order
    counts: dict[str, int]
    report_format: str
    failure_threshold: float | None

    @property
    def chunks(self) -> int:
        return len(self.chunk_rows)

    def to_json(self) -> dict[str, Any]:
        return {
            "prepared_at": self.prepared_at,
            "dedupe_key": self.dedupe_key,
            "allow_resend": self.allow_resend,
            "conn_id": self.conn_id,
            "account_sid": self.account_sid,
            "sender": {
                "from": self.sender.from_,
                "messaging_service_sid": self.sender.messaging_service_sid,
                "status_callback": self.sender.status_callback,
            },
            "concurrency": self.concurrency,
            "pace": self.pace,
            "sender_mps": self.sender_mps,
            "segments": self.segments,
            "chunks": self.chunks,
            "chunk_size": self.chunk_size,
            "chunk_rows": self.chunk_rows,
            "counts": self.counts,
            "report_format": self.report_format,
            "failure_threshold": self.failure_threshold,
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> BatchPlan:
        sender = value["sender"]
        return cls(
            prepared_at=value["prepared_at"],
            dedupe_key=value["dedupe_key"],
            allow_resend=bool(value["allow_resend"]),
            conn_id=value["conn_id"],
            account_sid=value.get("account_sid"),
            sender=Sender(sender["from"], sender["messaging_service_sid"], sender["status_callback"]),
            concurrency=int(value["concurrency"]),
            pace=bool(value["pace"]),
            sender_mps=value.get("sender_mps"),
            segments=value.get("segments"),
            chunk_size=int(value["chunk_size"]),
            chunk_rows=[int(n) for n in value["chunk_rows"]],
            counts=dict(value["counts"]),
            report_format=value["report_format"],
            failure_threshold=value.get("failure_threshold"),
        )


def write_plan(layout: RunLayout, plan: BatchPlan) -> None:
    write_json_atomic(layout.batch, plan.to_json())


# ---- reading what prepare and send_chunk wrote ----------------------------------------------------------


class StorageMismatch(RuntimeError):
    """A file an upstream task wrote is not where this task looks: the workers do not share storage."""


def missing(path: Any, writer: str) -> StorageMismatch:
    return StorageMismatch(
        f"{path} is missing, though {writer} wrote it: every worker must see the same storage "
        f"(${STORAGE_ENV}, now {storage_base()}); see the README's Storage section"
    )


def read_plan(layout: RunLayout) -> BatchPlan:
    """The run's plan; missing means prepare did not finish, or this worker does not see its storage."""
    value = read_json(layout.batch)
    if not isinstance(value, dict):
        raise missing(layout.batch, "prepare")
    return BatchPlan.from_json(value)


def read_manifest(layout: RunLayout, chunk: ChunkRef, plan: BatchPlan | None = None) -> list[ManifestRow]:
    """The chunk's rows; a missing or short manifest is an error, never an empty chunk."""
    plan = plan or read_plan(layout)
    path = layout.manifest(chunk)
    if not path.exists():
        raise missing(path, "prepare")
    rows: list[ManifestRow] = list(iter_jsonl(path))  # type: ignore[arg-type]
    expected = plan.chunk_rows[chunk]
    if len(rows) != expected:
        raise StorageMismatch(f"{path} holds {len(rows)} rows, prepare wrote {expected}")
    return rows


def load_results(layout: RunLayout, chunk: int) -> ChunkResults | None:
    """What send_chunk recorded for the chunk so far, or None before it started."""
    value = read_json(layout.results(chunk))
    return value if isinstance(value, dict) else None  # type: ignore[return-value]

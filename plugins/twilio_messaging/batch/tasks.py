"""The callables of the ``twilio_batch_notifications`` DAG: thin Airflow glue around the batch modules.

Each function takes plain values (params, XCom values, settings) so tests can call it without a scheduler;
only ``VariableStore`` and the exceptions touch Airflow.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from twilio_messaging.batch import report
from twilio_messaging.batch.prepare import Sender, prepare_batch
from twilio_messaging.batch.recipients import (
    allowed_data_dirs,
    load_opt_out,
    load_rows,
    resolve_path,
    rows_from_list,
)
from twilio_messaging.batch.send import ACCOUNT_WIDE_STATUSES, send_rows
from twilio_messaging.batch.settings import BatchSettings
from twilio_messaging.batch.throttle import throttled_client
from twilio_messaging.batch.track import Known, MemoryStore, TrackStore, apply_known, poll_chunk
from twilio_messaging.connection import DEFAULT_CONN_ID, TwilioConnection
from twilio_messaging.errors import TwilioAPIError, TwilioConfigError
from twilio_messaging.validation import InvalidInput

log = logging.getLogger(__name__)


def is_final_error(exc: BaseException) -> bool:
    """Errors a task retry cannot fix: bad input or connection, credentials or account refused."""
    if isinstance(exc, InvalidInput | TwilioConfigError):
        return True
    return isinstance(exc, TwilioAPIError) and exc.status_code in ACCOUNT_WIDE_STATUSES


def sender_from_params(params: Mapping[str, Any], settings: BatchSettings) -> Sender:
    """The shared sender; with neither ``from`` nor ``messagingServiceSid`` the deployment default is used."""
    from_ = params.get("from") or None
    service = params.get("messagingServiceSid") or None
    if from_ is None and service is None:
        from_ = settings.default_from
    return Sender(
        from_=from_, messaging_service_sid=service, status_callback=params.get("statusCallback") or None
    )


def concurrency_from_params(params: Mapping[str, Any], settings: BatchSettings) -> int:
    """The param may lower the per-task concurrency, never raise it above the pool slots a task holds."""
    wanted = params.get("concurrency") or settings.concurrency
    if not isinstance(wanted, int) or wanted < 1:
        raise InvalidInput("concurrency", "must be a whole number of at least 1")
    return min(wanted, settings.concurrency)


def prepare(params: Mapping[str, Any], settings: BatchSettings, base_dirs: Sequence[Path]) -> dict[str, Any]:
    """Load, validate, dedupe, apply opt-outs and chunk. Raises ``InvalidInput`` for batch-wide problems."""
    allowed = allowed_data_dirs(base_dirs[0])
    if params.get("recipients"):
        rows = rows_from_list(params["recipients"], "recipients")
        source = "conf 'recipients'"
    elif params.get("recipients_path"):
        path = resolve_path(params["recipients_path"], base_dirs, allowed)
        rows = load_rows(path)
        source = str(path)
    else:
        raise InvalidInput("recipients_path", "give a recipients file path or a 'recipients' list")
    opt_out_path = params.get("opt_out_path")
    opt_out = load_opt_out(
        resolve_path(opt_out_path, base_dirs, allowed, "opt_out_path") if opt_out_path else None,
        params.get("opt_out") or (),
    )
    chunk_size = params.get("chunk_size") or 500
    prepared = prepare_batch(
        rows,
        params.get("body_template") or "",
        sender_from_params(params, settings),
        opt_out,
        int(chunk_size),
    )
    counts = prepared.counts()
    log.info("Recipients from %s: %s", source, counts)
    for row in prepared.skipped[: report.SUMMARY_LIST_LIMIT]:
        log.info("Row %s (%s) skipped as %s: %s", row["row"], row["to"], row["outcome"], row["reason"])
    return {
        "chunks": prepared.chunks,
        "skipped": prepared.skipped,
        "counts": counts,
        "prepared_at": datetime.now(UTC).isoformat(),
    }


def send_chunk(
    chunk: Mapping[str, Any],
    params: Mapping[str, Any],
    settings: BatchSettings,
    *,
    prepared_at: str | None = None,
    try_number: int = 1,
    connection: TwilioConnection | None = None,
) -> dict[str, Any]:
    """Send one chunk; on a retry (``try_number`` > 1) every row is looked up before it is sent."""
    connection = connection or TwilioConnection.from_airflow(DEFAULT_CONN_ID)
    sender = sender_from_params(params, settings)
    concurrency = concurrency_from_params(params, settings)
    since = datetime.fromisoformat(prepared_at) if (try_number > 1 and prepared_at) else None
    rows = chunk["rows"]

    async def run() -> tuple[list[dict[str, Any]], Any]:
        client, transport = throttled_client(
            connection, concurrency, account_sid=params.get("accountSid") or None
        )
        async with client:
            records = await send_rows(
                client,
                rows,
                sender,
                concurrency=concurrency,
                sent_since=since,
                give_up_after=settings.send_timeout,
            )
        return records, transport

    started = time.monotonic()
    records, transport = asyncio.run(run())
    elapsed = time.monotonic() - started
    rejected = sum(1 for record in records if record["outcome"] == report.REJECTED)
    log.info(
        "Chunk %s: %d messages in %.2f s (%.0f/s), %d rejected by Twilio; requests %s; throttled %d times "
        "(concurrency went down to %d of %d)",
        chunk["chunk"],
        len(records),
        elapsed,
        len(records) / elapsed if elapsed else 0.0,
        rejected,
        dict(transport.calls),
        transport.limiter.stats.throttled,
        transport.limiter.stats.lowest_limit,
        concurrency,
    )
    return {
        "chunk": chunk["chunk"],
        "sent_at": datetime.now(UTC).isoformat(),
        "seconds": round(elapsed, 3),
        "throttled": transport.limiter.stats.throttled,
        "records": records,
    }


class VariableStore:
    """A chunk's final statuses kept in an Airflow Variable between reschedule pokes.

    The sensor's own XComs are cleared each time it starts again (apache/airflow#39532); a Variable survives
    and is readable from any worker. It is deleted when the chunk is done (and by the summary, if tracking
    failed). Only final statuses are stored, so it changes at most a few times per chunk.
    """

    PREFIX = "twilio_batch_track"

    def __init__(self, dag_id: str, run_id: str, chunk: int) -> None:
        self.key = f"{self.PREFIX}:{dag_id}:{run_id}:{chunk}"

    def load(self) -> Known:
        from airflow.sdk import Variable

        value = Variable.get(self.key, default=None, deserialize_json=True)
        return dict(value) if isinstance(value, dict) else {}

    def save(self, known: Known) -> None:
        from airflow.sdk import Variable

        Variable.set(
            self.key, known, description="twilio_batch_notifications tracking state", serialize_json=True
        )

    def clear(self) -> None:
        from airflow.sdk import Variable

        try:
            Variable.delete(self.key)
        except Exception as exc:  # absent already; nothing to clean
            log.debug("Variable %s not deleted: %s", self.key, exc)


def track_poke(
    sent: Mapping[str, Any],
    params: Mapping[str, Any],
    settings: BatchSettings,
    store: TrackStore,
    *,
    now: datetime | None = None,
    connection: TwilioConnection | None = None,
) -> tuple[bool, dict[str, Any] | None]:
    """One poke of a chunk's tracking: ``(done, xcom_value)``.

    No fetch before ``first_fetch_after`` has passed since sending; after ``status_timeout`` the chunk is
    done and messages still in flight are unconfirmed.
    """
    now = now or datetime.now(UTC)
    age = (now - datetime.fromisoformat(sent["sent_at"])).total_seconds()
    records = sent["records"]
    if not any(record.get("sid") for record in records):
        return True, {"chunk": sent["chunk"], "records": list(records), "fetched": 0}
    if age < settings.first_fetch_after:
        log.info(
            "Chunk %s was sent %.0f s ago; first status fetch after %.0f s",
            sent["chunk"],
            age,
            settings.first_fetch_after,
        )
        return False, None
    final = age >= settings.status_timeout
    connection = connection or TwilioConnection.from_airflow(DEFAULT_CONN_ID)
    concurrency = concurrency_from_params(params, settings)

    async def run() -> Any:
        client, _ = throttled_client(connection, concurrency, account_sid=params.get("accountSid") or None)
        async with client:
            return await poll_chunk(client, records, store, concurrency=concurrency, final=final)

    result = asyncio.run(run())
    log.info(
        "Chunk %s: fetched %d statuses, %d still in flight%s",
        sent["chunk"],
        result.fetched,
        result.pending,
        " (status timeout reached: reported as unconfirmed)" if final and result.pending else "",
    )
    if not result.done:
        return False, None
    return True, {"chunk": sent["chunk"], "records": result.records}


def collect_records(
    chunks: Iterable[Mapping[str, Any]],
    skipped: Iterable[Mapping[str, Any]],
    sent: Iterable[Mapping[str, Any] | None],
    tracked: Iterable[Mapping[str, Any] | None],
    store_for: Callable[[int], TrackStore] = lambda chunk: MemoryStore(),
) -> list[dict[str, Any]]:
    """Every row's best-known record: tracked, else sent plus any stored statuses, else unknown."""
    sent_by_chunk = {item["chunk"]: item for item in sent if item}
    tracked_by_chunk = {item["chunk"]: item for item in tracked if item}
    messages: list[dict[str, Any]] = []
    for chunk in chunks:
        index = chunk["chunk"]
        if index in tracked_by_chunk:
            messages.extend(tracked_by_chunk[index]["records"])
        elif index in sent_by_chunk:
            store = store_for(index)
            messages.extend(apply_known(sent_by_chunk[index]["records"], store.load()))
            store.clear()
        else:
            messages.extend(
                report.unknown_record(row, to, f"the send task of chunk {index} failed; see its log")
                for row, to, _ in chunk["rows"]
            )
    return report.build_records(messages, skipped)


def summarise(
    records: Sequence[Mapping[str, Any]], params: Mapping[str, Any], dag_id: str, run_id: str
) -> dict[str, Any]:
    """Write the per-recipient report and return the summary (the summary task's XCom)."""
    fmt = params.get("report_format") or "csv"
    path = report.write_report(
        records, report.report_path(report.default_report_dir(), dag_id, run_id, fmt), fmt
    )
    summary = report.summarise(records, str(path))
    summary["failure_threshold"] = params.get("failure_threshold")
    log.info(
        "Batch: %d rows, %d to send: %d delivered, %d failed, %d unconfirmed, %d unknown; skipped %s; "
        "failure rate %.2f%%; report %s",
        summary["rows"],
        summary["to_send"],
        summary["delivered"],
        summary["failed"],
        summary["unconfirmed"],
        summary["unknown"],
        {k: v for k, v in summary["by_outcome"].items() if k not in report.SENT_OUTCOMES},
        100 * summary["failure_rate"],
        path,
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

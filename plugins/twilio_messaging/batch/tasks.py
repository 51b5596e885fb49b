"""The callables of the ``twilio_batch_notifications`` DAG: plain functions over params, settings and the
run's storage folder (``layout.RunLayout``), so tests call them without a scheduler.

Rows live in storage; what goes through XCom is small: chunk indices from prepare, counts from
send_chunk and track_chunk, the summary (with the report's path).
"""

from __future__ import annotations

import asyncio
import heapq
import json
import logging
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from itertools import chain
from pathlib import Path
from typing import Any, TypedDict, cast

from twilio_messaging.batch import ledger, report
from twilio_messaging.batch.layout import RunLayout
from twilio_messaging.batch.prepare import (
    RowFilter,
    Sender,
    chunk_size_for,
    is_skipped,
)
from twilio_messaging.batch.recipients import (
    iter_rows,
    load_opt_out,
    resolve_path,
    rows_from_list,
)
from twilio_messaging.batch.records import (
    ChunkRef,
    ChunkResults,
    ManifestRow,
    MessageRecord,
    SendCounts,
    SkippedRow,
    TrackCounts,
)
from twilio_messaging.batch.send import Pace, send_rows
from twilio_messaging.batch.sweep import CreatedSpan, ListWindow
from twilio_messaging.batch.templating import BodyTemplate
from twilio_messaging.batch.throttle import throttled_client
from twilio_messaging.batch.throughput import DrainEstimate
from twilio_messaging.batch.track import StorageStore, apply_known, poll_chunk
from twilio_messaging.connection import TwilioConnection
from twilio_messaging.contract import ALREADY_SENT, SKIP_OUTCOMES
from twilio_messaging.errors import ACCOUNT_WIDE_ON_CREATE, TwilioAPIError, TwilioConfigError
from twilio_messaging.hooks.twilio import TwilioHook
from twilio_messaging.settings import STORAGE_ENV, BatchSettings, batch_data_dirs
from twilio_messaging.storage import (
    is_local,
    open_atomic,
    read_json,
    storage_base,
    write_json_atomic,
)
from twilio_messaging.validation import InvalidInput

log = logging.getLogger(__name__)

CHECKPOINT_EVERY = 1.0  # seconds between checkpoints of a sending chunk's results
SKIPPED_EXAMPLES = 10  # skipped rows named in prepare's XCom and log; skipped.jsonl has them all


class PrepareOutput(TypedDict):
    chunks: list[ChunkRef]
    counts: dict[str, int]
    skipped: list[SkippedRow]
    prepared_at: str
    dedupe_key: str


def is_final_error(exc: BaseException) -> bool:
    """Errors a task retry cannot fix: bad input or connection, credentials or account refused."""
    if isinstance(exc, InvalidInput | TwilioConfigError):
        return True
    return isinstance(exc, TwilioAPIError) and exc.status_code in ACCOUNT_WIDE_ON_CREATE


@contextmanager
def final_errors() -> Iterator[None]:
    """Fail at once, without retries, on errors a retry cannot fix (bad input, credentials, account)."""
    from airflow.sdk.exceptions import AirflowFailException

    try:
        yield
    except Exception as exc:
        if is_final_error(exc):
            raise AirflowFailException(str(exc)) from None
        raise


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


def max_map_length() -> int:
    """``[core] max_map_length``: how many mapped task instances Airflow creates for one task."""
    from airflow.sdk.configuration import conf

    return int(conf.getint("core", "max_map_length"))


def _rows(params: Mapping[str, Any], base_dirs: Sequence[Path]) -> tuple[Iterable[Mapping[str, Any]], str]:
    if params.get("recipients"):
        return rows_from_list(params["recipients"], "recipients"), "conf 'recipients'"
    if params.get("recipients_path"):
        path = resolve_path(params["recipients_path"], base_dirs, batch_data_dirs(base_dirs[0]))
        return iter_rows(path), str(path)
    raise InvalidInput("recipients_path", "give a recipients file path or a 'recipients' list")


def _jsonl(item: Mapping[str, Any]) -> str:
    return json.dumps(item, ensure_ascii=False, separators=(",", ":")) + "\n"


def prepare(
    params: Mapping[str, Any],
    settings: BatchSettings,
    base_dirs: Sequence[Path],
    layout: RunLayout,
    key: str,
    map_limit: int | None = None,
    base: Any = None,
) -> PrepareOutput:
    """Stream the recipients: validate, dedupe (within the run and against earlier runs under ``key``),
    opt-out, render, write one manifest per chunk and the skipped rows to storage.

    Memory holds one entry per number (for duplicates) and the earlier runs' sent numbers, not the rows.
    Raises ``InvalidInput`` for batch-wide problems, before anything is sent.
    """
    started = time.monotonic()
    rows, source = _rows(params, base_dirs)
    opt_out_path = params.get("opt_out_path")
    allowed = batch_data_dirs(base_dirs[0])
    opt_out = load_opt_out(
        resolve_path(opt_out_path, base_dirs, allowed, "opt_out_path") if opt_out_path else None,
        params.get("opt_out") or (),
    )
    template = BodyTemplate.parse(params.get("body_template") or "")
    sender = sender_from_params(params, settings)
    sender.check()
    sent_before = (
        {} if params.get("allow_resend") else ledger.sent_before(layout.dag_id, key, layout.run_id, base)
    )
    check = RowFilter(template, sender, opt_out, sent_before)
    mps = params.get("sender_mps")
    pace = bool(params.get("pace")) and bool(mps)
    estimate = DrainEstimate(float(mps)) if mps else None
    counts: Counter[str] = Counter()
    examples: list[SkippedRow] = []
    total = to_send = 0
    with tempfile.TemporaryFile("w+", encoding="utf-8") as spool:
        with open_atomic(layout.skipped) as skipped_out:
            for number, row in enumerate(rows, start=1):
                total = number
                item = check.check(number, row)
                if is_skipped(item):
                    counts[item["outcome"]] += 1
                    skipped_out.write(_jsonl(item))
                    if len(examples) < SKIPPED_EXAMPLES:
                        examples.append(item)
                    continue
                sendable = cast(ManifestRow, item)
                to_send += 1
                if estimate is not None:
                    offset = estimate.add(sendable["body"])
                    if pace:
                        sendable["offset"] = offset
                spool.write(_jsonl(sendable))
            if estimate is not None and not pace and (refusal := estimate.refusal()) is not None:
                raise refusal
        del check, sent_before  # the dedupe memory is not needed for cutting the chunks
        given = params.get("chunk_size")
        wanted = int(given) if given else None
        limit = map_limit or max_map_length()
        size = chunk_size_for(to_send, wanted, limit)
        if wanted is not None and size != wanted:
            log.warning(
                "chunk_size %d would make %d chunks, over [core] max_map_length = %d: using chunks of %d",
                wanted,
                -(-to_send // wanted),
                limit,
                size,
            )
        spool.seek(0)
        chunk_rows = _write_manifests(spool, layout, size)
    refs: list[ChunkRef] = list(range(len(chunk_rows)))
    prepared_at = datetime.now(UTC).isoformat()
    summary_counts = {"rows": total, "to_send": to_send, "chunks": len(refs), "chunk_size": size}
    summary_counts.update({outcome: counts[outcome] for outcome in SKIP_OUTCOMES})
    write_json_atomic(
        layout.batch,
        {
            "prepared_at": prepared_at,
            "dedupe_key": key,
            "allow_resend": bool(params.get("allow_resend")),
            "counts": summary_counts,
            "chunks": len(refs),
            "chunk_size": size,
            "chunk_rows": chunk_rows,
            "sender_mps": mps,
            "pace": pace,
            "segments": estimate.segments if estimate else None,
        },
    )
    ledger.register(layout.dag_id, key, layout.run_id, len(refs), prepared_at, base)
    log.info(
        "Recipients from %s: %s; dedupe key %r (%d already sent); %.1f s; manifests in %s",
        source,
        summary_counts,
        key,
        counts[ALREADY_SENT],
        time.monotonic() - started,
        layout.folder,
    )
    if estimate is not None:
        log.info(
            "Sender at %g segments/s: %d segments need %.0f s%s",
            estimate.mps,
            estimate.segments,
            estimate.seconds,
            " (paced)" if pace else "",
        )
    for skipped in examples:
        log.info(
            "Row %s (%s) skipped as %s: %s",
            skipped["row"],
            skipped["to"],
            skipped["outcome"],
            skipped["reason"],
        )
    return {
        "chunks": refs,
        "counts": summary_counts,
        "skipped": examples,
        "prepared_at": prepared_at,
        "dedupe_key": key,
    }


def _write_manifests(spool: Iterable[str], layout: RunLayout, size: int) -> list[int]:
    """One manifest per ``size`` lines; the row count of each."""
    rows: list[int] = []
    lines = iter(spool)
    while True:
        chunk = len(rows)
        count = 0
        first = next(lines, None)
        if first is None:
            return rows
        with open_atomic(layout.manifest(chunk)) as out:
            out.write(first)
            count = 1
            for line in lines:
                out.write(line)
                count += 1
                if count == size:
                    break
        rows.append(count)


def prepared_at(layout: RunLayout) -> str | None:
    """When prepare finished (``batch.json``): the anchor of ``pace`` and of look-ups."""
    batch = read_json(layout.batch)
    return batch.get("prepared_at") if isinstance(batch, dict) else None


class StorageMismatch(RuntimeError):
    """A file an upstream task wrote is not where this task looks: the workers do not share storage."""


def _missing(path: Any, writer: str) -> StorageMismatch:
    return StorageMismatch(
        f"{path} is missing, though {writer} wrote it: every worker must see the same storage "
        f"(${STORAGE_ENV}, now {storage_base()}); see the README's Storage section"
    )


def read_manifest(layout: RunLayout, chunk: ChunkRef) -> list[ManifestRow]:
    """The chunk's rows; a missing or short manifest is an error, never an empty chunk."""
    batch = read_json(layout.batch)
    if not isinstance(batch, dict):
        raise _missing(layout.batch, "prepare")
    path = layout.manifest(chunk)
    if not path.exists():
        raise _missing(path, "prepare")
    rows: list[ManifestRow] = list(ledger.iter_jsonl(path))  # type: ignore[arg-type]
    expected = batch["chunk_rows"][chunk]
    if len(rows) != expected:
        raise StorageMismatch(f"{path} holds {len(rows)} rows, prepare wrote {expected}")
    return rows


def _load_results(layout: RunLayout, chunk: int) -> ChunkResults | None:
    value = read_json(layout.results(chunk))
    return value if isinstance(value, dict) else None  # type: ignore[return-value]


def send_chunk(
    chunk: ChunkRef,
    params: Mapping[str, Any],
    settings: BatchSettings,
    layout: RunLayout,
    *,
    prepared_at: str | None = None,
    connection: TwilioConnection | None = None,
) -> SendCounts:
    """Send one chunk from its manifest; results are checkpointed to storage while it sends.

    A row an earlier try recorded is not sent again; the others are looked up before sending when an
    earlier try may have sent them (its results exist, so it had started).
    """
    connection = connection or TwilioHook().connection_settings()
    sender = sender_from_params(params, settings)
    concurrency = concurrency_from_params(params, settings)
    rows = read_manifest(layout, chunk)
    prior = _load_results(layout, chunk)
    by_row = {row["row"]: row["to"] for row in rows}
    results: dict[int, MessageRecord] = {}
    if prior is not None:
        # Keep what an earlier try learned, for the rows this manifest still has.
        results = {r["row"]: r for r in prior["records"] if by_row.get(r["row"]) == r["to"]}
    reused = len(results)
    started_at = prior["started_at"] if prior else datetime.now(UTC).isoformat()
    since = datetime.fromisoformat(started_at) if prior else None
    path = layout.results(chunk)
    span = CreatedSpan()
    if prior is not None:
        span.merge(prior.get("created_first"), prior.get("created_last"))

    def save(records: list[MessageRecord], complete: bool, sent_at: str | None = None) -> None:
        state: ChunkResults = {
            "chunk": chunk,
            "started_at": started_at,
            "sent_at": sent_at,
            "complete": complete,
            "records": sorted(records, key=lambda record: record["row"]),
        }
        state["created_first"], state["created_last"] = span.stored()
        write_json_atomic(path, state)

    save(list(results.values()), complete=len(results) == len(rows))  # "started": written before any send
    mps = params.get("sender_mps")
    pace = (
        Pace(anchor=datetime.fromisoformat(prepared_at).timestamp(), mps=float(mps))
        if params.get("pace") and mps and prepared_at
        else None
    )

    async def run() -> tuple[list[MessageRecord], Any]:
        client, transport = throttled_client(
            connection, concurrency, account_sid=params.get("accountSid") or None
        )

        stop = asyncio.Event()

        async def checkpoints() -> None:
            # Stopped by an event, not cancelled: a write in progress finishes before the final one.
            saved = len(results)
            while not stop.is_set():
                with suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=CHECKPOINT_EVERY)
                if len(results) != saved and not stop.is_set():
                    saved = len(results)
                    await asyncio.to_thread(save, list(results.values()), False)

        keeper = asyncio.create_task(checkpoints())
        try:
            async with client:
                records = await send_rows(
                    client,
                    rows,
                    sender,
                    concurrency=concurrency,
                    sent_since=since,
                    give_up_after=settings.send_timeout,
                    results=results,
                    pace=pace,
                    span=span,
                )
        finally:
            stop.set()
            await asyncio.gather(keeper, return_exceptions=True)
        return records, transport

    started = time.monotonic()
    try:
        records, transport = asyncio.run(run())
    except BaseException:
        save(list(results.values()), complete=False)
        raise
    sent_at = datetime.now(UTC).isoformat()
    save(records, complete=True, sent_at=sent_at)
    elapsed = time.monotonic() - started
    rejected = sum(1 for record in records if record["outcome"] == report.REJECTED)
    log.info(
        "Chunk %s: %d messages in %.2f s (%.0f/s): %d accepted by Twilio (delivery is tracked next), "
        "%d rejected, %d already created by an earlier try; requests %s; throttled %d times (concurrency "
        "went down to %d of %d); results in %s",
        chunk,
        len(records),
        elapsed,
        (len(records) - reused) / elapsed if elapsed else 0.0,
        len(records) - rejected,
        rejected,
        reused,
        dict(transport.calls),
        transport.limiter.stats.throttled,
        transport.limiter.stats.lowest_limit,
        concurrency,
        path,
    )
    return {
        "chunk": chunk,
        "sent_at": sent_at,
        "messages": len(records),
        "accepted": len(records) - rejected,
        "rejected": rejected,
        "reused": reused,
        "seconds": round(elapsed, 3),
        "throttled": transport.limiter.stats.throttled,
    }


def _track_counts(chunk: int, records: Iterable[MessageRecord]) -> TrackCounts:
    outcomes = Counter(record["outcome"] for record in records)
    return {
        "chunk": chunk,
        "delivered": outcomes[report.DELIVERED],
        "failed": outcomes[report.FAILED],
        "unconfirmed": outcomes[report.UNCONFIRMED],
        "rejected": outcomes[report.REJECTED],
    }


def write_tracked(layout: RunLayout, chunk: int, records: Iterable[MessageRecord]) -> None:
    with open_atomic(layout.tracked(chunk)) as out:
        for record in records:
            out.write(_jsonl(record))


def track_poke(
    sent: SendCounts,
    params: Mapping[str, Any],
    settings: BatchSettings,
    layout: RunLayout,
    *,
    now: datetime | None = None,
    connection: TwilioConnection | None = None,
) -> tuple[bool, TrackCounts | None]:
    """One poke of a chunk's tracking: ``(done, xcom_value)``. State lives in ``tracking/`` in storage.

    No fetch before ``first_fetch_after`` has passed since sending; after ``status_timeout`` the chunk is
    done and messages still in flight are unconfirmed.
    """
    chunk = sent["chunk"]
    now = now or datetime.now(UTC)
    age = (now - datetime.fromisoformat(sent["sent_at"])).total_seconds()
    results = _load_results(layout, chunk)
    if results is None:
        raise _missing(layout.results(chunk), f"send_chunk of chunk {chunk}")
    records = results["records"]
    store = StorageStore(layout.tracking(chunk))
    if not any(record.get("sid") for record in records):
        final = [report.final_record(record) for record in records]
        write_tracked(layout, chunk, final)
        return True, _track_counts(chunk, final)
    if age < settings.first_fetch_after:
        log.info(
            "Chunk %s was sent %.0f s ago; first status fetch after %.0f s",
            chunk,
            age,
            settings.first_fetch_after,
        )
        return False, None
    final_poke = age >= settings.status_timeout
    connection = connection or TwilioHook().connection_settings()
    concurrency = concurrency_from_params(params, settings)

    window = ListWindow.of(
        sender_from_params(params, settings).from_, results.get("created_first"), results.get("created_last")
    )

    async def run() -> Any:
        client, _ = throttled_client(connection, concurrency, account_sid=params.get("accountSid") or None)
        async with client:
            return await poll_chunk(
                client, records, store, concurrency=concurrency, final=final_poke, window=window
            )

    result = asyncio.run(run())
    log.info(
        "Chunk %s: %d statuses from %d list pages (%d messages listed), %d fetched by SID, %d still in "
        "flight%s",
        chunk,
        result.from_list,
        result.pages,
        result.listed,
        result.fetched,
        result.pending,
        " (status timeout reached: reported as unconfirmed)" if final_poke and result.pending else "",
    )
    if not result.done:
        return False, None
    write_tracked(layout, chunk, result.records)
    store.clear()
    return True, _track_counts(chunk, result.records)


def chunk_records(layout: RunLayout, chunk: int) -> list[MessageRecord]:
    """A chunk's best-known records, in row order: tracked, else sent plus any stored statuses (rows the
    send did not record are unknown), else all unknown (the send task failed before it started)."""
    tracked = layout.tracked(chunk)
    if tracked.exists():
        return list(ledger.iter_jsonl(tracked))  # type: ignore[arg-type]
    results = _load_results(layout, chunk)
    manifest = list(ledger.iter_jsonl(layout.manifest(chunk)))
    reason = f"the send task of chunk {chunk} failed; see its log"
    if results is None:
        return [report.unknown_record(row["row"], row["to"], reason) for row in manifest]
    store = StorageStore(layout.tracking(chunk))
    known = apply_known(results["records"], store.load())
    store.clear()  # what tracking left behind
    out = {record["row"]: report.final_record(record) for record in known}
    for row in manifest:
        if row["row"] not in out:
            out[row["row"]] = report.unknown_record(row["row"], row["to"], reason)
    return [out[number] for number in sorted(out)]


def summarise(layout: RunLayout, params: Mapping[str, Any]) -> dict[str, Any]:
    """Stream every chunk's records and the skipped rows, in row order, into the report and the counts;
    write ``summary.json`` and return the summary (the summary task's XCom)."""
    batch = read_json(layout.batch)
    if not isinstance(batch, dict):
        raise FileNotFoundError(f"{layout.batch} is missing: prepare did not finish for this run")
    fmt = params.get("report_format") or "csv"
    messages = chain.from_iterable(chunk_records(layout, chunk) for chunk in range(int(batch["chunks"])))
    skipped = (report.skipped_record(row) for row in ledger.iter_jsonl(layout.skipped))
    builder = report.SummaryBuilder()
    target = layout.report(fmt)
    with open_atomic(target) as handle:
        writer = report.ReportWriter(handle, fmt)
        for record in heapq.merge(messages, skipped, key=lambda record: record["row"]):
            writer.add(record)
            builder.add(record)
        writer.close()
    shown_path = target.path if is_local(target) else str(target)
    summary = builder.summary(shown_path, str(target))
    summary.update(
        {
            "dedupe_key": batch["dedupe_key"],
            "already_sent": summary["by_outcome"].get(ALREADY_SENT, 0),
            "allow_resend": batch.get("allow_resend", False),
            "chunks": batch["chunks"],
            "chunk_size": batch["chunk_size"],
            "storage": str(layout.folder),
            "failure_threshold": params.get("failure_threshold"),
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
        {k: v for k, v in summary["by_outcome"].items() if k not in report.SENT_OUTCOMES},
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

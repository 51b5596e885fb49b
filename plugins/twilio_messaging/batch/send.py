"""Sending one chunk: every row through the duplicate-safe ``AsyncTwilioClient.create_message``.

``concurrency`` workers share one client (one connection pool) and one ``AdaptiveLimiter``. What happens to
a row:

- created: its SID and first status are recorded;
- Twilio refuses it (4xx such as 21211 or 21610): recorded as ``rejected`` with the code, never retried;
- the client's retry budget runs out (429 storm, Twilio unreachable): the row waits and goes again, and
  every later attempt first looks for a message an earlier attempt may have created (``sent_since``);
  after ``give_up_after`` seconds ``ChunkIncomplete`` is raised so that the task's retry picks the chunk
  up, again looking before sending. A row is never dropped and never sent twice;
- an account-wide error (401 bad credentials, 403, 404 wrong account): the chunk stops at once.

``results`` is filled in place as rows finish, so the caller can checkpoint it to storage while the chunk
sends; rows already in it (an earlier try's) are not sent again. With ``pace`` each row waits for its slot
at the sender's rate (``throughput.not_before``).

``send_chunk`` is the DAG's send_chunk task: one chunk from its manifest, as the batch's plan says.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from twilio_messaging.batch.layout import RunLayout
from twilio_messaging.batch.plan import Sender, load_results, read_manifest, read_plan
from twilio_messaging.batch.records import (
    ChunkRef,
    ChunkResults,
    ManifestRow,
    MessageRecord,
    SendCounts,
    message_record,
)
from twilio_messaging.batch.sweep import CreatedSpan
from twilio_messaging.batch.throttle import run_workers, throttled_client
from twilio_messaging.batch.throughput import not_before
from twilio_messaging.client import AsyncTwilioClient
from twilio_messaging.connection import TwilioConnection
from twilio_messaging.contract import REJECTED
from twilio_messaging.errors import ACCOUNT_WIDE_ON_CREATE, TwilioAPIError, TwilioUnreachableError
from twilio_messaging.hooks.twilio import TwilioHook
from twilio_messaging.retry import RetryPolicy
from twilio_messaging.settings import BatchSettings
from twilio_messaging.storage import write_json_atomic

log = logging.getLogger(__name__)

CHECKPOINT_EVERY = 1.0  # seconds between checkpoints of a sending chunk's results

DEFAULT_GIVE_UP_AFTER = 900.0
_ROW_BACKOFF = RetryPolicy(max_attempts=10_000, base_delay=1.0, max_delay=30.0, max_elapsed=float("inf"))


class ChunkIncomplete(RuntimeError):
    """Some rows could not be sent before the deadline; a retry of the task resumes them safely."""


@dataclass(frozen=True)
class Pace:
    """Send no faster than ``mps`` segments/s from ``anchor`` (epoch seconds shared by every chunk task)."""

    anchor: float
    mps: float
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    async def wait(self, row: ManifestRow) -> None:
        delay = not_before(self.anchor, row.get("offset", 0), self.mps) - self.clock()
        if delay > 0:
            await self.sleep(delay)


def _earliest(*values: datetime | None) -> datetime | None:
    present = [value for value in values if value is not None]
    return min(present) if present else None


async def send_rows(
    client: AsyncTwilioClient,
    rows: Sequence[ManifestRow],
    sender: Sender,
    *,
    concurrency: int,
    sent_since: datetime | None = None,
    give_up_after: float = DEFAULT_GIVE_UP_AFTER,
    results: dict[int, MessageRecord] | None = None,
    pace: Pace | None = None,
    span: CreatedSpan | None = None,
) -> list[MessageRecord]:
    """Send ``rows``; returns one ``message_record`` per row, in row order.

    ``sent_since`` is set on a retry of the task: every row not in ``results`` is then looked up before it
    is sent (as is a row whose manifest carries its own ``since``). ``span`` collects the messages'
    creation times (where tracking finds them in Twilio's list).
    """
    results = {} if results is None else results
    queue: asyncio.Queue[ManifestRow] = asyncio.Queue()
    for row in rows:
        if row["row"] not in results:
            queue.put_nowait(row)
    unsent: list[tuple[int, str]] = []
    last_unreachable: list[str] = []  # why Twilio could not be reached, for the failure message
    deadline = time.monotonic() + give_up_after

    async def send_one(row: ManifestRow) -> None:
        number, to = row["row"], row["to"]
        request = sender.prepared_request(row)
        since = _earliest(sent_since, datetime.fromisoformat(row["since"]) if "since" in row else None)
        retry = 0
        if pace is not None:
            await pace.wait(row)
        while True:
            started = datetime.now(UTC)
            try:
                message = await client.create_message(request, sent_since=since)
            except TwilioAPIError as exc:
                if exc.status_code in ACCOUNT_WIDE_ON_CREATE:
                    raise
                results[number] = message_record(number, to, None, None, exc.code, exc.message)
                return
            except TwilioUnreachableError as exc:
                retry += 1
                # This attempt (or an earlier one) may have created the message: look before any resend.
                since = since or started
                delay = _ROW_BACKOFF.backoff(retry)
                if time.monotonic() + delay > deadline:
                    last_unreachable[:] = [str(exc)]
                    log.error("Row %s (%s) not sent before the chunk deadline: %s", number, to, exc)
                    unsent.append((number, to))
                    return
                log.warning("Row %s (%s): %s; trying again in %.1f s", number, to, exc, delay)
                await asyncio.sleep(delay)
                continue
            if span is not None:
                span.add(message)
            results[number] = message_record(
                number,
                to,
                message.get("sid"),
                message.get("status"),
                message.get("error_code"),
                message.get("error_message"),
            )
            return

    async def worker() -> None:
        while True:
            try:
                row = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            await send_one(row)

    if not queue.empty():
        await run_workers(worker, min(concurrency, queue.qsize()))
    if unsent:
        shown = ", ".join(f"row {number} ({to})" for number, to in unsent[:10])
        raise ChunkIncomplete(
            f"{len(unsent)} of {len(rows)} messages could not be sent before the deadline ({shown}"
            f"{', ...' if len(unsent) > 10 else ''}); a retry of this task looks them up before sending"
            + (f". Twilio was unreachable: {last_unreachable[0]}" if last_unreachable else "")
        )
    return [results[row["row"]] for row in rows]


# ---- the send_chunk task -------------------------------------------------------------------------------


def send_chunk(
    chunk: ChunkRef,
    settings: BatchSettings,
    layout: RunLayout,
    *,
    connection: TwilioConnection | None = None,
) -> SendCounts:
    """Send one chunk from its manifest, as the plan says; results are checkpointed to storage while it
    sends.

    A row an earlier try recorded is not sent again; the others are looked up before sending when an
    earlier try may have sent them (its results exist, so it had started).
    """
    plan = read_plan(layout)
    connection = connection or TwilioHook(plan.conn_id).connection_settings()
    rows = read_manifest(layout, chunk, plan)
    prior = load_results(layout, chunk)
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
    pace = (
        Pace(anchor=datetime.fromisoformat(plan.prepared_at).timestamp(), mps=plan.sender_mps)
        if plan.pace and plan.sender_mps
        else None
    )

    async def run() -> tuple[list[MessageRecord], Any]:
        client, transport = throttled_client(connection, plan.concurrency, account_sid=plan.account_sid)

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
                    plan.sender,
                    concurrency=plan.concurrency,
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
    rejected = sum(1 for record in records if record["outcome"] == REJECTED)
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
        plan.concurrency,
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

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
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from twilio_messaging.batch.prepare import Sender
from twilio_messaging.batch.records import ManifestRow, MessageRecord
from twilio_messaging.batch.report import message_record
from twilio_messaging.batch.sweep import CreatedSpan
from twilio_messaging.batch.throttle import run_workers
from twilio_messaging.batch.throughput import not_before
from twilio_messaging.client import AsyncTwilioClient
from twilio_messaging.errors import ACCOUNT_WIDE_ON_CREATE, TwilioAPIError, TwilioUnreachableError
from twilio_messaging.retry import RetryPolicy

log = logging.getLogger(__name__)

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

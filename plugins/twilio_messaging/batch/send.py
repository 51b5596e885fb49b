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
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from twilio_messaging.batch.prepare import Sender
from twilio_messaging.batch.report import message_record
from twilio_messaging.batch.throttle import run_workers
from twilio_messaging.client import AsyncTwilioClient
from twilio_messaging.errors import TwilioAPIError, TwilioUnreachableError
from twilio_messaging.retry import RetryPolicy

log = logging.getLogger(__name__)

# HTTP statuses that say "this account/connection cannot send", not "this row is wrong".
ACCOUNT_WIDE_STATUSES = frozenset({401, 403, 404})
DEFAULT_GIVE_UP_AFTER = 900.0
_ROW_BACKOFF = RetryPolicy(max_attempts=10_000, base_delay=1.0, max_delay=30.0, max_elapsed=float("inf"))


class ChunkIncomplete(RuntimeError):
    """Some rows could not be sent before the deadline; a retry of the task resumes them safely."""


async def send_rows(
    client: AsyncTwilioClient,
    rows: Sequence[Sequence[Any]],
    sender: Sender,
    *,
    concurrency: int,
    sent_since: datetime | None = None,
    give_up_after: float = DEFAULT_GIVE_UP_AFTER,
) -> list[dict[str, Any]]:
    """Send ``rows`` (``[row_number, to, body]``); returns one ``message_record`` per row, in row order.

    ``sent_since`` is set on a retry of the task: every row is then looked up before it is sent.
    """
    queue: asyncio.Queue[Sequence[Any]] = asyncio.Queue()
    for row in rows:
        queue.put_nowait(row)
    results: dict[int, dict[str, Any]] = {}
    unsent: list[tuple[int, str]] = []
    last_unreachable: list[str] = []  # why Twilio could not be reached, for the failure message
    deadline = time.monotonic() + give_up_after

    async def send_one(number: int, to: str, body: str) -> None:
        request = sender.request(to, body)
        since = sent_since
        retry = 0
        while True:
            started = datetime.now(UTC)
            try:
                message = await client.create_message(request, sent_since=since)
            except TwilioAPIError as exc:
                if exc.status_code in ACCOUNT_WIDE_STATUSES:
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
                number, to, body = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            await send_one(number, to, body)

    await run_workers(worker, min(concurrency, len(rows)))
    if unsent:
        shown = ", ".join(f"row {number} ({to})" for number, to in unsent[:10])
        raise ChunkIncomplete(
            f"{len(unsent)} of {len(rows)} messages could not be sent before the deadline ({shown}"
            f"{', ...' if len(unsent) > 10 else ''}); a retry of this task looks them up before sending"
            + (f". Twilio was unreachable: {last_unreachable[0]}" if last_unreachable else "")
        )
    return [results[number] for number, _, _ in rows]

"""Reading a chunk's statuses from Twilio's message list, up to 1,000 messages per request.

Fetching each message costs one request per message per poke: 1,000,000 requests for a 1,000,000-message
batch, which at Twilio's rate limits is hours of polling. A chunk's messages were created in one short
window by one sender, and Twilio lists messages newest first with ``From`` and ``DateSent`` filters, so
one page of the list answers for up to 1,000 of them. A poke that has many messages in flight lists the
chunk's window (``ListWindow``) and fetches one by one only what the list did not show.

The list is an optimisation, never the source of truth for completeness:

- a message that is not on the list (sent later than the window, the filter coarser than asked, the list
  refused or unreachable) is fetched by SID, as before;
- listing stops when it has shown every message it looks for, when its pages are older than the chunk's
  first message, or when it has shown ``WASTE_LIMIT`` times more other messages than the chunk's (a
  sender shared with other traffic, or a Twilio that filters ``DateSent`` by day only): a poke never
  costs much more than fetching would.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from twilio_messaging import forms
from twilio_messaging.client import AsyncTwilioClient
from twilio_messaging.errors import ACCOUNT_WIDE_STATUSES, TwilioAPIError, TwilioUnreachableError

log = logging.getLogger(__name__)

PAGE_SIZE = 1000  # Twilio's largest page
# A message leaves Twilio (DateSent) moments after it was created unless its sender's queue holds it; one
# that leaves later than this is simply fetched by SID.
SENT_MARGIN = timedelta(seconds=5)
# Listing is given up once it showed this many other messages per message it looks for.
WASTE_LIMIT = 3
# A page (up to 1,000 messages, one request after another) pays off when it replaces this many fetches.
PENDING_PER_PAGE = 100


def _twilio_time(value: datetime) -> str:
    """The datetime form twilio-python sends for DateSent filters (GMT, whole seconds)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class CreatedSpan:
    """The first and last ``date_created`` (Twilio's clock, whole seconds) of a chunk's messages."""

    first: datetime | None = None
    last: datetime | None = None

    def add(self, message: dict[str, Any]) -> None:
        self._widen(forms.parse_twilio_date(message.get("date_created")))

    def merge(self, first: str | None, last: str | None) -> None:
        """Widen by a span stored as ISO strings (an earlier try's)."""
        for value in (first, last):
            if value:
                self._widen(datetime.fromisoformat(value))

    def _widen(self, created: datetime | None) -> None:
        if created is None:
            return
        self.first = created if self.first is None else min(self.first, created)
        self.last = created if self.last is None else max(self.last, created)

    def stored(self) -> tuple[str | None, str | None]:
        return (
            self.first.isoformat() if self.first else None,
            self.last.isoformat() if self.last else None,
        )


@dataclass(frozen=True)
class ListWindow:
    """Where a chunk's messages sit in the list: their sender and when they were created."""

    from_: str | None  # None with a Messaging Service: the list cannot be narrowed to the service
    first: datetime
    last: datetime

    @classmethod
    def of(cls, from_: str | None, first: str | None, last: str | None) -> ListWindow | None:
        """The window of a chunk whose creation span was recorded; None when it was not."""
        span = CreatedSpan()
        span.merge(first, last)
        if span.first is None or span.last is None:
            return None
        return cls(from_, span.first, span.last)

    def query(self) -> list[tuple[str, str]]:
        query = [("From", self.from_)] if self.from_ else []
        query += [
            ("DateSent>", _twilio_time(self.first)),
            ("DateSent<", _twilio_time(self.last + SENT_MARGIN)),
            ("PageSize", str(PAGE_SIZE)),
        ]
        return query


def worth_listing(pending: int, tracked: int) -> bool:
    """Whether listing the window (about ``tracked`` messages) is cheaper than fetching ``pending``."""
    return pending > PENDING_PER_PAGE * max(1, math.ceil(tracked / PAGE_SIZE))


@dataclass
class SweepResult:
    pages: int = 0
    listed: int = 0
    found: int = 0
    gave_up: str | None = None  # why listing stopped before it had shown every message
    missing: list[str] = field(default_factory=list)


async def sweep(
    client: AsyncTwilioClient, window: ListWindow, pending: Collection[str], found: dict[str, list[Any]]
) -> SweepResult:
    """List ``window`` and put the status facts of the ``pending`` SIDs it shows into ``found``; the
    result's ``missing`` are the SIDs to fetch one by one."""
    wanted = set(pending)
    result = SweepResult()
    limit = WASTE_LIMIT * len(wanted) + PAGE_SIZE

    def take(page: list[dict[str, Any]]) -> bool:
        result.pages += 1
        result.listed += len(page)
        for message in page:
            sid = message.get("sid")
            if sid in wanted and sid not in found:
                found[sid] = [message.get("status"), message.get("error_code"), message.get("error_message")]
                result.found += 1
        if result.found == len(wanted) or forms.page_is_older_than(page, window.first):
            return True
        if result.listed >= limit:
            result.gave_up = (
                f"the list showed {result.listed:,} messages for {result.found:,} of this chunk's "
                f"{len(wanted):,} (a sender shared with other traffic, or DateSent filtered by day)"
            )
            return True
        return False

    try:
        await client.list_pages(window.query(), stop=take)
    except TwilioUnreachableError as exc:
        result.gave_up = f"Twilio could not be reached for the list: {exc}"
    except TwilioAPIError as exc:
        if exc.status_code in ACCOUNT_WIDE_STATUSES:
            raise
        result.gave_up = f"Twilio refused the list: {exc}"
    result.missing = [sid for sid in pending if sid not in found]
    if result.gave_up:
        log.warning(
            "Listing stopped: %s; fetching the %d others one by one", result.gave_up, len(result.missing)
        )
    return result

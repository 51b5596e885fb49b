"""listMessage: the To/From/DateSent filters and Twilio's paging (PageSize, Page, PageToken, *_page_uri)."""

from __future__ import annotations

import math
import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from email.utils import parsedate_to_datetime
from itertools import islice
from typing import Any

from sandbox import API_VERSION
from sandbox.errors import TwilioError, invalid_parameter
from sandbox.resources import SERVICE_SENDER, query_string
from sandbox.store import AccountMessages, MessageRecord

FILTER_KEYS = ("To", "From", "DateSent", "DateSent<", "DateSent>")
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
# At most 19 digits, so int() never meets its 4,300-digit limit; past the end of the store a page is empty.
ASCII_INTEGER = re.compile(r"[0-9]{1,19}")


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Bound:
    """A DateSent filter value: a GMT day, or an instant (epoch seconds) with its GMT day."""

    day: date
    epoch: float | None = None  # None for a plain date


def _bound(parsed: datetime) -> Bound:
    """Normalized without datetime arithmetic that can leave years 1-9999 (0001-01-01T00:00+05:00 would)."""
    epoch = (parsed - EPOCH).total_seconds()
    try:
        day = parsed.astimezone(UTC).date()
    except OverflowError:
        day = date.min if parsed.year == date.min.year else date.max
    return Bound(day, epoch)


def parse_date(name: str, value: str) -> Bound:
    """A date (``2024-01-05``) or an aware datetime (ISO 8601 as twilio-python sends it, or RFC 2822)."""
    text = value.strip()
    if len(text) == 10:
        try:
            return Bound(date.fromisoformat(text))
        except ValueError:
            pass
    for parse in (datetime.fromisoformat, parsedate_to_datetime):
        try:
            parsed = parse(text)
        except (ValueError, TypeError, OverflowError, IndexError):
            continue
        return _bound(parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed)
    raise invalid_parameter(
        f"{name} must be a date (YYYY-MM-DD) or a date-time (ISO 8601 or RFC 2822): {value!r}"
    )


def _integer(values: dict[str, str], name: str, default: int) -> int:
    """A non-negative integer written in ASCII digits only: int() would also take " 7 ", "1_0" and "٧"."""
    raw = values.get(name) or ""
    if raw == "":
        return default
    if not ASCII_INTEGER.fullmatch(raw):
        raise invalid_parameter(
            f"{name} must be a non-negative integer of at most 19 ASCII digits, not {raw[:40]!r}"
        )
    return int(raw)


@dataclass(frozen=True)
class ListQuery:
    filters: list[tuple[str, str]]
    page_size: int
    page: int
    page_token: str | None
    dates: dict[str, Bound]

    @classmethod
    def parse(cls, params: list[tuple[str, str]]) -> ListQuery:
        values = dict(params)
        filters = [(k, values[k]) for k in FILTER_KEYS if values.get(k)]
        page_size = _integer(values, "PageSize", DEFAULT_PAGE_SIZE)
        page = _integer(values, "Page", 0)
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise invalid_parameter(f"PageSize must be between 1 and {MAX_PAGE_SIZE}")

        dates = {k: parse_date(k, v) for k, v in filters if k.startswith("DateSent")}
        return cls(filters, page_size, page, values.get("PageToken") or None, dates)


def _sent_epoch(record: MessageRecord) -> int:
    # A message not yet sent is matched by its creation time, so that a duplicate check right after a lost
    # response (the message still queued) finds it. Second precision, as the rendered dates.
    offset = record.sent_offset(record.elapsed())
    return int(record.created_wall + (offset if offset is not None else 0.0))


def _matches(record: MessageRecord, query: ListQuery) -> bool:
    for key, value in query.filters:
        if key == "To" and record.to != value:
            return False
        if key == "From" and (record.from_ or SERVICE_SENDER) != value:
            return False
    if not query.dates:
        return True
    sent = _sent_epoch(record)
    sent_day = datetime.fromtimestamp(sent, UTC).date()
    for key, bound in query.dates.items():
        if key == "DateSent":
            if sent_day != bound.day:
                return False
        elif key == "DateSent<":
            if (sent > bound.epoch) if bound.epoch is not None else (sent_day > bound.day):
                return False
        elif key == "DateSent>" and (
            (sent < int(bound.epoch)) if bound.epoch is not None else (sent_day < bound.day)
        ):
            return False
    return True


def _day_epochs(day: date) -> tuple[float, float]:
    """The first and the last second of a GMT day, as epoch seconds (unbounded at the calendar's ends)."""
    start = -math.inf if day == date.min else (datetime.combine(day, time.min, UTC) - EPOCH).total_seconds()
    end = math.inf if day == date.max else start + 86_400
    return start, end


def candidate_range(index: AccountMessages, query: ListQuery) -> tuple[int, int]:
    """Positions ``[lo, hi)`` of the account's messages that a DateSent filter can match.

    A message counts as sent no earlier than its creation and at most ``max_lag`` seconds after it, and the
    messages are in creation order, so two bisections bound the scan: a list of one batch's window costs
    that window, not the whole store.
    """
    lo, hi = 0, len(index.records)
    if not index.ordered:
        return lo, hi
    for key, bound in query.dates.items():
        start, end = _day_epochs(bound.day)
        if key == "DateSent<" and bound.epoch is not None:
            end = bound.epoch
        if key == "DateSent>" and bound.epoch is not None:
            start = bound.epoch
        if key in ("DateSent", "DateSent<"):
            hi = min(hi, bisect_right(index.created, end + 1))
        if key in ("DateSent", "DateSent>"):
            lo = max(lo, bisect_left(index.created, start - index.max_lag - 1))
    return lo, max(lo, hi)


def select_page(index: AccountMessages, query: ListQuery) -> tuple[list[MessageRecord], bool]:
    """The page's records (newest first) and whether more follow."""
    lo, hi = candidate_range(index, query)
    records = index.records

    def newest_first(start: int) -> Iterator[MessageRecord]:
        return (records[i] for i in range(start, lo - 1, -1) if _matches(records[i], query))

    size = query.page_size
    token = query.page_token
    if token and token[:2] not in ("PA", "PB"):
        raise TwilioError(400, 20001, f"Invalid PageToken: {token}")
    anchor = index.positions.get(token[2:]) if token else None
    if anchor is not None and not (lo <= anchor < hi and _matches(records[anchor], query)):
        anchor = None  # not a message of this listing: page by number, as without a token
    if anchor is not None and token and token.startswith("PB"):
        # PB<sid>: the page before that message (previous_page_uri), i.e. the next newer matches.
        newer = (records[i] for i in range(anchor + 1, hi) if _matches(records[i], query))
        return list(islice(newer, size))[::-1], True
    if anchor is not None:
        # PA<sid>: the page after that message.
        matches = newest_first(anchor - 1)
    elif query.page * size >= hi - lo:
        return [], False  # past the end (and islice refuses a start above sys.maxsize)
    else:
        matches = islice(newest_first(hi - 1), query.page * size, None)
    page = list(islice(matches, size + 1))
    return page[:size], len(page) > size


def render_page(
    account_sid: str, query: ListQuery, page: list[dict[str, Any]], has_more: bool
) -> dict[str, Any]:
    base = f"/{API_VERSION}/Accounts/{account_sid}/Messages.json"

    def uri(page_number: int, token: str | None) -> str:
        pairs = [*query.filters, ("PageSize", str(query.page_size)), ("Page", str(page_number))]
        if token:
            pairs.append(("PageToken", token))
        return f"{base}?{query_string(pairs)}"

    start = query.page * query.page_size
    return {
        "messages": page,
        "end": start + max(len(page) - 1, 0),
        "first_page_uri": uri(0, None),
        "next_page_uri": uri(query.page + 1, "PA" + page[-1]["sid"]) if has_more and page else None,
        "page": query.page,
        "page_size": query.page_size,
        "previous_page_uri": uri(query.page - 1, "PB" + page[0]["sid"]) if query.page > 0 and page else None,
        "start": start,
        "uri": uri(query.page, query.page_token),
    }

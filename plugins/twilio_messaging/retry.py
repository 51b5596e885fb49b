"""Pure retry decisions: what a reply means for a resend, and how long to wait before the next attempt."""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx


class Verdict(enum.Enum):
    DONE = "done"  # 2xx
    RETRY = "retry"  # Twilio did not process the request: sending it again is safe
    AMBIGUOUS = "ambiguous"  # the request may have been processed: look before sending a create again
    FINAL = "final"  # Twilio refused the request; the same request gets the same answer


# The replies that say "ask again later": Twilio's 429 and the 5xx of an overloaded or restarting API or
# gateway. The one rule for both callers: a status poll keeps polling on these and fails on any other
# error; a client call retries them (a 429 was never processed; after one of these 5xx a create may have
# been). Other 5xx (501 Not Implemented, 505 HTTP Version Not Supported, ...) say the request itself cannot
# be served, so asking again gets the same answer.
TRANSIENT_STATUS_CODES: frozenset[int] = frozenset({429, 500, 502, 503, 504})
NEVER_PROCESSED_STATUS_CODES: frozenset[int] = frozenset({429})  # Twilio documents 429 as "never processed"


def classify_status(status_code: int) -> Verdict:
    """Map an HTTP status to a verdict, by ``TRANSIENT_STATUS_CODES``."""
    if 200 <= status_code < 300:
        return Verdict.DONE
    if status_code in NEVER_PROCESSED_STATUS_CODES:
        return Verdict.RETRY
    if status_code in TRANSIENT_STATUS_CODES:
        return Verdict.AMBIGUOUS
    return Verdict.FINAL


# Raised before a single byte of the request left the machine.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.ProxyError)
# Raised after the request (or part of it) may have reached Twilio.
_MAYBE_SENT = (
    httpx.ReadTimeout,
    httpx.WriteTimeout,
    httpx.ReadError,
    httpx.WriteError,
    httpx.RemoteProtocolError,
)


def classify_exception(exc: BaseException) -> Verdict:
    """Map a transport exception to a verdict; unknown transport errors are treated as maybe-sent."""
    if isinstance(exc, _NOT_SENT):
        return Verdict.RETRY
    if isinstance(exc, _MAYBE_SENT):
        return Verdict.AMBIGUOUS
    if isinstance(exc, httpx.TransportError) and not isinstance(
        exc, httpx.UnsupportedProtocol | httpx.LocalProtocolError
    ):
        return Verdict.AMBIGUOUS
    return Verdict.FINAL


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date); None if absent or unusable."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


@dataclass(frozen=True)
class RetryPolicy:
    """The retry budget of one client call: attempts and elapsed time, whichever runs out first."""

    max_attempts: int = 6
    base_delay: float = 1.0
    max_delay: float = 30.0
    max_elapsed: float = 120.0

    def backoff(self, retry_number: int, rng: random.Random | None = None) -> float:
        """Exponential backoff with "equal jitter": half fixed, half random, capped at ``max_delay``."""
        ceiling = min(self.max_delay, self.base_delay * 2 ** max(0, retry_number - 1))
        return ceiling / 2 + (rng or random).uniform(0, ceiling / 2)

    def next_delay(
        self,
        attempts: int,
        elapsed: float,
        retry_after: float | None = None,
        rng: random.Random | None = None,
    ) -> float | None:
        """Seconds to wait before attempt ``attempts + 1``, or None when the budget is spent."""
        if attempts >= self.max_attempts:
            return None
        delay = retry_after if retry_after is not None else self.backoff(attempts, rng)
        if elapsed + delay > self.max_elapsed:
            return None
        return delay


# One attempt only: for a last look that must not hold up the failure it explains.
NO_RETRY = RetryPolicy(max_attempts=1)

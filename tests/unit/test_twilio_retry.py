"""Pure retry rules: verdicts per reply, Retry-After parsing, backoff and the budget."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import httpx
import pytest

from twilio_messaging.retry import (
    TRANSIENT_STATUS_CODES,
    RetryPolicy,
    Verdict,
    classify_exception,
    classify_status,
    parse_retry_after,
)


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (200, Verdict.DONE),
        (201, Verdict.DONE),
        (429, Verdict.RETRY),
        (500, Verdict.AMBIGUOUS),
        (502, Verdict.AMBIGUOUS),
        (503, Verdict.AMBIGUOUS),
        (504, Verdict.AMBIGUOUS),
        (501, Verdict.FINAL),
        (505, Verdict.FINAL),
        (400, Verdict.FINAL),
        (401, Verdict.FINAL),
        (404, Verdict.FINAL),
        (409, Verdict.FINAL),
    ],
)
def test_classify_status(status, verdict):
    assert classify_status(status) is verdict


def test_transient_codes_are_exactly_what_the_client_retries():
    # One rule for the status sensor's allowlist and the client's retries.
    retried = {
        code for code in range(100, 600) if classify_status(code) in (Verdict.RETRY, Verdict.AMBIGUOUS)
    }
    assert retried == TRANSIENT_STATUS_CODES


@pytest.mark.parametrize(
    ("exc", "verdict"),
    [
        (httpx.ConnectError("refused"), Verdict.RETRY),
        (httpx.ConnectTimeout("slow"), Verdict.RETRY),
        (httpx.PoolTimeout("pool"), Verdict.RETRY),
        (httpx.ReadTimeout("slow"), Verdict.AMBIGUOUS),
        (httpx.WriteTimeout("slow"), Verdict.AMBIGUOUS),
        (httpx.ReadError("reset"), Verdict.AMBIGUOUS),
        (httpx.RemoteProtocolError("dropped"), Verdict.AMBIGUOUS),
        (httpx.UnsupportedProtocol("ftp"), Verdict.FINAL),
        (ValueError("bug"), Verdict.FINAL),
    ],
)
def test_classify_exception(exc, verdict):
    assert classify_exception(exc) is verdict


def test_parse_retry_after():
    now = datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 2.5 ") == 2.5
    assert parse_retry_after("Fri, 27 Nov 2026 12:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("Fri, 27 Nov 2026 11:00:00 GMT", now=now) == 0.0
    assert parse_retry_after(None) is None and parse_retry_after("") is None
    assert parse_retry_after("soon") is None and parse_retry_after("nan") is None
    assert parse_retry_after("-3") == 0.0


def test_backoff_grows_with_jitter_and_is_capped():
    policy = RetryPolicy(base_delay=1.0, max_delay=8.0)
    rng = random.Random(1)
    for retry, ceiling in [(1, 1), (2, 2), (3, 4), (4, 8), (5, 8), (10, 8)]:
        delays = {policy.backoff(retry, rng) for _ in range(50)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(delays) > 1  # jittered


def test_next_delay_respects_attempts_and_elapsed_budget():
    policy = RetryPolicy(max_attempts=3, max_elapsed=10.0)
    assert policy.next_delay(1, elapsed=0.0, retry_after=2.0) == 2.0
    assert policy.next_delay(3, elapsed=0.0) is None  # attempts spent
    assert policy.next_delay(1, elapsed=9.0, retry_after=2.0) is None  # would overrun the time budget
    assert policy.next_delay(1, elapsed=0.0, retry_after=0.0) == 0.0

"""Sending and tracking chunks over real HTTP against the sandbox process (no Airflow)."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime

import pytest

from tests.batch.inmemory import MemoryStore
from twilio_messaging.batch.plan import Sender
from twilio_messaging.batch.records import ACCEPTED, ManifestRow
from twilio_messaging.batch.send import send_rows
from twilio_messaging.batch.throttle import AdaptiveLimiter, throttled_client
from twilio_messaging.batch.track import poll_chunk
from twilio_messaging.connection import TwilioConnection
from twilio_messaging.contract import DELIVERED, FAILED, REJECTED, UNCONFIRMED
from twilio_messaging.errors import TwilioAPIError
from twilio_messaging.retry import RetryPolicy

SENDER = Sender(from_="+15005550006")
FAST_RETRIES = RetryPolicy(max_attempts=4, base_delay=0.05, max_delay=0.2, max_elapsed=5.0)


def connection(sb, secret: str | None = None) -> TwilioConnection:
    return TwilioConnection(base_url=sb.base_url, username=sb.account_sid, secret=secret or sb.auth_token)


def row(number: int, to: str, body: str) -> ManifestRow:
    return {"row": number, "to": to, "body": body}


def rows(n: int, start: int = 0, suffix: str = "") -> list[ManifestRow]:
    return [row(i + 1, f"+1555{start + i:05d}{suffix or '01'}", f"batch test {i}") for i in range(n)]


def send(sb, rows_, concurrency=8, **kwargs):
    async def run():
        client, transport = throttled_client(connection(sb), concurrency, retry_policy=FAST_RETRIES)
        async with client:
            return await send_rows(client, rows_, SENDER, concurrency=concurrency, **kwargs), transport

    return asyncio.run(run())


def poll(sb, records, store, final=False):
    async def run():
        client, _ = throttled_client(connection(sb), 8)
        async with client:
            return await poll_chunk(client, records, store, concurrency=8, final=final)

    return asyncio.run(run())


def test_every_row_once_and_rejections_recorded(clean_sandbox):
    batch = [*rows(30), row(31, "+15005550001", "magic invalid To"), row(32, "+15005550004", "magic blocked")]
    records, transport = send(clean_sandbox, batch)
    assert [r["row"] for r in records] == list(range(1, 33))
    stored = clean_sandbox.messages()
    assert Counter(m["to"] for m in stored) == Counter(r["to"] for r in batch[:30])
    # Right after sending, a message Twilio accepted is "accepted" with its real status, not "unconfirmed".
    assert {(r["outcome"], r["status"]) for r in records[:30]} == {(ACCEPTED, "queued")}
    assert {r["sid"] for r in records[:30]} == {m["sid"] for m in stored}
    assert [(r["outcome"], r["error_code"]) for r in records[30:]] == [(REJECTED, 21211), (REJECTED, 21610)]
    assert "opted out" in records[31]["error_meaning"]
    assert clean_sandbox.stats()["requests"]["create"] == 32  # a 4xx is final, never retried
    assert transport.calls["create"] == 32


def test_429_storm_slows_down_and_loses_nothing(clean_sandbox):
    clean_sandbox.set_faults(rate_429=0.3, seed=7)
    batch = rows(120)
    records, transport = send(clean_sandbox, batch, concurrency=10)
    stored = clean_sandbox.messages()
    assert Counter(m["to"] for m in stored) == Counter(r["to"] for r in batch)  # all of them, each once
    assert all(r["sid"] for r in records)
    assert clean_sandbox.stats()["faults"]["429"] > 0
    assert transport.limiter.stats.throttled > 0
    assert transport.limiter.stats.lowest_limit < 10


def test_concurrency_is_bounded(clean_sandbox):
    clean_sandbox.set_faults(latency_ms=30, concurrency_limit=4)
    records, transport = send(clean_sandbox, rows(40), concurrency=4)
    assert transport.limiter.stats.max_in_flight <= 4
    assert clean_sandbox.stats()["faults"]["concurrency_429"] == 0
    assert len(clean_sandbox.messages()) == 40 == len(records)


def test_lost_responses_never_duplicate(clean_sandbox):
    clean_sandbox.set_faults(rate_lost_response=0.2, lost_response_mode="500", seed=3)
    batch = rows(40)
    records, _ = send(clean_sandbox, batch)
    stored = clean_sandbox.messages()
    assert clean_sandbox.stats()["faults"]["lost_response"] > 0
    assert Counter(m["to"] for m in stored) == Counter(r["to"] for r in batch)
    assert {r["sid"] for r in records} == {m["sid"] for m in stored}


def test_task_retry_looks_up_before_sending(clean_sandbox):
    since = datetime.now(UTC)
    batch = rows(10)
    first, _ = send(clean_sandbox, batch[:6])  # the first try died after six rows
    again, _ = send(clean_sandbox, batch, sent_since=since)
    stored = clean_sandbox.messages()
    assert Counter(m["to"] for m in stored) == Counter(r["to"] for r in batch)
    assert [r["sid"] for r in again[:6]] == [r["sid"] for r in first]


def test_bad_credentials_stop_the_chunk(clean_sandbox):
    async def run():
        client, _ = throttled_client(connection(clean_sandbox, "wrong-token"), 4)
        async with client:
            return await send_rows(client, rows(20), SENDER, concurrency=4)

    with pytest.raises(TwilioAPIError) as info:
        asyncio.run(run())
    assert info.value.status_code == 401
    assert "wrong-token" not in str(info.value)
    assert clean_sandbox.stats()["requests"]["create"] <= 4 + 4  # stopped early, not 20 attempts


def test_tracking_fetches_each_final_message_once(clean_sandbox):
    # 3003 ends undelivered, 3008 failed, 7777 stays "sent" for ever; the sandbox runs with zero step delay.
    stuck = [row(15, "+15550107777", "s"), row(16, "+15550207777", "s")]
    batch = [*rows(12), row(13, "+15550103003", "u"), row(14, "+15550103008", "f"), *stuck]
    records, _ = send(clean_sandbox, batch)
    store = MemoryStore()
    first = poll(clean_sandbox, records, store)
    assert (first.done, first.fetched, first.pending) == (False, 16, 2)
    assert len(store.known) == 14  # only final statuses are kept
    second = poll(clean_sandbox, first.records, store)
    assert (second.done, second.fetched) == (False, 2)
    last = poll(clean_sandbox, records, store, final=True)  # from the send records: the store fills them in
    assert last.done and last.fetched == 2
    assert clean_sandbox.stats()["requests"]["fetch"] == 16 + 2 + 2
    outcome = {r["row"]: (r["outcome"], r["status"], r["error_code"]) for r in last.records}
    assert outcome[1] == (DELIVERED, "delivered", None)
    assert outcome[13] == (FAILED, "undelivered", 30003)
    assert outcome[14] == (FAILED, "failed", 30008)
    assert outcome[15] == (UNCONFIRMED, "sent (delivery unconfirmed)", None)
    assert len(store.known) == 14  # the caller clears it once it has written the chunk's final records


def test_limiter_halves_on_429_and_recovers():
    async def run():
        clock = [0.0]
        limiter = AdaptiveLimiter(8, clock=lambda: clock[0])
        await limiter.acquire()
        await limiter.release(throttled=True, retry_after=0)
        assert limiter.limit == 4
        await limiter.acquire()
        await limiter.release(throttled=True, retry_after=0)
        assert limiter.limit == 2 and limiter.stats.lowest_limit == 2
        for _ in range(2 + 3):
            await limiter.acquire()
            await limiter.release()
        assert limiter.limit == 4  # +1 after 2 successes, +1 after 3 more
        return limiter

    assert asyncio.run(run()).stats.throttled == 2


def test_limiter_waits_out_retry_after():
    async def run():
        limiter = AdaptiveLimiter(2)
        await limiter.acquire()
        await limiter.release(throttled=True, retry_after=0.3)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await limiter.acquire()
        return loop.time() - started

    assert asyncio.run(run()) >= 0.25


def test_unreachable_twilio_is_named_when_the_chunk_gives_up():
    from scripts.airflow_stack import free_port  # a loopback port with nothing listening
    from twilio_messaging.batch.send import ChunkIncomplete

    dead = TwilioConnection(
        base_url=f"http://127.0.0.1:{free_port()}", username="AC" + "0" * 32, secret="secret-not-shown"
    )

    async def run():
        client, _ = throttled_client(dead, 2, retry_policy=FAST_RETRIES)
        async with client:
            await send_rows(client, rows(2), SENDER, concurrency=2, give_up_after=0.5)

    with pytest.raises(ChunkIncomplete) as info:
        asyncio.run(run())
    text = str(info.value)
    assert "2 of 2 messages could not be sent" in text
    assert "Twilio was unreachable" in text and "127.0.0.1" in text
    assert "secret-not-shown" not in text

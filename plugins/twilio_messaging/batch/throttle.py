"""Bounded, 429-aware concurrency for one task's Twilio requests.

At most ``limit`` requests are in flight. A 429 (Twilio's concurrency limit, "never processed") halves the
allowed concurrency and, when it carries Retry-After, holds back every new request that long; every
``limit`` successes in a row give one slot back, up to the configured maximum (AIMD, as TCP does). The
retry of the refused request itself stays with the client's flow, so nothing is ever dropped here.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import httpx

from twilio_messaging.client import AsyncTwilioClient
from twilio_messaging.connection import TwilioConnection
from twilio_messaging.retry import parse_retry_after


@dataclass
class ThrottleStats:
    requests: int = 0
    throttled: int = 0
    lowest_limit: int = 0
    max_in_flight: int = 0


@dataclass
class AdaptiveLimiter:
    maximum: int
    clock: Callable[[], float] = time.monotonic
    limit: int = 0
    stats: ThrottleStats = field(default_factory=ThrottleStats)

    def __post_init__(self) -> None:
        if self.maximum < 1:
            raise ValueError("concurrency must be at least 1")
        self.limit = self.limit or self.maximum
        self.stats.lowest_limit = self.limit
        self._in_flight = 0
        self._successes = 0
        self._resume_at = 0.0
        self._changed: asyncio.Condition | None = None

    def _condition(self) -> asyncio.Condition:
        # Created lazily so the limiter can be built outside the event loop that uses it.
        if self._changed is None:
            self._changed = asyncio.Condition()
        return self._changed

    async def acquire(self) -> None:
        changed = self._condition()
        async with changed:
            while True:
                wait = self._resume_at - self.clock()
                if wait > 0:
                    with suppress(TimeoutError):
                        await asyncio.wait_for(changed.wait(), timeout=wait)
                    continue
                if self._in_flight < self.limit:
                    break
                await changed.wait()
            self._in_flight += 1
            self.stats.requests += 1
            self.stats.max_in_flight = max(self.stats.max_in_flight, self._in_flight)

    async def release(self, throttled: bool = False, retry_after: float | None = None) -> None:
        changed = self._condition()
        async with changed:
            self._in_flight -= 1
            if throttled:
                self.stats.throttled += 1
                self._successes = 0
                self.limit = max(1, self.limit // 2)
                self.stats.lowest_limit = min(self.stats.lowest_limit, self.limit)
                if retry_after:
                    self._resume_at = max(self._resume_at, self.clock() + retry_after)
            else:
                self._successes += 1
                if self.limit < self.maximum and self._successes >= self.limit:
                    self.limit += 1
                    self._successes = 0
            changed.notify_all()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[Callable[[bool, float | None], None]]:
        """``async with limiter.slot() as report: ...; report(throttled, retry_after)``."""
        outcome: list[tuple[bool, float | None]] = []

        def report(throttled: bool, retry_after: float | None = None) -> None:
            outcome.append((throttled, retry_after))

        await self.acquire()
        try:
            yield report
        finally:
            throttled, retry_after = outcome[-1] if outcome else (False, None)
            await self.release(throttled, retry_after)


class ThrottledTransport(httpx.AsyncBaseTransport):
    """An httpx transport that runs every request through an ``AdaptiveLimiter``.

    Plugged into ``AsyncTwilioClient(transport=...)``: the client's flows keep their retry and duplicate
    logic, while the limiter sees each real request. A flow that sleeps before a retry holds no slot.

    Connections are spread over small httpcore pools: one pool with 50 connections spends most of its CPU
    scanning its connections on every request (about 5 ms per request here, capping a 2-core machine near
    100 requests/s), while 50 pools of one connection each reach the server's own limit.
    """

    def __init__(
        self, limiter: AdaptiveLimiter, inner: Sequence[httpx.AsyncBaseTransport] | None = None
    ) -> None:
        self.limiter = limiter
        if inner:
            self._pools = list(inner)
        else:
            # One TLS context for every pool: loading the CA bundle costs ~60 ms each time.
            tls = httpx.create_ssl_context()
            single = httpx.Limits(max_connections=1, max_keepalive_connections=1)
            self._pools = [
                httpx.AsyncHTTPTransport(verify=tls, limits=single) for _ in range(limiter.maximum)
            ]
        self._busy = [0] * len(self._pools)
        self.calls: Counter[str] = Counter()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.calls[_kind(request)] += 1
        async with self.limiter.slot() as report:
            index = min(range(len(self._pools)), key=self._busy.__getitem__)
            self._busy[index] += 1
            try:
                response = await self._pools[index].handle_async_request(request)
                try:
                    await response.aread()
                except BaseException:
                    await response.aclose()
                    raise
            finally:
                self._busy[index] -= 1
            throttled = response.status_code == 429
            report(throttled, parse_retry_after(response.headers.get("Retry-After")) if throttled else None)
            return response

    async def aclose(self) -> None:
        for pool in self._pools:
            await pool.aclose()


def _kind(request: httpx.Request) -> str:
    path = request.url.path
    if request.method == "POST" and path.endswith("/Messages.json"):
        return "create"
    if request.method == "GET" and path.endswith("/Messages.json"):
        return "list"
    return "fetch" if request.method == "GET" else request.method.lower()


def throttled_client(
    connection: TwilioConnection, concurrency: int, **kwargs: Any
) -> tuple[AsyncTwilioClient, ThrottledTransport]:
    """An ``AsyncTwilioClient`` whose requests share one limiter of ``concurrency`` slots."""
    transport = ThrottledTransport(AdaptiveLimiter(concurrency))
    return AsyncTwilioClient(connection, transport=transport, **kwargs), transport


async def run_workers(worker: Callable[[], Coroutine[Any, Any, None]], count: int) -> None:
    """Run ``count`` copies of ``worker`` to completion; if one fails, cancel the others and re-raise."""
    tasks = [asyncio.create_task(worker()) for _ in range(max(1, count))]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise

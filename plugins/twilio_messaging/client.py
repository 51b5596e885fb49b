"""httpx clients for the Twilio Messages API: ``TwilioClient`` (sync) and ``AsyncTwilioClient`` (async).

Both run the same flows (``twilio_messaging.flows``); they differ only in how a request is sent and how
they wait.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from importlib.metadata import PackageNotFoundError, version
from typing import Any, TypeVar

import httpx

from twilio_messaging import flows, forms
from twilio_messaging.connection import TwilioConnection
from twilio_messaging.errors import TwilioConfigError
from twilio_messaging.get_provider_info import PACKAGE_NAME
from twilio_messaging.retry import RetryPolicy
from twilio_messaging.validation import MessageRequest, validate_account_sid

T = TypeVar("T")

# Twilio answers in well under a second; a create that has not answered in 30 s is treated as lost.
DEFAULT_TIMEOUT = httpx.Timeout(connect=5.0, read=30.0, write=30.0, pool=10.0)
DEFAULT_CLOCK_SKEW = timedelta(seconds=60)


def _user_agent() -> str:
    try:
        return f"{PACKAGE_NAME}/{version(PACKAGE_NAME)} httpx/{httpx.__version__}"
    except PackageNotFoundError:
        return f"{PACKAGE_NAME} httpx/{httpx.__version__}"


def _query(call: flows.Call) -> tuple[tuple[str, str], ...] | None:
    return None if call.params is None else tuple(call.params)


class _BaseClient:
    def __init__(
        self,
        connection: TwilioConnection,
        *,
        account_sid: str | None = None,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        retry_policy: RetryPolicy | None = None,
        clock_skew: timedelta = DEFAULT_CLOCK_SKEW,
    ) -> None:
        self.connection = connection
        sid = account_sid or connection.account_sid
        if not sid:
            raise TwilioConfigError(
                f"No Account SID: give accountSid, or use an Account SID (AC...) as the login of the "
                f"Airflow connection '{connection.conn_id}'"
            )
        self.account_sid = validate_account_sid(sid)
        self.timeout = timeout
        self.retry_policy = retry_policy or RetryPolicy()
        self.clock_skew = clock_skew

    def _context(self) -> flows.FlowContext:
        return flows.FlowContext(
            base_url=self.connection.base_url,
            account_sid=self.account_sid,
            conn_id=self.connection.conn_id,
            policy=self.retry_policy,
            clock_skew=self.clock_skew,
        )

    def _httpx_kwargs(self) -> dict[str, Any]:
        return {
            "base_url": self.connection.base_url,
            "auth": httpx.BasicAuth(self.connection.username, self.connection.secret),
            "timeout": self.timeout,
            "headers": {"Accept": "application/json", "User-Agent": _user_agent()},
            "follow_redirects": False,
        }

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(base_url={self.connection.base_url!r}, account_sid={self.account_sid!r})"
        )


class TwilioClient(_BaseClient):
    """Synchronous client. Use as a context manager, or call ``close()``."""

    def __init__(
        self, connection: TwilioConnection, *, transport: httpx.BaseTransport | None = None, **kwargs: Any
    ) -> None:
        super().__init__(connection, **kwargs)
        self._http = httpx.Client(transport=transport, **self._httpx_kwargs())

    def _run(self, flow: flows.Flow[T]) -> T:
        reply: flows.Reply | None = None
        while True:
            try:
                step = flow.send(reply)
            except StopIteration as done:
                return done.value
            if isinstance(step, flows.Sleep):
                time.sleep(step.seconds)
                reply = None
                continue
            try:
                reply = self._http.request(step.method, step.url, params=_query(step), data=step.data)
            except httpx.TransportError as exc:
                reply = exc

    def create_message(
        self, request: MessageRequest, *, sent_since: datetime | None = None
    ) -> dict[str, Any]:
        """Create a message (duplicate-safe); ``sent_since`` looks for an earlier attempt's message first."""
        return self._run(flows.create_message_flow(self._context(), request, sent_since))

    def fetch_message(self, sid: str) -> dict[str, Any]:
        return self._run(flows.fetch_message_flow(self._context(), sid))

    def list_messages(self, **filters: Any) -> list[dict[str, Any]]:
        """List messages, newest first, following every page (filters: to, from_, date_sent...)."""
        return self._run(flows.list_messages_flow(self._context(), forms.list_query(filters)))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> TwilioClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncTwilioClient(_BaseClient):
    """Asynchronous client with the same methods as ``TwilioClient``. Use with ``async with``."""

    def __init__(
        self,
        connection: TwilioConnection,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(connection, **kwargs)
        self._http = httpx.AsyncClient(transport=transport, **self._httpx_kwargs())

    async def _run(self, flow: flows.Flow[T]) -> T:
        reply: flows.Reply | None = None
        while True:
            try:
                step = flow.send(reply)
            except StopIteration as done:
                return done.value
            if isinstance(step, flows.Sleep):
                await asyncio.sleep(step.seconds)
                reply = None
                continue
            try:
                reply = await self._http.request(step.method, step.url, params=_query(step), data=step.data)
            except httpx.TransportError as exc:
                reply = exc

    async def create_message(
        self, request: MessageRequest, *, sent_since: datetime | None = None
    ) -> dict[str, Any]:
        return await self._run(flows.create_message_flow(self._context(), request, sent_since))

    async def fetch_message(self, sid: str) -> dict[str, Any]:
        return await self._run(flows.fetch_message_flow(self._context(), sid))

    async def list_messages(self, **filters: Any) -> list[dict[str, Any]]:
        return await self._run(flows.list_messages_flow(self._context(), forms.list_query(filters)))

    async def list_pages(
        self,
        query: list[tuple[str, str]],
        *,
        stop: Callable[[list[dict[str, Any]]], bool],
        max_pages: int = flows.MAX_LIST_PAGES,
    ) -> list[dict[str, Any]]:
        """listMessage with a query as given, page after page until ``stop(page)`` is true or none is left."""
        flow = flows.list_messages_flow(self._context(), query, stop=stop, max_pages=max_pages)
        return await self._run(flow)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncTwilioClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

"""``TwilioMessageStatusTrigger``: wait in the triggerer for a message's final status, push first.

One asyncio task per message wait, holding no worker slot. Every trigger of the triggerer's event loop shares
one look into the callback store per ``callback_check_interval`` (one bulk read for thousands of waits; a
callback wakes its trigger within that interval), and each fetches its message from Twilio
(async httpx) at ``poll_interval``, doubling to ``max_poll_interval``, as a backup for callbacks that are
late, lost or off. A fetch that meets 429 waits as ``Retry-After`` says (``AsyncTwilioClient``'s retry
policy) while the store is still watched. It serializes the connection id, never a credential.

It fires one event: ``{"status": "done" | "timeout" | "error", "message": {...}, "source": ...}``;
``message`` holds ``status``, ``error_code`` and ``error_message`` as Twilio's message resource does.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from twilio_messaging.callbacks.store import CallbackStore, StatusUpdate, StoreError, open_store
from twilio_messaging.connection import DEFAULT_CONN_ID
from twilio_messaging.errors import TwilioError, TwilioUnreachableError
from twilio_messaging.statuses import FAILED_STATUSES, is_terminal

log = logging.getLogger(__name__)

DEFAULT_CALLBACK_CHECK_INTERVAL = 2.0
_REPORTED_FIELDS = ("sid", "status", "error_code", "error_message", "date_created")


def _reported(message: dict[str, Any]) -> dict[str, Any]:
    return {key: message.get(key) for key in _REPORTED_FIELDS}


class CallbackWatch:
    """The SIDs the triggers of one event loop wait for, read from the store in one bulk read per interval.

    A trigger registers its SID and gets a future, resolved with the first final status the store holds.
    The reading task runs while anyone waits; a store that cannot be read is logged and tried again.
    """

    def __init__(self, store: CallbackStore, interval: float) -> None:
        self.store = store
        self.interval = interval
        self.reads = 0
        self._waiting: dict[str, set[asyncio.Future[StatusUpdate]]] = {}
        self._task: asyncio.Task[None] | None = None

    def register(self, sid: str) -> asyncio.Future[StatusUpdate]:
        future: asyncio.Future[StatusUpdate] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(sid, set()).add(future)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._read_loop())
        return future

    def unregister(self, sid: str, future: asyncio.Future[StatusUpdate]) -> None:
        futures = self._waiting.get(sid)
        if futures is not None:
            futures.discard(future)
            if not futures:
                del self._waiting[sid]

    async def _read_loop(self) -> None:
        while self._waiting:
            sids = list(self._waiting)
            try:
                found = await asyncio.to_thread(self.store.get_many, sids)
            except StoreError as exc:
                log.warning("Callback store unavailable (%s); polling Twilio meanwhile", exc)
                found = {}
            self.reads += 1
            for sid, update in found.items():
                if is_terminal(update.status):
                    for future in self._waiting.pop(sid, set()):
                        if not future.done():
                            future.set_result(update)
            await asyncio.sleep(self.interval)


_watches: dict[tuple[int, int, float], CallbackWatch] = {}


def callback_watch(store: CallbackStore, interval: float) -> CallbackWatch:
    """The watch shared by the triggers of the running event loop (the triggerer runs them all in one)."""
    key = (id(asyncio.get_running_loop()), id(store), interval)
    if key not in _watches:
        _watches[key] = CallbackWatch(store, interval)
    return _watches[key]


class TwilioMessageStatusTrigger(BaseTrigger):
    """Fire once the message is final (or ``deadline``, epoch seconds, passes).

    :param message_sid: the SID (SM.../MM...) to wait for.
    :param account_sid: the owning account; default: the connection's Account SID login.
    :param twilio_conn_id: the Twilio connection (read in the triggerer; only its id is serialized).
    :param deadline: when to give up (seconds since the epoch, UTC), e.g. sending time + status timeout.
    :param poll_interval: seconds before the first fetch, and between fetches before backoff.
    :param max_poll_interval: the backoff cap.
    :param callback_check_interval: seconds between looks into the callback store.
    """

    def __init__(
        self,
        message_sid: str,
        *,
        deadline: float,
        account_sid: str | None = None,
        twilio_conn_id: str = DEFAULT_CONN_ID,
        poll_interval: float = 60.0,
        max_poll_interval: float = 900.0,
        callback_check_interval: float = DEFAULT_CALLBACK_CHECK_INTERVAL,
    ) -> None:
        super().__init__()
        self.message_sid = message_sid
        self.account_sid = account_sid
        self.twilio_conn_id = twilio_conn_id
        self.deadline = deadline
        self.poll_interval = poll_interval
        self.max_poll_interval = max(poll_interval, max_poll_interval)
        self.callback_check_interval = callback_check_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "message_sid": self.message_sid,
                "account_sid": self.account_sid,
                "twilio_conn_id": self.twilio_conn_id,
                "deadline": self.deadline,
                "poll_interval": self.poll_interval,
                "max_poll_interval": self.max_poll_interval,
                "callback_check_interval": self.callback_check_interval,
            },
        )

    # ---- the pieces, each replaceable in tests ---------------------------------------------------------

    async def _client(self) -> Any:
        from twilio_messaging.client import AsyncTwilioClient
        from twilio_messaging.hooks.twilio import TwilioHook, settings_from_connection

        conn = await TwilioHook.aget_connection(self.twilio_conn_id)
        return AsyncTwilioClient(
            settings_from_connection(conn, self.twilio_conn_id), account_sid=self.account_sid
        )

    def _store(self) -> CallbackStore | None:
        try:
            return open_store()
        except (StoreError, ValueError) as exc:
            log.warning("No callback store (%s); polling Twilio only", exc)
            return None

    # ---- the wait --------------------------------------------------------------------------------------

    async def run(self) -> AsyncIterator[TriggerEvent]:
        store = self._store()
        last: dict[str, Any] = {"sid": self.message_sid, "status": None}
        try:
            client = await self._client()
        except TwilioError as exc:
            yield TriggerEvent({"status": "error", "error": str(exc), "message": last})
            return
        watch = callback_watch(store, self.callback_check_interval) if store is not None else None
        called_back = watch.register(self.message_sid) if watch is not None else None
        async with client:
            interval = self.poll_interval
            next_poll = time.monotonic() + interval
            fetch: asyncio.Task[dict[str, Any]] | None = None
            try:
                while True:
                    if called_back is not None and called_back.done():
                        message = called_back.result().as_message()
                        yield TriggerEvent(await self._done_by_callback(client, message))
                        return
                    if fetch is not None and fetch.done():
                        try:
                            last = _reported(fetch.result())
                        except TwilioUnreachableError as exc:
                            log.warning("Polling %s: %s; trying again later", self.message_sid, exc)
                        except TwilioError as exc:
                            yield TriggerEvent({"status": "error", "error": str(exc), "message": last})
                            return
                        fetch = None
                        if is_terminal(last["status"]):
                            yield TriggerEvent({"status": "done", "source": "poll", "message": last})
                            return
                        interval = min(interval * 2, self.max_poll_interval)
                        next_poll = time.monotonic() + interval
                    if time.time() >= self.deadline:
                        yield TriggerEvent({"status": "timeout", "source": "poll", "message": last})
                        return
                    if fetch is None and time.monotonic() >= next_poll:
                        fetch = asyncio.create_task(client.fetch_message(self.message_sid))
                    waits: set[asyncio.Future[Any]] = {f for f in (fetch, called_back) if f is not None}
                    until = min(next_poll - time.monotonic(), self.deadline - time.time())
                    timeout = None if fetch is not None else max(0.0, until)
                    if waits:
                        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                    else:
                        await asyncio.sleep(timeout or 0.0)
            finally:
                if fetch is not None and not fetch.done():
                    fetch.cancel()
                if watch is not None and called_back is not None:
                    watch.unregister(self.message_sid, called_back)

    async def _done_by_callback(self, client: Any, message: dict[str, Any]) -> dict[str, Any]:
        """A callback carries no error message: for a failure, fetch the resource once for its text."""
        if message["status"] in FAILED_STATUSES:
            try:
                fetched = await client.fetch_message(self.message_sid)
            except TwilioError as exc:
                log.warning("Message %s failed; its error text is not available: %s", self.message_sid, exc)
            else:
                if is_terminal(fetched.get("status")):
                    return {"status": "done", "source": "callback", "message": _reported(fetched)}
        return {"status": "done", "source": "callback", "message": _reported(message)}

"""``TwilioMessageStatusTrigger``: wait in the triggerer for a message's final status, push first.

One asyncio task per message wait, holding no worker slot: it looks in the callback store every
``callback_check_interval`` seconds (a callback wakes it within that), and fetches the message from Twilio
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

from twilio_messaging.callbacks.store import CallbackStore, StoreError, open_store
from twilio_messaging.connection import DEFAULT_CONN_ID
from twilio_messaging.errors import TwilioError, TwilioUnreachableError
from twilio_messaging.statuses import FAILED_STATUSES, is_terminal

log = logging.getLogger(__name__)

DEFAULT_CALLBACK_CHECK_INTERVAL = 2.0
_REPORTED_FIELDS = ("sid", "status", "error_code", "error_message", "date_created")


def _reported(message: dict[str, Any]) -> dict[str, Any]:
    return {key: message.get(key) for key in _REPORTED_FIELDS}


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

    async def _from_store(self, store: CallbackStore | None) -> dict[str, Any] | None:
        if store is None:
            return None
        try:
            update = await asyncio.to_thread(store.get, self.message_sid)
        except StoreError as exc:
            log.warning("Callback store unavailable (%s); polling Twilio meanwhile", exc)
            return None
        return update.as_message() if update is not None and is_terminal(update.status) else None

    # ---- the wait --------------------------------------------------------------------------------------

    async def run(self) -> AsyncIterator[TriggerEvent]:
        store = self._store()
        last: dict[str, Any] = {"sid": self.message_sid, "status": None}
        try:
            client = await self._client()
        except TwilioError as exc:
            yield TriggerEvent({"status": "error", "error": str(exc), "message": last})
            return
        async with client:
            interval = self.poll_interval
            next_poll = time.monotonic() + interval
            fetch: asyncio.Task[dict[str, Any]] | None = None
            try:
                while True:
                    called_back = await self._from_store(store)
                    if called_back is not None:
                        yield TriggerEvent(await self._done_by_callback(client, called_back))
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
                    wait = max(0.0, min(self.callback_check_interval, next_poll - time.monotonic()))
                    if fetch is not None:
                        await asyncio.wait({fetch}, timeout=self.callback_check_interval)
                    else:
                        await asyncio.sleep(wait or self.callback_check_interval)
            finally:
                if fetch is not None and not fetch.done():
                    fetch.cancel()

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

"""StatusCallback delivery: Twilio's callback form, signed with X-Twilio-Signature, POSTed from threads.

Events are scheduled from each message's timeline at creation (and at cancel), fire when due, and are
sent in order per message. A callback that cannot be delivered is logged and counted, never raised.
Callbacks go only to allowed hosts (loopback unless ``--callback-allow`` adds more), so a test or a fuzzer
that passes ``https://example.com`` never makes the sandbox call out of the machine.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import hmac
import ipaddress
import itertools
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from urllib.parse import urlsplit

import httpx

from sandbox import API_VERSION
from sandbox.resources import SERVICE_SENDER
from sandbox.stats import Stats
from sandbox.store import MessageRecord, MessageStore

log = logging.getLogger("sandbox.callbacks")


def compute_signature(url: str, params: Mapping[str, str | list[str]], auth_token: str) -> str:
    """base64(HMAC-SHA1(auth_token, url + every param name and value, sorted by name then value))."""
    payload = url
    for name in sorted(params):
        values = params[name]
        for value in sorted([values] if isinstance(values, str) else values):
            payload += name + value
    digest = hmac.new(auth_token.encode(), payload.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


LOOPBACK_NAMES = frozenset({"localhost"})


class CallbackAllowlist:
    """The hosts the sandbox may POST callbacks to: loopback addresses and ``localhost``, plus ``extra``.

    ``*`` in ``extra`` allows every host (e.g. a compose network where the receiver is another service).
    """

    def __init__(self, extra: tuple[str, ...] = ()) -> None:
        self.allow_all = "*" in extra
        self.extra = frozenset(h.strip().lower().rstrip(".") for h in extra if h.strip() and h != "*")

    def allows(self, url: str) -> bool:
        try:
            host = (urlsplit(url).hostname or "").rstrip(".")
        except ValueError:
            return False
        if not host:
            return False
        if self.allow_all or host in LOOPBACK_NAMES or host in self.extra:
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

    def describe(self) -> str:
        if self.allow_all:
            return "any host"
        return ", ".join(["loopback", *sorted(self.extra)])


def callback_form(record: MessageRecord, status: str) -> dict[str, str]:
    form = {
        "MessageSid": record.sid,
        "MessageStatus": status,
        "SmsSid": record.sid,
        "SmsStatus": status,
        "AccountSid": record.account_sid,
        "From": record.from_ or SERVICE_SENDER,
        "To": record.to,
        "ApiVersion": API_VERSION,
    }
    if record.messaging_service_sid:
        form["MessagingServiceSid"] = record.messaging_service_sid
    if status in ("failed", "undelivered") and record.outcome.error_code is not None:
        form["ErrorCode"] = str(record.outcome.error_code)
    if status in ("delivered", "undelivered"):
        form["RawDlrDoneDate"] = datetime.now(UTC).strftime("%y%m%d%H%M")
    return form


class CallbackDispatcher:
    """A timer thread that hands due callbacks to a few single-thread senders (one per SID shard)."""

    def __init__(
        self,
        store: MessageStore,
        token_for: Callable[[str], str],
        stats: Stats,
        *,
        allowlist: CallbackAllowlist | None = None,
        shards: int = 4,
    ) -> None:
        self.allowlist = allowlist or CallbackAllowlist()
        self._store = store
        self._token_for = token_for
        self._stats = stats
        self._heap: list[tuple[float, int, str, float, str]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._senders = [ThreadPoolExecutor(1, thread_name_prefix=f"callback-{i}") for i in range(shards)]
        self._client = httpx.Client(timeout=5.0, trust_env=False)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="callback-timer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout=5)
        for sender in self._senders:
            sender.shutdown(wait=False, cancel_futures=True)
        self._client.close()

    def schedule(self, record: MessageRecord) -> None:
        """Every status change after the first one gets a callback (Twilio sends none for the initial one)."""
        if not record.status_callback:
            return
        if not self.allowlist.allows(record.status_callback):
            # Decided at creation, before any timer: the request is never attempted.
            self._stats.count("callbacks", "blocked")
            log.warning(
                "status callbacks for %s not sent: %s is not an allowed host (%s; see --callback-allow)",
                record.sid,
                record.status_callback,
                self.allowlist.describe(),
            )
            return
        with self._cond:
            for offset, status in record.timeline[1:]:
                heapq.heappush(
                    self._heap, (record.mono_at(offset), next(self._seq), record.sid, offset, status)
                )
            self._cond.notify()

    def schedule_cancel(self, record: MessageRecord) -> None:
        if not record.status_callback or record.canceled_at is None:
            return
        if not self.allowlist.allows(record.status_callback):
            self._stats.count("callbacks", "blocked")
            return
        with self._cond:
            due = record.mono_at(record.canceled_at)
            heapq.heappush(self._heap, (due, next(self._seq), record.sid, record.canceled_at, "canceled"))
            self._cond.notify()

    def clear(self) -> None:
        with self._cond:
            self._heap.clear()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and (not self._heap or self._heap[0][0] > time.monotonic()):
                    timeout = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._cond.wait(timeout)
                if self._stopping:
                    return
                _, _, sid, offset, status = heapq.heappop(self._heap)
            record = self._store.lookup(sid)
            if record is None:
                continue  # deleted or reset
            if status != "canceled" and record.canceled_at is not None and offset >= record.canceled_at:
                continue  # superseded by the cancel
            shard = self._senders[hash(sid) % len(self._senders)]
            shard.submit(self._send, record, status)

    def _send(self, record: MessageRecord, status: str) -> None:
        url = record.status_callback or ""
        form = callback_form(record, status)
        headers = {
            "X-Twilio-Signature": compute_signature(url, form, self._token_for(record.account_sid)),
            "I-Twilio-Idempotency-Token": str(uuid.uuid4()),
            "User-Agent": "TwilioProxy/1.1",
        }
        try:
            response = self._client.post(url, data=form, headers=headers)
        except httpx.HTTPError as exc:
            self._stats.count("callbacks", "failed")
            log.warning("status callback %s for %s to %s failed: %r", status, record.sid, url, exc)
            return
        except Exception:  # a broken receiver must never take the sandbox down
            self._stats.count("callbacks", "failed")
            log.exception("status callback %s for %s to %s failed", status, record.sid, url)
            return
        if response.status_code >= 400:
            self._stats.count("callbacks", "failed")
            log.warning(
                "status callback %s for %s: %s answered %d", status, record.sid, url, response.status_code
            )
        else:
            self._stats.count("callbacks", "sent")

"""StatusCallback delivery as Twilio does it: its form, X-Twilio-Signature, I-Twilio-Idempotency-Token, and
retries by the URL's connection overrides (``#rc=2&rt=3000``), POSTed from threads.

Events are scheduled from each message's timeline at creation (and at cancel), fire when due, and are
sent in order per message unless a callback fault drops, duplicates, delays or reorders them. A callback
that cannot be delivered is logged and counted, never raised. Callbacks go only to allowed hosts (loopback
unless ``--callback-allow`` adds more), so a test or a fuzzer that passes ``https://example.com`` never makes
the sandbox call out of the machine.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import hmac
import ipaddress
import itertools
import logging
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from sandbox import API_VERSION
from sandbox.faults import FaultInjector
from sandbox.resources import SERVICE_SENDER
from sandbox.stats import Stats
from sandbox.store import MessageRecord, MessageStore
from sandbox.webhook import WebhookClient, WebhookFailure, request_target

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
            host = urlsplit(url).hostname or ""
        except ValueError:
            return False
        return self.allows_host(host)

    def allows_host(self, host: str) -> bool:
        host = host.strip("[]").lower().rstrip(".")
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


# Twilio's webhook connection overrides (docs "Webhooks (HTTP callbacks): Connection Overrides"): URL
# fragment keys, their (min, max, default). Timeouts in milliseconds.
OVERRIDE_RANGES = {
    "ct": (100, 10_000, 5_000),  # connect timeout
    "rt": (100, 15_000, 15_000),  # read timeout: to the first byte of the answer, and between its packets
    "tt": (100, 15_000, 15_000),  # total time for every attempt, retries included
    "rc": (0, 5, 1),  # retry count
}
RETRY_POLICIES = frozenset({"4xx", "5xx", "ct", "rt", "all"})
DEFAULT_RETRY_POLICY = frozenset({"ct", "rt"})
OVERRIDE_VALUE = re.compile(r"[0-9]{1,6}")


@dataclass(frozen=True)
class Overrides:
    """The connection overrides of one StatusCallback URL (``https://host/cb#rc=3&rp=5xx,ct&rt=2000``)."""

    connect_timeout: float = 5.0
    read_timeout: float = 15.0
    total_time: float = 15.0
    retry_count: int = 1
    retry_policy: frozenset[str] = DEFAULT_RETRY_POLICY

    @classmethod
    def parse(cls, fragment: str) -> Overrides:
        """Values outside a key's range are clamped to it; keys or values it cannot read keep the default
        (``e`` and ``sni`` are accepted and mean nothing on loopback)."""
        values = {key: default for key, (_, _, default) in OVERRIDE_RANGES.items()}
        policy = DEFAULT_RETRY_POLICY
        for key, value in parse_qsl(fragment, keep_blank_values=True):
            if key in OVERRIDE_RANGES and OVERRIDE_VALUE.fullmatch(value):
                low, high, _ = OVERRIDE_RANGES[key]
                values[key] = min(max(int(value), low), high)
            elif key == "rp":
                given = frozenset(p.strip() for p in value.split(",")) & RETRY_POLICIES
                if given:
                    policy = RETRY_POLICIES if "all" in given else given
        return cls(
            connect_timeout=values["ct"] / 1000,
            read_timeout=values["rt"] / 1000,
            total_time=values["tt"] / 1000,
            retry_count=values["rc"],
            retry_policy=policy,
        )


def split_fragment(url: str) -> tuple[str, str]:
    """``(url without its fragment, fragment)``: the fragment is never sent, nor signed."""
    base, _, fragment = url.partition("#")
    return base, fragment


@dataclass
class Callback:
    """One status callback: the same idempotency token on every attempt and every duplicate of it."""

    sid: str
    offset: float
    status: str
    last: bool  # the message's last status: nothing could overtake it
    token: str = field(default_factory=lambda: str(uuid.uuid4()))
    delayed: bool = False


@dataclass(frozen=True)
class Delivery:
    """What happened to one callback, for ``GET /_sandbox/callbacks``."""

    sid: str
    status: str
    token: str
    attempts: int
    outcome: str  # sent | failed | dropped | blocked
    answer: int | None  # the receiver's last HTTP status, if any
    host: str = ""  # where the attempts went (none when dropped)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class CallbackDispatcher:
    """A timer thread that hands due callbacks to a few single-thread senders (one per SID shard).

    One message's callbacks go to one sender, so they arrive in order unless a fault reorders them; a
    sender retries a callback as its URL's connection overrides say before it takes the next one.
    """

    def __init__(
        self,
        store: MessageStore,
        token_for: Callable[[str], str],
        stats: Stats,
        *,
        faults: FaultInjector | None = None,
        allowlist: CallbackAllowlist | None = None,
        shards: int = 4,
        history: int = 10_000,
    ) -> None:
        self.allowlist = allowlist or CallbackAllowlist()
        self._store = store
        self._token_for = token_for
        self._stats = stats
        self._faults = faults or FaultInjector()
        self._heap: list[tuple[float, int, Callback]] = []
        self._held: dict[str, list[Callback]] = {}  # reordered: sent after the message's next callback
        self._in_flight = 0
        self._deliveries: deque[Delivery] = deque(maxlen=history)
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._senders = [ThreadPoolExecutor(1, thread_name_prefix=f"callback-{i}") for i in range(shards)]
        self._client = WebhookClient()

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

    def _allowed(self, record: MessageRecord) -> bool:
        if self.allowlist.allows(record.status_callback or ""):
            return True
        # Decided at creation, before any timer: the request is never attempted.
        self._stats.count("callbacks", "blocked")
        log.warning(
            "status callbacks for %s not sent: %s is not an allowed host (%s; see --callback-allow)",
            record.sid,
            record.status_callback,
            self.allowlist.describe(),
        )
        return False

    def schedule(self, record: MessageRecord) -> None:
        """Every status change after the first one gets a callback (Twilio sends none for the initial one)."""
        if not record.status_callback or not self._allowed(record):
            return
        with self._cond:
            final = len(record.timeline) - 1
            for index, (offset, status) in enumerate(record.timeline[1:], start=1):
                self._push(record.mono_at(offset), Callback(record.sid, offset, status, index == final))
            self._cond.notify()

    def schedule_cancel(self, record: MessageRecord) -> None:
        if not record.status_callback or record.canceled_at is None or not self._allowed(record):
            return
        with self._cond:
            callback = Callback(record.sid, record.canceled_at, "canceled", True)
            self._push(record.mono_at(record.canceled_at), callback)
            self._cond.notify()

    def _push(self, due: float, callback: Callback) -> None:
        heapq.heappush(self._heap, (due, next(self._seq), callback))

    def clear(self) -> None:
        with self._cond:
            self._heap.clear()
            self._held.clear()
            self._deliveries.clear()

    def snapshot(self) -> dict[str, Any]:
        """Pending callbacks (scheduled, held back or being sent) and the latest deliveries, oldest first."""
        with self._cond:
            held = sum(len(v) for v in self._held.values())
            return {
                "pending": len(self._heap) + held + self._in_flight,
                "deliveries": [d.to_dict() for d in self._deliveries],
            }

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and (not self._heap or self._heap[0][0] > time.monotonic()):
                    timeout = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._cond.wait(timeout)
                if self._stopping:
                    return
                due, _, callback = heapq.heappop(self._heap)
                self._dispatch(due, callback)

    def _dispatch(self, due: float, callback: Callback) -> None:
        """Apply the callback faults and hand the callback to its sender (the condition's lock is held)."""
        record = self._store.lookup(callback.sid)
        if record is None:
            self._held.pop(callback.sid, None)
            return  # deleted or reset
        superseded = record.canceled_at is not None and callback.offset >= record.canceled_at
        if callback.status != "canceled" and superseded:
            self._release(record, [])
            return
        faults = self._faults
        delay_ms = faults.config.callback_delay_ms
        if delay_ms and not callback.delayed:
            callback.delayed = True
            self._push(due + delay_ms / 1000, callback)
            return
        if faults.roll(faults.config.rate_callback_drop):
            self._stats.count("callbacks", "dropped")
            self._record(Delivery(callback.sid, callback.status, callback.token, 0, "dropped", None))
            self._release(record, [])
            return
        if not callback.last and faults.roll(faults.config.rate_callback_reorder):
            self._stats.count("callbacks", "reordered")
            self._held.setdefault(callback.sid, []).append(callback)
            return
        batch = [callback]
        if faults.roll(faults.config.rate_callback_duplicate):
            self._stats.count("callbacks", "duplicated")
            batch.append(callback)
        self._release(record, batch)

    def _release(self, record: MessageRecord, batch: list[Callback]) -> None:
        """Send ``batch``, then whatever of this message was held back to be overtaken."""
        batch = batch + self._held.pop(record.sid, [])
        if not batch:
            return
        self._in_flight += len(batch)
        shard = self._senders[hash(record.sid) % len(self._senders)]
        for callback in batch:
            shard.submit(self._send, record, callback)

    def _record(self, delivery: Delivery) -> None:
        self._deliveries.append(delivery)

    def _send(self, record: MessageRecord, callback: Callback) -> None:
        try:
            delivery = self._deliver(record, callback)
        except Exception:  # a broken receiver must never take the sandbox down
            self._stats.count("callbacks", "failed")
            log.exception("status callback %s for %s failed", callback.status, record.sid)
            delivery = Delivery(record.sid, callback.status, callback.token, 0, "failed", None)
        with self._cond:
            self._in_flight -= 1
            self._record(delivery)

    def _deliver(self, record: MessageRecord, callback: Callback) -> Delivery:
        url, fragment = split_fragment(record.status_callback or "")
        overrides = Overrides.parse(fragment)
        host = request_target(url)[1]
        if not self.allowlist.allows_host(host):
            # Checked again where the connection is made, so that no later change can bypass it.
            self._stats.count("callbacks", "blocked")
            return Delivery(record.sid, callback.status, callback.token, 0, "blocked", None, host)
        form = callback_form(record, callback.status)
        body = urlencode(form).encode()
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": compute_signature(url, form, self._token_for(record.account_sid)),
            "I-Twilio-Idempotency-Token": callback.token,
            "User-Agent": "TwilioProxy/1.1",
        }
        started = time.monotonic()
        answer: int | None = None
        attempts = 0
        while True:
            attempts += 1
            left = max(overrides.total_time - (time.monotonic() - started), 0.001)
            try:
                answer = self._client.post(
                    url,
                    body,
                    headers,
                    connect_timeout=min(overrides.connect_timeout, left),
                    read_timeout=min(overrides.read_timeout, left),
                )
            except WebhookFailure as exc:
                failure, detail = exc.kind, str(exc)
            else:
                if answer < 400:
                    self._stats.count("callbacks", "sent")
                    return Delivery(
                        record.sid, callback.status, callback.token, attempts, "sent", answer, host
                    )
                failure, detail = ("4xx" if answer < 500 else "5xx"), f"answered {answer}"
            retry = failure in overrides.retry_policy and attempts <= overrides.retry_count
            if retry and time.monotonic() - started < overrides.total_time:
                self._stats.count("callbacks", "retried")
                continue
            self._stats.count("callbacks", "failed")
            log.warning(
                "status callback %s for %s to %s failed after %d attempt(s): %s",
                callback.status,
                record.sid,
                url,
                attempts,
                detail,
            )
            return Delivery(record.sid, callback.status, callback.token, attempts, "failed", answer, host)

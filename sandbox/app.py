"""The sandbox's ASGI application: Twilio's Messages API; ``/_sandbox/`` goes to the control API.

It is a plain ASGI callable rather than a FastAPI app on purpose: the sandbox must never be the bottleneck of
the batch benchmark (a framework's per-request overhead halves throughput on this 2-core machine), and the
"lost response" fault needs the raw connection, which frameworks hide.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
import uuid
from dataclasses import dataclass
from urllib.parse import parse_qsl

from sandbox import (
    API_VERSION,
    DEFAULT_ACCOUNT_SID,
    DEFAULT_API_KEY_SECRET,
    DEFAULT_API_KEY_SID,
    DEFAULT_AUTH_TOKEN,
)
from sandbox.auth import BasicAuth
from sandbox.callbacks import CallbackAllowlist, CallbackDispatcher
from sandbox.clock import Clock
from sandbox.control import ControlAPI
from sandbox.errors import (
    TwilioError,
    authenticate_error,
    invalid_parameter,
    not_found,
    server_error,
    too_many_requests,
)
from sandbox.faults import FaultConfig, FaultInjector
from sandbox.http import (
    BodyTooLarge,
    ClientGone,
    Receive,
    Scope,
    Send,
    TooManyFields,
    declared_length,
    drop_connection,
    parse_form,
    read_body,
    respond,
)
from sandbox.lifecycle import (
    CANCELABLE_STATUSES,
    EXPIRED,
    PROFILES,
    Profile,
    build_timeline,
    outcome_for,
)
from sandbox.listing import ListQuery, render_page, select_page
from sandbox.resources import render_message
from sandbox.segments import count_segments
from sandbox.senders import DEFAULT_MAX_BACKLOG, SenderQueues
from sandbox.stats import Stats
from sandbox.store import MessageRecord, MessageStore
from sandbox.validation import validate_create

log = logging.getLogger("sandbox")

MESSAGES_PATH = re.compile(rf"^/{API_VERSION}/Accounts/([^/]+)/Messages(?:/([^/]+))?\.json$")
ACCOUNT_PATH = re.compile(rf"^/{API_VERSION}/Accounts/([^/]+)(?:/|\.json|$)")
MESSAGE_SID = re.compile(r"^(SM|MM)[0-9a-f]{32}$")
# The methods of each Messages route, for the Allow header of a 405 (RFC 9110 §15.5.6).
LIST_METHODS = {"POST": "create", "GET": "list"}
INSTANCE_METHODS = {"GET": "fetch", "POST": "update", "DELETE": "delete"}


@dataclass(frozen=True)
class SandboxSettings:
    account_sid: str = DEFAULT_ACCOUNT_SID
    auth_token: str = DEFAULT_AUTH_TOKEN
    api_key_sid: str = DEFAULT_API_KEY_SID
    api_key_secret: str = DEFAULT_API_KEY_SECRET
    profile: Profile = PROFILES["demo"]
    time_scale: float = 1.0
    sender_mps: float | None = None  # None: no sender queue (unlimited)
    sender_max_backlog: float = DEFAULT_MAX_BACKLOG
    callback_allow: tuple[str, ...] = ()
    # Twilio's largest create form (1,600 characters of emoji, 10 media URLs of 4,000 characters, all
    # percent-encoded) is about 140 KB; the body limit is well above it and far below a stall.
    max_body_bytes: int = 256 * 1024


class _Dropped(Exception):
    """The response was deliberately not sent (lost-response fault, drop mode)."""


class SandboxApp:
    """ASGI app; one instance owns the store, the fault injector, the stats, the queues and the callbacks."""

    def __init__(self, settings: SandboxSettings | None = None, faults: FaultConfig | None = None) -> None:
        self.settings = settings or SandboxSettings()
        s = self.settings
        self.clock = Clock(s.time_scale)
        self.store = MessageStore()
        self.stats = Stats()
        self.faults = FaultInjector(faults)
        self.senders = SenderQueues(self.clock, s.sender_mps, s.sender_max_backlog)
        self.auth = BasicAuth(s.account_sid, s.auth_token, s.api_key_sid, s.api_key_secret)
        self.callbacks = CallbackDispatcher(
            self.store,
            self._token_for,
            self.stats,
            faults=self.faults,
            allowlist=CallbackAllowlist(s.callback_allow),
        )
        self.control = ControlAPI(self)
        self._rng = random.Random()

    def _token_for(self, account_sid: str) -> str:
        return self.settings.auth_token

    # ---- ASGI entry -------------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        control = path.startswith("/_sandbox/")
        try:
            declared = declared_length(scope)
            if declared is not None and declared > self.settings.max_body_bytes:
                raise BodyTooLarge(self.settings.max_body_bytes)  # before a byte of the body is read
            if control:
                await self.control(scope, receive, send)
            else:
                await self._twilio(scope, receive, send, path)
        except BodyTooLarge as exc:
            await self._too_large(send, exc, control)
        except (_Dropped, ClientGone):
            return

    async def _too_large(self, send: Send, exc: BodyTooLarge, control: bool) -> None:
        # Connection: close, since the rest of the body is never read (RFC 9110 §15.5.14).
        close = [(b"connection", b"close")]
        if control:
            await respond(send, 413, {"error": str(exc)}, close)
        else:
            self.stats.count("requests", "invalid")
            await respond(
                send, 413, TwilioError(413, 20001, f"Request Entity Too Large: {exc}").body(), close
            )

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.callbacks.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.callbacks.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # ---- Twilio API -------------------------------------------------------------------------------------

    async def _twilio(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        match = MESSAGES_PATH.match(path)
        account_match = match or ACCOUNT_PATH.match(path)
        path_account = account_match.group(1) if account_match else ""
        method = scope["method"]
        kind = self._kind(method, match)
        if kind:
            self.stats.count("requests", kind)
        if not self.faults.enter(path_account):
            self.stats.count("faults", "concurrency_429")
            await self._error(send, too_many_requests())
            return
        try:
            await self._twilio_in_flight(scope, receive, send, path, match, path_account, kind)
        except TwilioError as exc:
            await self._error(send, exc)
        except TooManyFields as exc:
            await self._error(send, invalid_parameter(str(exc)))
        finally:
            self.faults.leave(path_account)

    @staticmethod
    def _methods(match: re.Match[str]) -> dict[str, str]:
        return LIST_METHODS if match.group(2) is None else INSTANCE_METHODS

    @classmethod
    def _kind(cls, method: str, match: re.Match[str] | None) -> str | None:
        return None if match is None else cls._methods(match).get(method)

    async def _twilio_in_flight(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        path: str,
        match: re.Match[str] | None,
        path_account: str,
        kind: str | None,
    ) -> None:
        config = self.faults.config
        if config.latency_ms:
            await asyncio.sleep(config.latency_ms / 1000)
        if self.faults.roll(config.rate_429):
            self.stats.count("faults", "429")
            raise too_many_requests()
        if self.faults.roll(config.rate_5xx):
            self.stats.count("faults", "5xx")
            raise server_error(self.faults.pick_5xx())
        if not self.auth.is_authorized(scope):
            self.stats.count("requests", "unauthorized")
            raise authenticate_error()
        if match is None or path_account != self.settings.account_sid:
            self.stats.count("requests", "not_found")
            raise not_found(path)
        if kind is None:
            allow = ", ".join(self._methods(match))
            raise TwilioError(405, 20004, f"Method not allowed; {path} allows {allow}", allow=allow)
        sid = match.group(2)
        if kind == "create":
            await self._create(scope, receive, send, path_account)
        elif kind == "list":
            await self._list(scope, send, path_account)
        else:
            record = self.store.get(path_account, sid) if MESSAGE_SID.match(sid) else None
            if record is None:
                self.stats.count("requests", "not_found")
                raise not_found(path)
            if kind == "fetch":
                await respond(send, 200, render_message(record))
            elif kind == "update":
                await self._update(scope, receive, send, record)
            else:
                self.store.delete(record.sid)
                await respond(send, 204)

    async def _error(self, send: Send, error: TwilioError) -> None:
        headers = []
        retry_after = self.faults.config.retry_after
        if error.status == 429 and error.code == 20429 and retry_after is not None:
            headers.append((b"retry-after", str(retry_after).encode()))
        if error.allow is not None:
            headers.append((b"allow", error.allow.encode()))
        if 400 <= error.status < 500 and error.status not in (401, 404, 429):
            self.stats.count("requests", "invalid")
        await respond(send, error.status, error.body(), headers)

    async def _form(self, scope: Scope, receive: Receive) -> dict[str, list[str]]:
        return parse_form(await read_body(scope, receive, self.settings.max_body_bytes))

    async def _create(self, scope: Scope, receive: Receive, send: Send, account_sid: str) -> None:
        received_wall, received_mono = time.time(), time.monotonic()
        request = validate_create(await self._form(scope, receive), now=received_wall)
        prefix = "MM" if request.media_urls else "SM"
        sid = prefix + uuid.uuid4().hex
        profile = self.settings.profile
        outcome = outcome_for(request.to)
        rng = random.Random(sid) if profile.jitter else self._rng
        segments = count_segments(request.body)
        via_service = request.messaging_service_sid is not None
        scheduled_for = None if request.send_at is None else request.send_at - received_wall
        # A scheduled message joins its sender's queue only at SendAt, which the queue cannot foresee.
        admission = None
        if scheduled_for is None:
            sender = request.messaging_service_sid or request.from_ or ""
            try:
                admission = self.senders.admit(
                    sender, segments, request.validity_period, self.clock.now(received_mono)
                )
            except TwilioError:
                self.stats.count("queue", "refused_21611")
                raise
            if admission.expired:
                self.stats.count("queue", "expired_30001")
                outcome = EXPIRED
        timeline = build_timeline(
            outcome,
            profile,
            via_service=via_service,
            rng=rng,
            scheduled_for=scheduled_for,
            hold=admission.wait if admission else 0.0,
            expires_after=request.validity_period if admission and admission.expired else None,
        )
        record = MessageRecord(
            sid=sid,
            account_sid=account_sid,
            to=request.to,
            from_=request.from_,
            messaging_service_sid=request.messaging_service_sid,
            body=request.body,
            media_urls=request.media_urls,
            status_callback=request.status_callback,
            outcome=outcome,
            timeline=timeline,
            num_segments=segments,
            created_wall=received_wall,
            created_mono=received_mono,
            time_scale=self.clock.scale,
        )
        self.store.add(record)
        self.callbacks.schedule(record)
        config = self.faults.config
        if self.faults.roll(config.rate_lost_response):
            # The message exists and will be delivered; only the answer is lost. A blind retry duplicates it.
            self.stats.count("faults", "lost_response")
            if config.lost_response_mode == "drop":
                drop_connection(send)
                raise _Dropped
            raise server_error(500)
        await respond(send, 201, render_message(record, initial=True))

    async def _list(self, scope: Scope, send: Send, account_sid: str) -> None:
        query = ListQuery.parse(parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True))
        records, has_more = select_page(self.store.account_index(account_sid), query)
        now = time.monotonic()
        page = [render_message(r, now) for r in records]
        await respond(send, 200, render_page(account_sid, query, page, has_more))

    async def _update(self, scope: Scope, receive: Receive, send: Send, record: MessageRecord) -> None:
        form = await self._form(scope, receive)
        status = form.get("Status", [None])[0]
        body = form.get("Body", [None])[0]
        if status is None and body is None:
            raise TwilioError(400, 20001, "Either Status or Body is required to update a Message")
        if status is not None and status != "canceled":
            raise TwilioError(400, 20001, f"Status must be 'canceled', not {status!r}")
        if body is not None and body != "":
            raise TwilioError(400, 20001, "Body can only be set to an empty string, to redact the message")
        elapsed = record.elapsed()
        if status is not None:
            current, _ = record.state_at(elapsed)
            if current not in CANCELABLE_STATUSES:
                raise TwilioError(400, 30409, "This message cannot be canceled")
            record.canceled_at = elapsed
            self.callbacks.schedule_cancel(record)
        if body is not None:
            record.body = ""
            record.updated_at = elapsed
        await respond(send, 200, render_message(record))

"""The sandbox's ASGI application: Twilio's Messages API plus the ``/_sandbox/`` control API.

It is a plain ASGI callable rather than a FastAPI app on purpose: the sandbox must never be the bottleneck of
the batch benchmark (a framework's per-request overhead halves throughput on this 2-core machine), and the
"lost response" fault needs the raw connection, which frameworks hide.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import logging
import random
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from tests.fake_twilio import (
    API_VERSION,
    DEFAULT_ACCOUNT_SID,
    DEFAULT_API_KEY_SECRET,
    DEFAULT_API_KEY_SID,
    DEFAULT_AUTH_TOKEN,
)
from tests.fake_twilio.callbacks import CallbackDispatcher
from tests.fake_twilio.errors import (
    TwilioError,
    authenticate_error,
    not_found,
    server_error,
    too_many_requests,
)
from tests.fake_twilio.faults import FaultConfig, FaultInjector
from tests.fake_twilio.lifecycle import (
    CANCELABLE_STATUSES,
    OUTCOMES,
    PROFILES,
    Profile,
    build_timeline,
    outcome_for,
)
from tests.fake_twilio.listing import ListQuery, render_page, select_page
from tests.fake_twilio.resources import render_message
from tests.fake_twilio.segments import count_segments
from tests.fake_twilio.stats import Stats
from tests.fake_twilio.store import MessageRecord, MessageStore
from tests.fake_twilio.validation import validate_create

log = logging.getLogger("tests.fake_twilio")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

MESSAGES_PATH = re.compile(rf"^/{API_VERSION}/Accounts/([^/]+)/Messages(?:/([^/]+))?\.json$")
ACCOUNT_PATH = re.compile(rf"^/{API_VERSION}/Accounts/([^/]+)(?:/|\.json|$)")
MESSAGE_SID = re.compile(r"^(SM|MM)[0-9a-f]{32}$")
LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
JSON_HEADERS = [(b"content-type", b"application/json; charset=utf-8")]


@dataclass(frozen=True)
class SandboxSettings:
    account_sid: str = DEFAULT_ACCOUNT_SID
    auth_token: str = DEFAULT_AUTH_TOKEN
    api_key_sid: str = DEFAULT_API_KEY_SID
    api_key_secret: str = DEFAULT_API_KEY_SECRET
    profile: Profile = PROFILES["demo"]


class _Dropped(Exception):
    """The response was deliberately not sent (lost-response fault, drop mode)."""


def _json_bytes(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


async def _respond(send: Send, status: int, payload: Any = None, headers: list | None = None) -> None:
    body = b"" if payload is None else _json_bytes(payload)
    head = [*JSON_HEADERS, (b"content-length", str(len(body)).encode()), *(headers or [])]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


def _form(body: bytes) -> dict[str, list[str]]:
    form: dict[str, list[str]] = {}
    for key, value in parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True):
        form.setdefault(key, []).append(value)
    return form


def _drop_connection(send: Send) -> None:
    """Close the socket without a byte of response, as a crashed proxy or a network cut would.

    uvicorn passes its per-request cycle's bound ``send``; marking the cycle disconnected stops uvicorn from
    writing its own 500 once the app returns.
    """
    cycle = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None:
        raise RuntimeError("lost_response_mode 'drop' needs uvicorn's HTTP protocol")
    cycle.disconnected = True
    transport.close()


class SandboxApp:
    """ASGI app; one instance owns the store, the fault injector, the stats and the callback dispatcher."""

    def __init__(self, settings: SandboxSettings | None = None, faults: FaultConfig | None = None) -> None:
        self.settings = settings or SandboxSettings()
        self.store = MessageStore()
        self.stats = Stats()
        self.faults = FaultInjector(faults)
        self.callbacks = CallbackDispatcher(self.store, self._token_for, self.stats)
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
        try:
            if path.startswith("/_sandbox/"):
                await self._control(scope, receive, send, path)
            else:
                await self._twilio(scope, receive, send, path)
        except _Dropped:
            return

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
        finally:
            self.faults.leave(path_account)

    @staticmethod
    def _kind(method: str, match: re.Match[str] | None) -> str | None:
        if match is None:
            return None
        if match.group(2) is None:
            return {"POST": "create", "GET": "list"}.get(method)
        return {"GET": "fetch", "POST": "update", "DELETE": "delete"}.get(method)

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
        self._authenticate(scope, path_account)
        if match is None or path_account != self.settings.account_sid:
            self.stats.count("requests", "not_found")
            raise not_found(path)
        if kind is None:
            raise TwilioError(405, 20004, "Method not allowed")
        sid = match.group(2)
        if kind == "create":
            await self._create(receive, send, path_account)
        elif kind == "list":
            await self._list(scope, send, path_account)
        else:
            record = self.store.get(path_account, sid) if MESSAGE_SID.match(sid) else None
            if record is None:
                self.stats.count("requests", "not_found")
                raise not_found(path)
            if kind == "fetch":
                await _respond(send, 200, render_message(record))
            elif kind == "update":
                await self._update(receive, send, record)
            else:
                self.store.delete(record.sid)
                await _respond(send, 204)

    def _authenticate(self, scope: Scope, path_account: str) -> None:
        """HTTP Basic: AccountSid:AuthToken, or an API key SK…:secret acting for the account."""
        header = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                header = value
                break
        scheme, _, encoded = header.partition(b" ")
        try:
            username, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            username = password = ""
        s = self.settings
        ok = scheme.lower() == b"basic" and (
            (hmac.compare_digest(username, s.account_sid) and hmac.compare_digest(password, s.auth_token))
            or (
                hmac.compare_digest(username, s.api_key_sid)
                and hmac.compare_digest(password, s.api_key_secret)
            )
        )
        if not ok:
            self.stats.count("requests", "unauthorized")
            raise authenticate_error()

    async def _error(self, send: Send, error: TwilioError) -> None:
        headers = []
        retry_after = self.faults.config.retry_after
        if error.status == 429 and error.code == 20429 and retry_after is not None:
            headers.append((b"retry-after", str(retry_after).encode()))
        if 400 <= error.status < 500 and error.status not in (401, 404, 429):
            self.stats.count("requests", "invalid")
        await _respond(send, error.status, error.body(), headers)

    async def _create(self, receive: Receive, send: Send, account_sid: str) -> None:
        request = validate_create(_form(await _read_body(receive)))
        prefix = "MM" if request.media_urls else "SM"
        sid = prefix + uuid.uuid4().hex
        profile = self.settings.profile
        outcome = outcome_for(request.to)
        rng = random.Random(sid) if profile.jitter else self._rng
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
            timeline=build_timeline(
                outcome, profile, via_service=request.messaging_service_sid is not None, rng=rng
            ),
            num_segments=count_segments(request.body),
        )
        self.store.add(record)
        self.callbacks.schedule(record)
        config = self.faults.config
        if self.faults.roll(config.rate_lost_response):
            # The message exists and will be delivered; only the answer is lost. A blind retry duplicates it.
            self.stats.count("faults", "lost_response")
            if config.lost_response_mode == "drop":
                _drop_connection(send)
                raise _Dropped
            raise server_error(500)
        await _respond(send, 201, render_message(record, initial=True))

    async def _list(self, scope: Scope, send: Send, account_sid: str) -> None:
        query = ListQuery.parse(parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True))
        records, has_more = select_page(self.store.for_account(account_sid), query)
        now = time.monotonic()
        page = [render_message(r, now) for r in records]
        await _respond(send, 200, render_page(account_sid, query, page, has_more))

    async def _update(self, receive: Receive, send: Send, record: MessageRecord) -> None:
        form = _form(await _read_body(receive))
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
        await _respond(send, 200, render_message(record))

    # ---- control API ------------------------------------------------------------------------------------

    async def _control(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        client = scope.get("client")
        if client and client[0] not in LOOPBACK:
            await _respond(send, 403, {"error": "the control API answers loopback clients only"})
            return
        method = scope["method"]
        route = (method, path.rstrip("/"))
        if route == ("GET", "/_sandbox/health"):
            await _respond(send, 200, {"status": "ok"})
        elif route == ("GET", "/_sandbox/messages"):
            now = time.monotonic()
            await _respond(send, 200, {"messages": [render_message(r, now) for r in self.store.all()]})
        elif route == ("DELETE", "/_sandbox/messages"):
            deleted = len(self.store)
            self.store.clear()
            self.callbacks.clear()
            self.stats.reset()
            await _respond(send, 200, {"deleted": deleted})
        elif route == ("GET", "/_sandbox/faults"):
            await _respond(send, 200, self.faults.snapshot().to_dict())
        elif route == ("PUT", "/_sandbox/faults"):
            try:
                changes = json.loads(await _read_body(receive) or b"{}")
                if not isinstance(changes, dict):
                    raise ValueError("the body must be a JSON object")
                config = self.faults.update(changes)
            except ValueError as exc:  # json.JSONDecodeError is a ValueError
                await _respond(send, 400, {"error": str(exc)})
                return
            await _respond(send, 200, config.to_dict())
        elif route == ("DELETE", "/_sandbox/faults"):
            await _respond(send, 200, self.faults.clear().to_dict())
        elif route == ("GET", "/_sandbox/stats"):
            await _respond(send, 200, self.stats.snapshot())
        elif route == ("GET", "/_sandbox/config"):
            await _respond(send, 200, self._config())
        else:
            await _respond(send, 404, {"error": f"no control route {method} {path}"})

    def _config(self) -> dict[str, Any]:
        s = self.settings
        return {
            "account_sid": s.account_sid,
            "api_key_sid": s.api_key_sid,
            "step_delay": s.profile.step_delay,
            "jitter": s.profile.jitter,
            "outcomes": {digits: o.description for digits, o in OUTCOMES.items()},
        }

"""``POST /twilio-messages/status-callback``: Twilio's message status callbacks, checked and stored.

This is the one route of the plugin without Airflow authentication: Twilio cannot log in to Airflow. It
proves who it is with ``X-Twilio-Signature`` instead (HMAC-SHA1 keyed by the account's auth token, over the
public URL and the form), so a request is stored only when that signature checks out; anything else gets
403, and the log says only that one was refused. The body is bounded (413 before it is read when its
declared length is too big) and the work per callback is one atomic store write, so the answer is fast.

Idempotent by construction: a repeated ``I-Twilio-Idempotency-Token`` is acknowledged without effect, and a
status never replaces a higher-ranked one (``ordering``), so Twilio's retries, duplicates and reordering
leave the latest real status in the store.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request, Response, status
from starlette.concurrency import run_in_threadpool

from twilio_messaging.callbacks import signature
from twilio_messaging.callbacks.store import Applied, StatusUpdate, StoreError, open_store
from twilio_messaging.settings import CALLBACK_PATH, CallbackSettings, callback_settings
from twilio_messaging.validation import ACCOUNT_SID_RE, MESSAGE_SID_RE

log = logging.getLogger(__name__)

IDEMPOTENCY_HEADER = "I-Twilio-Idempotency-Token"
MAX_FIELDS = 100
TOKEN_CACHE_SECONDS = 60.0
_STATUS_RE = re.compile(r"[a-z_]{1,32}")
_TOKEN_RE = re.compile(r"[\x21-\x7e]{1,128}")
_ERROR_CODE_RE = re.compile(r"[0-9]{1,9}")

router = APIRouter()


class _AuthTokens:
    """The signing auth token of a connection, re-read at most once a minute (a rotated token is picked up).

    Kept in memory only; it is never logged or put in a response.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, str]] = {}

    def cached(self, conn_id: str) -> str | None:
        with self._lock:
            cached = self._cache.get(conn_id)
        if cached and time.monotonic() - cached[0] < TOKEN_CACHE_SECONDS:
            return cached[1]
        return None

    def get(self, conn_id: str) -> str:
        """The token, from the connection when not cached (reads the metadata DB or a secrets backend)."""
        if (token := self.cached(conn_id)) is not None:
            return token
        now = time.monotonic()
        from twilio_messaging.hooks.twilio import TwilioHook

        token = TwilioHook(conn_id).connection_settings().secret
        with self._lock:
            self._cache[conn_id] = (now, token)
        return token

    def forget(self) -> None:
        with self._lock:
            self._cache.clear()


auth_tokens = _AuthTokens()


def _empty(code: int) -> Response:
    return Response(status_code=code)


def _signed_url(request: Request, settings: CallbackSettings) -> str:
    """The URL Twilio signed: the configured public one when set (a proxy rewrites what we see)."""
    if settings.receiver_url is None:
        return str(request.url)
    query = request.url.query
    return settings.receiver_url + (f"?{query}" if query else "")


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The body, or None once it passes ``limit`` (the rest is not read)."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def _update(form: dict[str, str]) -> StatusUpdate | None:
    sid = form.get("MessageSid") or form.get("SmsSid") or ""
    state = form.get("MessageStatus") or form.get("SmsStatus") or ""
    account = form.get("AccountSid") or None
    error = form.get("ErrorCode") or None
    if not MESSAGE_SID_RE.fullmatch(sid) or not _STATUS_RE.fullmatch(state):
        return None
    if account is not None and not ACCOUNT_SID_RE.fullmatch(account):
        return None
    if error is not None and not _ERROR_CODE_RE.fullmatch(error):
        return None
    return StatusUpdate(
        message_sid=sid,
        status=state,
        error_code=int(error) if error is not None else None,
        account_sid=account,
        received_at=time.time(),
    )


# Mounted with the plugin's app at /twilio-messages: the route is the rest of CALLBACK_PATH.
ROUTE = CALLBACK_PATH.removeprefix("/twilio-messages")


@router.post(ROUTE, status_code=status.HTTP_204_NO_CONTENT, include_in_schema=False)
async def status_callback(request: Request) -> Response:
    try:
        settings = callback_settings()
    except ValueError as exc:
        log.error("Cannot take status callbacks: %s", exc)
        return _empty(status.HTTP_503_SERVICE_UNAVAILABLE)
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isascii() or not declared.isdigit():
            return _empty(status.HTTP_400_BAD_REQUEST)
        if int(declared) > settings.max_body:
            return _empty(status.HTTP_413_CONTENT_TOO_LARGE)
    given = request.headers.get(signature.SIGNATURE_HEADER)
    if not given:
        log.warning("Refused a status callback without %s", signature.SIGNATURE_HEADER)
        return _empty(status.HTTP_403_FORBIDDEN)
    body = await _read_body(request, settings.max_body)
    if body is None:
        return _empty(status.HTTP_413_CONTENT_TOO_LARGE)
    try:
        pairs = parse_qsl(
            body.decode("utf-8"), keep_blank_values=True, strict_parsing=False, max_num_fields=MAX_FIELDS
        )
    except (UnicodeDecodeError, ValueError):
        return _empty(status.HTTP_400_BAD_REQUEST)
    try:
        token = auth_tokens.cached(settings.conn_id)
        if token is None:
            token = await run_in_threadpool(auth_tokens.get, settings.conn_id)
    except Exception as exc:  # the hook's errors never hold the secret; the reason helps the operator
        log.error("Cannot check status callbacks: connection %r: %s", settings.conn_id, exc)
        return _empty(status.HTTP_503_SERVICE_UNAVAILABLE)
    if not signature.is_valid(_signed_url(request, settings), pairs, given, token):
        log.warning("Refused a status callback with an invalid %s", signature.SIGNATURE_HEADER)
        return _empty(status.HTTP_403_FORBIDDEN)
    update = _update(dict(pairs))
    idempotency = request.headers.get(IDEMPOTENCY_HEADER)
    if update is None or (idempotency is not None and not _TOKEN_RE.fullmatch(idempotency)):
        return _empty(status.HTTP_400_BAD_REQUEST)
    try:
        applied = await run_in_threadpool(open_store().record, update, idempotency)
    except (StoreError, ValueError) as exc:
        # Twilio retries a 5xx when the URL's connection overrides ask (#rp=5xx); polling covers the rest.
        log.error("Status callback for %s not stored: %s", update.message_sid, exc)
        return _empty(status.HTTP_503_SERVICE_UNAVAILABLE)
    log.debug("Status callback %s %s: %s", update.message_sid, update.status, applied.value)
    return _empty(status.HTTP_204_NO_CONTENT)


__all__ = ["IDEMPOTENCY_HEADER", "Applied", "router", "status_callback"]

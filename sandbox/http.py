"""ASGI plumbing shared by the Twilio API and the control API: types, JSON answers, bodies, forms.

Also the one place that drops a connection without a response (the ``drop`` lost-response fault).
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

JSON_CONTENT_TYPE = (b"content-type", b"application/json; charset=utf-8")
# RFC 9110 §15.3.5 / §8.6: a 204 has no content, so neither Content-Type nor Content-Length.
NO_CONTENT_STATUSES = frozenset({204, 304})


def json_bytes(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


async def respond(send: Send, status: int, payload: Any = None, headers: Headers | None = None) -> None:
    """Answer with a JSON body (none for 204/304); ``headers`` are added after the content headers."""
    if status in NO_CONTENT_STATUSES:
        head: Headers = [*(headers or [])]
        body = b""
    else:
        body = b"" if payload is None else json_bytes(payload)
        head = [JSON_CONTENT_TYPE, (b"content-length", str(len(body)).encode()), *(headers or [])]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


class BodyTooLarge(Exception):
    """The request body is over the limit: answer 413 (with ``Connection: close``) without reading it."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the request body exceeds the limit of {limit} bytes")
        self.limit = limit


class ClientGone(Exception):
    """The client went away (or the read deadline closed the connection) before the body arrived."""


class TooManyFields(ValueError):
    """A form with more fields than any Twilio request has."""


DIGITS = re.compile(rb"[0-9]{1,18}")
MAX_FORM_FIELDS = 1000


def declared_length(scope: Scope) -> int | None:
    """``Content-Length`` when it is plain ASCII digits (anything else is left to the body count)."""
    value = header(scope, b"content-length").strip()
    return int(value) if DIGITS.fullmatch(value) else None


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The whole body, at most ``limit`` bytes: a larger declared length is refused before a byte is read,
    and a chunked body is cut off as soon as it passes the limit."""
    declared = declared_length(scope)
    if declared is not None and declared > limit:
        raise BodyTooLarge(limit)
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


def parse_form(body: bytes) -> dict[str, list[str]]:
    """A form-encoded body as ``{name: [values]}``; bytes that are not UTF-8 become U+FFFD, never an error.

    Raises TooManyFields above MAX_FORM_FIELDS fields (parse_qsl counts them before it splits anything).
    """
    form: dict[str, list[str]] = {}
    try:
        pairs = parse_qsl(
            body.decode("utf-8", errors="replace"), keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS
        )
    except ValueError:
        raise TooManyFields(f"a form has at most {MAX_FORM_FIELDS} fields") from None
    for key, value in pairs:
        form.setdefault(key, []).append(value)
    return form


def header(scope: Scope, name: bytes) -> bytes:
    for key, value in scope["headers"]:
        if key == name:
            return value
    return b""


def drop_connection(send: Send) -> None:
    """Close the socket without a byte of response, as a crashed proxy or a network cut would.

    There is no supported way to do this in ASGI: the HTTP spec (asgi.readthedocs.io, "HTTP & WebSocket
    ASGI Message Format") has no abort event, and an app that returns or raises before
    ``http.response.start`` makes the server answer 500 itself (uvicorn's ``send_500_response``), which is
    exactly the other lost-response mode. So this reaches uvicorn's per-request cycle: ``send`` is the
    cycle's bound method in both its HTTP protocols (httptools and h11); marking the cycle disconnected stops
    uvicorn from writing its 500 when the app returns. It fails loudly if uvicorn changes that, and
    tests/sandbox/test_faults.py checks that no byte arrives, so an upgrade that breaks it breaks a test.
    """
    cycle = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if cycle is None or transport is None or not hasattr(cycle, "disconnected"):
        raise RuntimeError("lost_response_mode 'drop' needs uvicorn's HTTP protocol (httptools or h11)")
    cycle.disconnected = True
    transport.close()

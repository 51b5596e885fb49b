"""ASGI plumbing shared by the Twilio API and the control API: types, JSON answers, bodies, forms.

Also the one place that drops a connection without a response (the ``drop`` lost-response fault).
"""

from __future__ import annotations

import json
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


async def read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


def parse_form(body: bytes) -> dict[str, list[str]]:
    """A form-encoded body as ``{name: [values]}``; bytes that are not UTF-8 become U+FFFD, never an error."""
    form: dict[str, list[str]] = {}
    for key, value in parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True):
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

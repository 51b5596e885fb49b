"""The sandbox's HTTP protocol: uvicorn's httptools protocol plus a read deadline and a limit on the head.

uvicorn has no read timeout: a client that connects and sends nothing, dribbles its headers a byte at a time,
or promises a body it never sends holds the connection (and, for a body, the request's task) forever; and
llhttp accepts request heads of any size. So each request must arrive whole, head and body, within
``read_timeout`` seconds of its first byte (or of the connection, for the first request), and its head must
fit in ``max_head_bytes``. Otherwise the sandbox answers ``408`` or ``431`` itself and closes the connection
(and a request llhttp cannot parse gets uvicorn's ``400``, in JSON like every other answer).
Keep-alive idling between requests stays uvicorn's ``timeout_keep_alive``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

DEFAULT_READ_TIMEOUT = 10.0
DEFAULT_MAX_HEAD_BYTES = 64 * 1024
REASONS = {400: b"Bad Request", 408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


def raw_response(status: int, message: str) -> bytes:
    """A complete ``Connection: close`` answer, written before (or instead of) any route."""
    body = json.dumps({"message": message, "status": status}).encode()
    head = (
        f"HTTP/1.1 {status} ".encode()
        + REASONS[status]
        + b"\r\ncontent-type: application/json; charset=utf-8\r\n"
        + f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode()
    )
    return head + body


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a per-request read deadline and a limit on the request head."""

    read_timeout: float = DEFAULT_READ_TIMEOUT
    max_head_bytes: int = DEFAULT_MAX_HEAD_BYTES

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._in_head = False
        self._head_over = False
        self._head_bytes = 0  # of the current request's head, as parsed
        self._received_in_head = 0  # bytes received while its head was incomplete

    @classmethod
    def configured(cls, read_timeout: float, max_head_bytes: int) -> type[GuardedHttpToolsProtocol]:
        """A subclass with these limits (uvicorn instantiates the protocol class itself)."""
        return type(cls.__name__, (cls,), {"read_timeout": read_timeout, "max_head_bytes": max_head_bytes})

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.read_timeout, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _abort(self, status: int, message: str) -> None:
        self._disarm()
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            if cycle.response_started or self._in_head:
                # Mid-answer (this request's, or a pipelined earlier one's): an answer would corrupt it.
                self.transport.close()
                return
            # The app is waiting for this request's body: it must not write after us.
            cycle.disconnected = True
            cycle.message_event.set()
        self.transport.write(raw_response(status, message))
        self.transport.close()

    def _expired(self) -> None:
        self._deadline = None
        self._abort(408, f"the request did not arrive within {self.read_timeout:g} s")

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()  # a connection that never sends a request is closed too

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        # A head still incomplete after this chunk: count the chunk (a head that arrived whole within one
        # chunk was counted exactly by on_url/on_header).
        if self._in_head and not self.transport.is_closing():
            self._received_in_head += len(data)
            if self._received_in_head > self.max_head_bytes:
                self._abort(431, self._too_large)

    def _count(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > self.max_head_bytes:
            # Raised inside the parser: uvicorn answers a parser error with send_400_response, below.
            self._head_over = True
            raise ValueError(self._too_large)

    @property
    def _too_large(self) -> str:
        return f"the request head exceeds {self.max_head_bytes} bytes"

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request llhttp cannot parse (an unknown method, a bad header), as JSON."""
        if self._head_over:
            self._abort(431, self._too_large)
        else:
            self._abort(400, msg)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_bytes = self._received_in_head = 0
        self._arm()

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

"""One webhook POST over a kept-alive ``http.client`` connection per sender thread and host.

The callback senders use this rather than httpx: a message gets three or four callbacks, sent from the
process that serves the Messages API, and httpx's sync client took about twice the CPU per callback
(README.md, "Design notes"). Failures are classed as Twilio's retry policy classes them: ``ct`` (no
connection) or ``rt`` (no answer in time, or a broken one). It connects to the host
``urllib.parse.urlsplit`` reads, the same parser the allowlist checks.
"""

from __future__ import annotations

import http.client
import socket
import threading
from urllib.parse import quote, urlsplit

# Everything RFC 3986 allows in a request target stays as given; spaces, controls and non-ASCII are escaped.
TARGET_SAFE = "!#$%&'()*+,/:;=?@[]~"


class WebhookFailure(Exception):
    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind  # "ct" or "rt"


def request_target(url: str) -> tuple[str, str, int, str]:
    """``(scheme, host, port, path?query)`` of an http(s) URL without its fragment."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or (443 if scheme == "https" else 80)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return scheme, parts.hostname or "", port, quote(target, safe=TARGET_SAFE)


class WebhookClient:
    """Kept-alive connections, one set per thread (each callback sender is a single thread)."""

    def __init__(self) -> None:
        self._local = threading.local()

    def _connections(self) -> dict[tuple[str, str, int], http.client.HTTPConnection]:
        if not hasattr(self._local, "connections"):  # first use on this thread
            self._local.connections = {}
        connections: dict[tuple[str, str, int], http.client.HTTPConnection] = self._local.connections
        return connections

    def post(
        self, url: str, body: bytes, headers: dict[str, str], connect_timeout: float, read_timeout: float
    ) -> int:
        """POST ``body`` to ``url``; the answer's status. Raises WebhookFailure("ct" or "rt")."""
        scheme, host, port, target = request_target(url)
        key = (scheme, host, port)
        connections = self._connections()
        reused = key in connections
        try:
            connection = (
                connections.pop(key) if reused else self._connect(scheme, host, port, connect_timeout)
            )
        except OSError as exc:
            raise WebhookFailure("ct", repr(exc)) from None
        try:
            status = self._exchange(connection, target, body, headers, read_timeout)
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
            connection.close()
            if not reused:
                raise WebhookFailure("rt", repr(exc)) from None
            # The kept-alive connection had been closed by the receiver meanwhile: not a failed attempt.
            return self.post(url, body, headers, connect_timeout, read_timeout)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            connection.close()
            raise WebhookFailure("rt", repr(exc)) from None
        if connection.sock is not None:  # kept alive (closed if the answer said Connection: close)
            connections[key] = connection
        return status

    @staticmethod
    def _connect(scheme: str, host: str, port: int, timeout: float) -> http.client.HTTPConnection:
        kind = http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
        connection = kind(host, port, timeout=timeout)
        connection.connect()
        connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return connection

    @staticmethod
    def _exchange(
        connection: http.client.HTTPConnection,
        target: str,
        body: bytes,
        headers: dict[str, str],
        read_timeout: float,
    ) -> int:
        connection.sock.settimeout(read_timeout)
        connection.request("POST", target, body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        if response.will_close:
            connection.close()
        return response.status

"""The port check behind `make demo`: a port the previous run left in TIME-WAIT is free, a listener is not."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from scripts.airflow_stack import free_port, port_is_free

TIME_WAIT = "06"  # the st column of /proc/net/tcp


def _time_wait_on(port: int) -> bool:
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].split(":")[1], 16)
        if local_port == port and fields[3] == TIME_WAIT:
            return True
    return False


def _leave_time_wait(port: int) -> None:
    """Serve one connection on ``port`` and close it server side first, as uvicorn does at shutdown.

    The side that closes first keeps the connection in TIME-WAIT (60 s on Linux), bound to ``port``.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", port))
        server.listen()
        client = socket.create_connection(("127.0.0.1", port))
        conn, _ = server.accept()
        conn.close()
        time.sleep(0.1)  # the client sees the FIN before it closes, so the server side ends in TIME-WAIT
        client.close()
    deadline = time.monotonic() + 5
    while not _time_wait_on(port) and time.monotonic() < deadline:
        time.sleep(0.05)


def test_a_port_in_time_wait_is_free():
    port = free_port()
    _leave_time_wait(port)
    assert _time_wait_on(port), "precondition: the port must hold a TIME-WAIT connection"
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as plain:
        # Precondition: a bind without SO_REUSEADDR (the old check) fails here.
        try:
            plain.bind(("127.0.0.1", port))
            plain_bind_failed = False
        except OSError:
            plain_bind_failed = True
    assert plain_bind_failed, "precondition: a plain bind must fail while the port is in TIME-WAIT"
    assert port_is_free(port)
    # ... and a server can really listen there, which is what the check promises.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", port))
        server.listen()


def test_a_listening_port_is_busy():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert not port_is_free(port)


def test_a_listener_on_all_interfaces_makes_loopback_busy():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("0.0.0.0", 0))
        server.listen()
        assert not port_is_free(server.getsockname()[1])

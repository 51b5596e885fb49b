"""POST /twilio-messages/status-callback over real HTTP: signatures, idempotency, ordering, body limits."""

from __future__ import annotations

import logging
import socket
import time

import pytest

from tests.callbacks.conftest import RECEIVER_PATH, TOKEN, callback_form, message_sid, sign


def test_valid_signature_is_stored(receiver, stored):
    sid = message_sid(1)
    reply = receiver.post(callback_form(sid, "undelivered", ErrorCode="30003"))
    assert reply.status_code == 204, reply.text
    update = stored.get(sid)
    assert (update.status, update.error_code, update.account_sid) == ("undelivered", 30003, "AC" + "a" * 32)


@pytest.mark.parametrize(
    "how",
    [
        {"signature": None},
        {"signature": "bm90IGEgc2lnbmF0dXJl"},
        {"token": "another-accounts-token"},
        {"signed_url": "http://127.0.0.1:1/twilio-messages/status-callback"},
    ],
    ids=["missing", "invalid", "wrong-token", "wrong-url"],
)
def test_bad_signature_is_refused_and_nothing_stored(receiver, stored, caplog, how):
    sid = message_sid(2)
    with caplog.at_level(logging.DEBUG):
        reply = receiver.post(callback_form(sid, "delivered", To="+15550001111"), **how)
    assert reply.status_code == 403
    assert reply.content == b""
    assert stored.get(sid) is None
    logged = caplog.text
    assert "status callback" in logged
    assert sid not in logged and "+15550001111" not in logged and TOKEN not in logged


def test_changed_form_is_refused(receiver, stored):
    sid = message_sid(3)
    form = callback_form(sid, "sent")
    signature = sign(receiver.url, form)
    reply = receiver.post({**form, "MessageStatus": "delivered"}, signature=signature)
    assert reply.status_code == 403
    assert stored.get(sid) is None


def test_replay_with_the_same_token_changes_nothing(receiver, stored):
    sid = message_sid(4)
    assert receiver.post(callback_form(sid, "sent"), idempotency="retry-1").status_code == 204
    # A replay carrying the same idempotency token is acknowledged (Twilio stops retrying) and ignored,
    # even when an attacker changed what a captured request says (its signature is then still Twilio's).
    replay = receiver.post(callback_form(sid, "failed", ErrorCode="30008"), idempotency="retry-1")
    assert replay.status_code == 204
    assert stored.get(sid).status == "sent"
    assert receiver.post(callback_form(sid, "delivered"), idempotency="retry-2").status_code == 204
    assert stored.get(sid).status == "delivered"


def test_out_of_order_delivered_before_sent_ends_delivered(receiver, stored):
    sid = message_sid(5)
    for state in ("delivered", "sent", "queued", "sending", "undelivered"):
        assert receiver.post(callback_form(sid, state)).status_code == 204
    assert stored.get(sid).status == "delivered"


def test_duplicates_store_one_status(receiver, stored):
    sid = message_sid(6)
    for _ in range(5):
        assert receiver.post(callback_form(sid, "sent")).status_code == 204
    assert stored.get(sid).status == "sent"
    for _ in range(3):
        assert receiver.post(callback_form(sid, "failed", ErrorCode="30007")).status_code == 204
    assert receiver.post(callback_form(sid, "sent")).status_code == 204  # a late duplicate
    update = stored.get(sid)
    assert (update.status, update.error_code) == ("failed", 30007)


def test_public_url_setting_is_what_signs(receiver, stored, monkeypatch):
    """Behind a proxy the api-server sees another URL; the configured public one is what Twilio signed."""
    monkeypatch.setenv("TWILIO_CALLBACK_BASE_URL", "https://airflow.example.com/prefix")
    public = "https://airflow.example.com/prefix" + RECEIVER_PATH
    sid = message_sid(7)
    assert receiver.post(callback_form(sid, "sent")).status_code == 403  # signed for the URL seen
    assert stored.get(sid) is None
    assert receiver.post(callback_form(sid, "sent"), signed_url=public).status_code == 204
    assert stored.get(sid).status == "sent"


def test_not_a_status_callback_is_refused(receiver, stored):
    form = {"MessageSid": "not-a-sid", "MessageStatus": "delivered"}
    assert receiver.post(form).status_code == 400
    assert receiver.post(callback_form(message_sid(8), "Delivered!")).status_code == 400
    assert stored.get(message_sid(8)) is None


def _raw(port: int, head: bytes, body: bytes = b"", wait: float = 5.0) -> tuple[bytes, float]:
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        started = time.monotonic()
        sock.sendall(head + body)
        answer = sock.recv(4096)
        return answer, time.monotonic() - started


def test_declared_big_body_gets_413_before_it_is_sent(receiver):
    head = (
        f"POST {RECEIVER_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"X-Twilio-Signature: x\r\nContent-Length: {50 * 1024 * 1024}\r\n\r\n"
    ).encode()
    answer, elapsed = _raw(receiver.port, head)  # not one byte of the 50 MiB is sent
    assert answer.startswith(b"HTTP/1.1 413"), answer[:80]
    assert elapsed < 2.0


def test_chunked_body_over_the_limit_gets_413(receiver, monkeypatch):
    monkeypatch.setenv("TWILIO_CALLBACK_MAX_BODY", "1024")
    head = (
        f"POST {RECEIVER_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
        "X-Twilio-Signature: x\r\n\r\n"
    ).encode()
    chunk = b"a=" + b"b" * 2000
    body = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n0\r\n\r\n"
    answer, _ = _raw(receiver.port, head, body)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:80]


def test_store_down_answers_503(receiver, monkeypatch):
    monkeypatch.setenv("TWILIO_CALLBACK_STORE", "redis://127.0.0.1:1/0")
    reply = receiver.post(callback_form(message_sid(9), "delivered"))
    assert reply.status_code == 503

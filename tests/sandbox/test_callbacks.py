"""StatusCallback POSTs: Twilio's form, order, X-Twilio-Signature checked two independent ways."""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import pytest
from twilio.request_validator import RequestValidator

from tests.sandbox.conftest import GOOD_FROM, SLOW_NUMBER


def expected_signature(url: str, params: dict[str, list[str]], token: str) -> str:
    """Written from Twilio's documented algorithm, independently of the sandbox's implementation."""
    data = url + "".join(name + value for name in sorted(params) for value in sorted(params[name]))
    return base64.b64encode(hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()).decode()


class Receiver:
    """A threaded HTTP server on a free loopback port that records every POST."""

    def __init__(self) -> None:
        self.calls: list[dict] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length).decode()
                with outer.lock:
                    outer.calls.append(
                        {"path": self.path, "headers": dict(self.headers), "form": parse_qs(raw)}
                    )
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/twilio/status?run=1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.calls) >= count:
                    return list(self.calls)
            time.sleep(0.02)
        with self.lock:
            return list(self.calls)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def statuses(calls: list[dict], sid: str) -> list[str]:
    return [c["form"]["MessageStatus"][0] for c in calls if c["form"]["MessageSid"] == [sid]]


def test_every_status_change_after_the_first_is_posted_and_signed(api, receiver):
    message = api.send(to="+15551230000", StatusCallback=receiver.url)
    calls = receiver.wait_for(3)
    assert statuses(calls, message["sid"]) == ["sending", "sent", "delivered"]
    validator = RequestValidator(api.sb.auth_token)
    for call in calls:
        form = call["form"]
        assert call["path"] == "/twilio/status?run=1"
        assert call["headers"]["Content-Type"] == "application/x-www-form-urlencoded"
        assert call["headers"]["I-Twilio-Idempotency-Token"]
        signature = call["headers"]["X-Twilio-Signature"]
        assert signature == expected_signature(receiver.url, form, api.sb.auth_token)
        flat = {k: v[0] for k, v in form.items()}
        assert validator.validate(receiver.url, flat, signature)
        assert not validator.validate(receiver.url, {**flat, "MessageStatus": "failed"}, signature)
        status = flat["MessageStatus"]
        assert flat["SmsStatus"] == status and flat["SmsSid"] == flat["MessageSid"] == message["sid"]
        assert flat["AccountSid"] == api.sb.account_sid
        assert (flat["From"], flat["To"], flat["ApiVersion"]) == (GOOD_FROM, "+15551230000", "2010-04-01")
        assert "ErrorCode" not in flat
    assert "RawDlrDoneDate" in calls[-1]["form"]
    time.sleep(0.2)
    assert len(receiver.calls) == 3  # nothing for the initial status, nothing twice
    assert api.sb.stats()["callbacks"] == {"sent": 3, "failed": 0, "blocked": 0}


@pytest.mark.parametrize(
    ("to", "final", "code"), [("+15551233005", "undelivered", "30005"), ("+15551233008", "failed", "30008")]
)
def test_failures_carry_the_error_code(api, receiver, to, final, code):
    sid = api.send(to=to, StatusCallback=receiver.url)["sid"]
    expected = ["sending", "sent", "undelivered"] if final == "undelivered" else ["sending", "failed"]
    calls = receiver.wait_for(len(expected))
    assert statuses(calls, sid) == expected
    assert calls[-1]["form"]["ErrorCode"] == [code]
    assert all("ErrorCode" not in c["form"] for c in calls[:-1])


def test_messaging_service_callbacks_name_the_service(api, receiver):
    service = "MG" + "ef" * 16
    sid = api.send(From=None, MessagingServiceSid=service, StatusCallback=receiver.url)["sid"]
    calls = receiver.wait_for(4)
    assert statuses(calls, sid) == ["queued", "sending", "sent", "delivered"]
    assert all(c["form"]["MessagingServiceSid"] == [service] for c in calls)


def test_callbacks_are_signed_with_the_configured_token(receiver):
    from sandbox.testing import run_sandbox
    from tests.sandbox.conftest import Api

    with run_sandbox("--step-delay", "0", auth_token="tok-123") as sb:
        client = Api(sb)
        try:
            client.send(StatusCallback=receiver.url)
            calls = receiver.wait_for(3)
        finally:
            client.close()
    assert len(calls) == 3
    for call in calls:
        signature = call["headers"]["X-Twilio-Signature"]
        assert signature == expected_signature(receiver.url, call["form"], "tok-123")
        assert signature != expected_signature(receiver.url, call["form"], "sandbox-auth-token")


def test_cancel_posts_canceled_and_nothing_after(slow_api, receiver):
    sid = slow_api.send(to=SLOW_NUMBER, StatusCallback=receiver.url)["sid"]
    assert slow_api.update(sid, Status="canceled").status_code == 200
    calls = receiver.wait_for(1)
    assert statuses(calls, sid) == ["canceled"]
    time.sleep(0.3)
    assert len(receiver.calls) == 1


def test_an_unreachable_callback_url_never_harms_the_server(api, receiver):
    receiver.close()  # nothing listens there any more
    sid = api.send(StatusCallback=receiver.url)["sid"]
    deadline = time.monotonic() + 10
    while api.sb.stats()["callbacks"]["failed"] < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert api.sb.stats()["callbacks"] == {"sent": 0, "failed": 3, "blocked": 0}
    assert api.get(sid)["status"] == "delivered"
    assert api.sb.health() == {"status": "ok"}


def test_a_non_loopback_callback_is_never_attempted(api):
    """The default allowlist is loopback: a fuzzer's or a user's https://example.com is not called."""
    sid = api.send(StatusCallback="https://example.com/status")["sid"]
    # Refused at creation, before any timer fires: nothing is scheduled for that host.
    assert api.sb.stats()["callbacks"] == {"sent": 0, "failed": 0, "blocked": 1}
    assert api.get(sid)["status"] == "delivered"  # the message itself is unaffected
    time.sleep(0.3)
    # An attempt would have ended as "failed" (no route out of this machine): there was none.
    assert api.sb.stats()["callbacks"] == {"sent": 0, "failed": 0, "blocked": 1}
    assert "https://example.com/status is not an allowed host" in api.sb.log()


def test_the_allowlist_rules():
    from sandbox.callbacks import CallbackAllowlist

    default = CallbackAllowlist()
    for url in ("http://127.0.0.1:9/x", "http://127.0.0.5/x", "http://[::1]:8080/x", "http://localhost/x"):
        assert default.allows(url), url
    for url in (
        "https://example.com",
        "http://10.0.0.1/x",
        "http://[::1",
        "not a url",
        "http://hooks.internal",
    ):
        assert not default.allows(url), url
    extended = CallbackAllowlist(("hooks.internal",))
    assert extended.allows("http://hooks.internal:8080/cb") and not extended.allows("https://example.com")
    assert extended.describe() == "loopback, hooks.internal"
    assert CallbackAllowlist(("*",)).allows("https://example.com")

"""StatusCallback POSTs: Twilio's form, order, X-Twilio-Signature checked two independent ways."""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import httpx
import pytest
from twilio.request_validator import RequestValidator

from tests.sandbox.conftest import GOOD_FROM, SLOW_NUMBER


def expected_signature(url: str, params: dict[str, list[str]], token: str) -> str:
    """Written from Twilio's documented algorithm, independently of the sandbox's implementation."""
    data = url + "".join(name + value for name in sorted(params) for value in sorted(params[name]))
    return base64.b64encode(hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()).decode()


Plan = Callable[[int], tuple[int, float]]


class Receiver:
    """A threaded HTTP server on a free loopback port that records every POST.

    ``plan(n)`` gives the status and the seconds to wait before answering the n-th POST (0-based).
    """

    def __init__(self, plan: Plan | None = None) -> None:
        self.calls: list[dict] = []
        self.lock = threading.Lock()
        self.plan: Plan = plan or (lambda n: (200, 0.0))
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length).decode()
                with outer.lock:
                    index = len(outer.calls)
                    outer.calls.append(
                        {
                            "path": self.path,
                            "headers": dict(self.headers),
                            "form": parse_qs(raw),
                            "at": time.monotonic(),
                        }
                    )
                status, wait = outer.plan(index)
                time.sleep(wait)
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the sandbox gave up waiting (its read timeout)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
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


def callback_counts(sb, **expected: int) -> dict[str, int]:
    """The callback counters: ``expected`` ones as given, every other one 0."""
    counts = sb.stats()["callbacks"]
    assert counts == {kind: expected.get(kind, 0) for kind in counts}, counts
    return counts


def wait_settled(sb, timeout: float = 10.0) -> dict:
    """``GET /_sandbox/callbacks`` once nothing is pending any more."""
    deadline = time.monotonic() + timeout
    while True:
        snapshot = sb.callbacks()
        if snapshot["pending"] == 0 or time.monotonic() > deadline:
            return snapshot
        time.sleep(0.05)


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
    callback_counts(api.sb, sent=3)
    tokens = [c["headers"]["I-Twilio-Idempotency-Token"] for c in calls]
    assert len(set(tokens)) == 3  # one per callback


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
    # Connection refused is a "ct" failure: retried once, Twilio's default (#rc=1, rp=ct,rt).
    callback_counts(api.sb, failed=3, retried=3)
    assert api.get(sid)["status"] == "delivered"
    assert api.sb.health() == {"status": "ok"}


def test_a_non_loopback_callback_is_never_attempted(api):
    """The default allowlist is loopback: a fuzzer's or a user's https://example.com is not called."""
    sid = api.send(StatusCallback="https://example.com/status")["sid"]
    # Refused at creation, before any timer fires: nothing is scheduled for that host.
    callback_counts(api.sb, blocked=1)
    assert api.get(sid)["status"] == "delivered"  # the message itself is unaffected
    time.sleep(0.3)
    # An attempt would have ended as "failed" (no route out of this machine): there was none.
    callback_counts(api.sb, blocked=1)
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


def test_the_sender_connects_to_the_host_the_allowlist_checked():
    """URL parsers disagree on some URLs' host: the sender connects where the allowlist looked."""
    from sandbox.callbacks import CallbackAllowlist
    from sandbox.webhook import request_target

    default = CallbackAllowlist()
    for host in ("127.0.0.1", "[::1]", "LOCALHOST."):
        assert default.allows_host(host), host
    assert not default.allows_host("example.com") and not default.allows_host("")
    for url in (
        "http://example.com\\@127.0.0.1/cb",
        "http://127.0.0.1@example.com/cb",
        "http://[::1]:8/a b?x=é",
    ):
        assert default.allows(url) == default.allows_host(request_target(url)[1]), url
    assert request_target("http://[::1]:8/a b?x=é") == ("http", "::1", 8, "/a%20b?x=%C3%A9")
    assert request_target("https://h/") == ("https", "h", 443, "/")


# ---- Twilio's retries: connection overrides and the idempotency token -------------------------------------


def test_a_retry_carries_the_same_token_and_the_fragment_is_neither_sent_nor_signed(api):
    """``#rc=2&rp=5xx``: 500, 500, then 200 is three attempts of one callback, with one token."""
    answers = {0: 500, 1: 500}
    with_retries = Receiver(lambda n: (answers.get(n, 200), 0.0))
    try:
        url = with_retries.url + "#rc=2&rp=5xx"
        sid = api.send(to="+15551233008", StatusCallback=url)["sid"]  # sending, failed: two callbacks
        calls = with_retries.wait_for(4)
        snapshot = wait_settled(api.sb)
    finally:
        with_retries.close()
    assert statuses(calls, sid) == ["sending", "sending", "sending", "failed"]
    first = [c["headers"]["I-Twilio-Idempotency-Token"] for c in calls[:3]]
    assert len(set(first)) == 1 and calls[3]["headers"]["I-Twilio-Idempotency-Token"] != first[0]
    validator = RequestValidator(api.sb.auth_token)
    for call in calls:
        assert call["path"] == "/twilio/status?run=1"  # no fragment on the wire
        flat = {k: v[0] for k, v in call["form"].items()}
        # Signed over the URL the receiver sees, without the fragment.
        assert validator.validate(with_retries.url, flat, call["headers"]["X-Twilio-Signature"])
    callback_counts(api.sb, sent=2, retried=2)
    attempts = [(d["status"], d["attempts"], d["outcome"], d["answer"]) for d in snapshot["deliveries"]]
    assert attempts == [("sending", 3, "sent", 200), ("failed", 1, "sent", 200)]


def test_by_default_a_5xx_is_not_retried(api):
    """Twilio's default retry policy is ``ct,rt`` (connection failures), so a 500 answer is final."""
    failing = Receiver(lambda n: (500, 0.0))
    try:
        api.send(StatusCallback=failing.url)
        assert len(failing.wait_for(3)) == 3
        wait_settled(api.sb)
    finally:
        failing.close()
    assert len(failing.calls) == 3
    callback_counts(api.sb, failed=3)


def test_rc_0_never_retries_and_rc_is_capped_at_5(api, receiver):
    receiver.close()  # connection refused from now on
    api.send(StatusCallback=receiver.url + "#rc=0")
    api.send(StatusCallback=receiver.url + "#rc=99")  # clamped to Twilio's maximum, 5
    wait_settled(api.sb)
    callback_counts(api.sb, failed=6, retried=3 * 5)


def test_a_slow_receiver_is_given_up_on_after_rt(api):
    """``#rt=300``: no answer within 300 ms is a read timeout, retried once by default (rc=1)."""
    slow = Receiver(lambda n: (200, 2.0))
    try:
        started = time.monotonic()
        api.send(to="+15551233008", StatusCallback=slow.url + "#rt=300")
        snapshot = wait_settled(api.sb)
        elapsed = time.monotonic() - started
    finally:
        slow.close()
    assert [(d["attempts"], d["outcome"]) for d in snapshot["deliveries"]] == [(2, "failed"), (2, "failed")]
    assert elapsed < 4.0  # two callbacks x two attempts x 0.3 s, not x 2 s
    callback_counts(api.sb, failed=2, retried=2)


def test_the_overrides_are_read_as_twilio_documents_them():
    from sandbox.callbacks import DEFAULT_RETRY_POLICY, RETRY_POLICIES, Overrides

    default = Overrides.parse("")
    assert (default.connect_timeout, default.read_timeout, default.total_time) == (5.0, 15.0, 15.0)
    assert default.retry_count == 1 and default.retry_policy == DEFAULT_RETRY_POLICY
    custom = Overrides.parse("ct=100&rt=20000&tt=50&rc=3&rp=4xx,5xx&e=dublin&sni=y")
    assert (custom.connect_timeout, custom.read_timeout, custom.total_time) == (0.1, 15.0, 0.1)
    assert custom.retry_count == 3 and custom.retry_policy == {"4xx", "5xx"}
    assert Overrides.parse("rp=all").retry_policy == RETRY_POLICIES
    # Values it cannot read keep the default: ASCII digits only.
    for junk in ("rc=%D9%A3", "rc=-1", "rc=1_0", "rc= 2", "rp=bogus", "rc", "=&&=="):
        parsed = Overrides.parse(junk)
        assert parsed.retry_count == 1 and parsed.retry_policy == DEFAULT_RETRY_POLICY, junk


# ---- callback faults -------------------------------------------------------------------------------------


def test_duplicated_callbacks_repeat_the_token(api, receiver):
    api.sb.set_faults(rate_callback_duplicate=1.0)
    sid = api.send(StatusCallback=receiver.url)["sid"]
    calls = receiver.wait_for(6)
    assert statuses(calls, sid) == ["sending", "sending", "sent", "sent", "delivered", "delivered"]
    tokens = [c["headers"]["I-Twilio-Idempotency-Token"] for c in calls]
    assert tokens[0] == tokens[1] and tokens[2] == tokens[3] and tokens[4] == tokens[5]
    assert len(set(tokens)) == 3
    callback_counts(api.sb, sent=6, duplicated=3)


def test_dropped_callbacks_are_never_sent(api, receiver):
    api.sb.set_faults(rate_callback_drop=1.0)
    sid = api.send(StatusCallback=receiver.url)["sid"]
    snapshot = wait_settled(api.sb)
    time.sleep(0.2)
    assert receiver.calls == []
    assert [(d["sid"], d["outcome"], d["attempts"]) for d in snapshot["deliveries"]] == [
        (sid, "dropped", 0)
    ] * 3
    callback_counts(api.sb, dropped=3)
    assert api.get(sid)["status"] == "delivered"  # polling still finds the truth


def test_reordered_callbacks_deliver_the_terminal_status_first(api, receiver):
    """Each callback held back until the next one went: the last status overtakes the others."""
    api.sb.set_faults(rate_callback_reorder=1.0)
    sid = api.send(StatusCallback=receiver.url)["sid"]
    calls = receiver.wait_for(3)
    assert statuses(calls, sid) == ["delivered", "sending", "sent"]
    callback_counts(api.sb, sent=3, reordered=2)


def test_delayed_callbacks_arrive_late(api, receiver):
    api.sb.set_faults(callback_delay_ms=600)
    created = time.monotonic()
    api.send(StatusCallback=receiver.url)
    calls = receiver.wait_for(3)
    assert len(calls) == 3
    assert min(c["at"] for c in calls) - created >= 0.6
    assert api.sb.faults()["callback_delay_ms"] == 600


def test_callback_faults_are_validated(api):
    for bad in ({"rate_callback_drop": 2}, {"callback_delay_ms": -1}, {"callback_delay_ms": 10**9}):
        response = httpx.put(f"{api.sb.base_url}/_sandbox/faults", json=bad, trust_env=False)
        assert response.status_code == 400, bad
        assert next(iter(bad)) in response.json()["error"]

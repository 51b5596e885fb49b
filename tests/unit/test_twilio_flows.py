"""Retry decisions and duplicate-safe create, driven through the pure flows with scripted replies (no I/O)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from twilio_messaging import flows
from twilio_messaging.errors import TwilioAPIError, TwilioUnreachableError
from twilio_messaging.retry import RetryPolicy
from twilio_messaging.validation import validate_message

ACCOUNT = "AC0123456789abcdef0123456789abcdef"
BASE = "http://twilio.test"
NOW = datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC)
REQUEST = validate_message("+15551234567", "+15005550006", "hello")


class Script:
    """Answers each Call with the next scripted reply; Sleep advances a fake clock."""

    def __init__(self, *replies: Any) -> None:
        self.replies = list(replies)
        self.calls: list[flows.Call] = []
        self.sleeps: list[float] = []
        self.clock = 0.0

    def context(self, **overrides: Any) -> flows.FlowContext:
        return flows.FlowContext(
            base_url=BASE,
            account_sid=ACCOUNT,
            monotonic=lambda: self.clock,
            now=lambda: NOW,
            rng=random.Random(7),
            **overrides,
        )

    def run(self, flow: flows.Flow[Any]) -> Any:
        reply = None
        while True:
            try:
                step = flow.send(reply)
            except StopIteration as done:
                return done.value
            if isinstance(step, flows.Sleep):
                self.sleeps.append(step.seconds)
                self.clock += step.seconds
                reply = None
                continue
            self.calls.append(step)
            assert self.replies, f"unexpected call {step}"
            reply = self.replies.pop(0)
            if callable(reply):
                reply = reply(step)

    @property
    def kinds(self) -> list[str]:
        return [
            "POST" if c.method == "POST" else ("LIST" if c.url.endswith("Messages.json") else "GET")
            for c in self.calls
        ]


def message(sid: str = "SM" + "1" * 32, created: datetime = NOW, **fields: Any) -> dict[str, Any]:
    return {
        "sid": sid,
        "status": "queued",
        "to": "+15551234567",
        "from": "+15005550006",
        "body": "hello",
        "num_media": "0",
        "direction": "outbound-api",
        "date_created": format_datetime(created, usegmt=True),
        **fields,
    }


def created(**fields: Any) -> httpx.Response:
    return httpx.Response(201, json=message(**fields))


def error(status: int, code: int | None = None, text: str = "boom", **headers: str) -> httpx.Response:
    body = {
        "code": code,
        "message": text,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return httpx.Response(status, json=body if code else {}, headers=headers)


def page(*messages: dict[str, Any], next_page_uri: str | None = None) -> httpx.Response:
    return httpx.Response(200, json={"messages": list(messages), "next_page_uri": next_page_uri})


def connect_error(call: flows.Call) -> httpx.ConnectError:
    return httpx.ConnectError("[Errno 111] Connection refused")


def read_timeout(call: flows.Call) -> httpx.ReadTimeout:
    return httpx.ReadTimeout("timed out")


def create(script: Script, sent_since: datetime | None = None, **ctx: Any) -> dict[str, Any]:
    return script.run(flows.create_message_flow(script.context(**ctx), REQUEST, sent_since))


def test_201_sends_once_with_the_form():
    script = Script(created())
    assert create(script)["sid"] == "SM" + "1" * 32
    [call] = script.calls
    assert call.method == "POST"
    assert call.url == f"/2010-04-01/Accounts/{ACCOUNT}/Messages.json"
    assert call.data == {"To": "+15551234567", "From": "+15005550006", "Body": "hello"}
    assert script.sleeps == []


def test_429_honours_retry_after_and_resends_without_lookup():
    script = Script(error(429, 20429, "Too Many Requests", **{"Retry-After": "7"}), created())
    create(script)
    assert script.kinds == ["POST", "POST"]
    assert script.sleeps == [7.0]


def test_429_without_retry_after_backs_off_exponentially():
    script = Script(error(429, 20429), error(429, 20429), error(429, 20429), created())
    create(script)
    assert script.kinds == ["POST"] * 4
    first, second, third = script.sleeps
    assert 0.5 <= first <= 1.0 and 1.0 <= second <= 2.0 and 2.0 <= third <= 4.0


def test_connect_error_is_retried_without_lookup():
    script = Script(connect_error, connect_error, created())
    create(script)
    assert script.kinds == ["POST", "POST", "POST"]


@pytest.mark.parametrize(
    "ambiguous",
    [
        error(500, None),
        error(503, None),
        read_timeout,
        lambda call: httpx.RemoteProtocolError("Server disconnected without sending a response."),
        lambda call: httpx.ReadError("connection reset"),
    ],
    ids=["500", "503", "read-timeout", "dropped", "read-error"],
)
def test_ambiguous_failure_adopts_the_created_message(ambiguous):
    script = Script(ambiguous, page(message(sid="SM" + "2" * 32)))
    result = create(script)
    assert result["sid"] == "SM" + "2" * 32
    assert script.kinds == ["POST", "LIST"]  # looked up, never sent again
    lookup = script.calls[1]
    assert ("To", "+15551234567") in lookup.params and ("From", "+15005550006") in lookup.params
    # Day granularity on Twilio's side: the cutoff's date, the exact time is compared locally.
    assert ("DateSent>", (NOW - timedelta(seconds=60)).date().isoformat()) in lookup.params


def test_ambiguous_failure_resends_when_nothing_was_created():
    older = message(sid="SM" + "3" * 32, created=NOW - timedelta(hours=2))  # same day, same text, earlier
    other_body = message(sid="SM" + "4" * 32, body="another text")
    script = Script(read_timeout, page(other_body, older), created(sid="SM" + "5" * 32))
    assert create(script)["sid"] == "SM" + "5" * 32
    assert script.kinds == ["POST", "LIST", "POST"]


def test_lookup_failure_never_leads_to_a_blind_resend():
    policy = RetryPolicy(max_attempts=4)
    script = Script(read_timeout, connect_error, connect_error, connect_error, connect_error)
    with pytest.raises(TwilioUnreachableError, match="may have been created"):
        create(script, policy=policy)
    assert script.kinds.count("POST") == 1


def test_sent_since_looks_before_the_first_send():
    earlier = NOW - timedelta(minutes=5)
    script = Script(page(message(created=earlier + timedelta(seconds=3))))
    create(script, sent_since=earlier)
    assert script.kinds == ["LIST"]


def test_4xx_is_final():
    script = Script(error(400, 21211, "The 'To' number +15005550001 is not a valid phone number."))
    with pytest.raises(TwilioAPIError) as info:
        create(script)
    assert script.kinds == ["POST"]
    assert info.value.status_code == 400 and info.value.code == 21211
    assert str(info.value) == (
        "Twilio error 21211: The 'To' number +15005550001 is not a valid phone number. "
        "(https://www.twilio.com/docs/errors/21211)"
    )


def test_401_points_at_the_connection():
    body = {
        "code": 20003,
        "detail": "Your AccountSid or AuthToken was incorrect.",
        "message": "Authenticate",
        "more_info": "https://www.twilio.com/docs/errors/20003",
        "status": 401,
    }
    script = Script(httpx.Response(401, json=body))
    with pytest.raises(TwilioAPIError, match="login and password of the Airflow connection 'twilio_default'"):
        create(script)


def test_unreachable_after_the_budget():
    script = Script(*[connect_error] * 6)
    with pytest.raises(TwilioUnreachableError) as info:
        create(script, policy=RetryPolicy(max_attempts=6, max_elapsed=600))
    text = str(info.value)
    assert text.startswith(f"Twilio API at {BASE} was unreachable after 6 attempts over ")
    assert text.endswith("s: ConnectError: [Errno 111] Connection refused")
    assert len(script.sleeps) == 5


def test_elapsed_budget_stops_before_a_long_retry_after():
    script = Script(error(429, 20429, **{"Retry-After": "3600"}))
    with pytest.raises(TwilioUnreachableError, match="HTTP 429"):
        create(script, policy=RetryPolicy(max_elapsed=120))
    assert script.sleeps == []


def test_fetch_retries_5xx_and_429_but_not_404():
    script = Script(error(503), error(429, 20429), httpx.Response(200, json=message(status="delivered")))
    ctx = script.context()
    assert script.run(flows.fetch_message_flow(ctx, "SM" + "1" * 32))["status"] == "delivered"
    script = Script(error(404, 20404, "not found"))
    with pytest.raises(TwilioAPIError, match="20404"):
        script.run(flows.fetch_message_flow(script.context(), "SM" + "9" * 32))


def test_list_follows_next_page_uri():
    second = f"/2010-04-01/Accounts/{ACCOUNT}/Messages.json?PageSize=1&Page=1&PageToken=PAx"
    script = Script(page(message(sid="SMa"), next_page_uri=second), page(message(sid="SMb")))
    found = script.run(flows.list_messages_flow(script.context(), [("PageSize", "1")]))
    assert [m["sid"] for m in found] == ["SMa", "SMb"]
    assert script.calls[1].url == second and script.calls[1].params is None

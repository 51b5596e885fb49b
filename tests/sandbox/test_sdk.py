"""The official twilio-python SDK, pointed at the sandbox, works unchanged."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client


@pytest.fixture
def client(clean_sandbox) -> Client:
    c = Client(
        clean_sandbox.account_sid,
        clean_sandbox.auth_token,
        environment={},  # TWILIO_EDGE/REGION would rewrite the loopback host
        http_client=TwilioHttpClient(timeout=10),
    )
    c.api.base_url = clean_sandbox.base_url
    return c


def test_create_fetch_list_and_page(client, clean_sandbox):
    created = client.messages.create(to="+15551230000", from_="+15005550006", body="hello from the SDK")
    assert created.sid.startswith("SM") and created.status == "queued"
    assert created.date_created is not None  # parsed from RFC 2822
    fetched = client.messages(created.sid).fetch()
    assert fetched.status == "delivered" and fetched.date_sent is not None
    assert fetched.num_segments == "1" and fetched.error_code is None

    more = [
        client.messages.create(to="+15551230000", from_="+15005550006", body=f"n{i}").sid for i in range(4)
    ]
    listed = client.messages.list(to="+15551230000", page_size=2)  # follows next_page_uri over three pages
    assert [m.sid for m in listed] == [*more[::-1], created.sid]
    assert clean_sandbox.stats()["requests"]["list"] == 3
    page = client.messages.page(page_size=2)
    assert [m.sid for m in page] == [more[3], more[2]]
    second = page.next_page()
    assert [m.sid for m in second] == [more[1], more[0]]
    limited = client.messages.list(limit=3)
    assert len(limited) == 3
    hour = timedelta(hours=1)
    now = datetime.now(UTC)
    assert len(client.messages.list(date_sent_after=now - hour, date_sent_before=now + hour)) == 5
    assert client.messages.list(date_sent_after=now + hour) == []
    assert len(client.messages.list(date_sent=now.date())) == 5


def test_errors_raise_twilio_rest_exception_with_twilio_codes(client, clean_sandbox):
    with pytest.raises(TwilioRestException) as bad_to:
        client.messages.create(to="+15005550001", from_="+15005550006", body="x")
    assert (bad_to.value.status, bad_to.value.code) == (400, 21211)
    assert "is not a valid phone number" in bad_to.value.msg
    with pytest.raises(TwilioRestException) as queue_full:
        client.messages.create(to="+15551230000", from_="+15005550008", body="x")
    assert (queue_full.value.status, queue_full.value.code) == (429, 21611)
    with pytest.raises(TwilioRestException) as missing:
        client.messages("SM" + "0" * 32).fetch()
    assert (missing.value.status, missing.value.code) == (404, 20404)
    clean_sandbox.set_faults(rate_429=1.0)
    with pytest.raises(TwilioRestException) as limited:
        client.messages.create(to="+15551230000", from_="+15005550006", body="x")
    assert (limited.value.status, limited.value.code) == (429, 20429)


def test_wrong_token_raises_20003(clean_sandbox):
    c = Client(clean_sandbox.account_sid, "wrong", environment={}, http_client=TwilioHttpClient(timeout=10))
    c.api.base_url = clean_sandbox.base_url
    with pytest.raises(TwilioRestException) as auth:
        c.messages.create(to="+15551230000", from_="+15005550006", body="x")
    assert (auth.value.status, auth.value.code) == (401, 20003)


def test_cancel_and_redact_through_the_sdk(client):
    sid = client.messages.create(to="+15551230000", from_="+15005550006", body="secret").sid
    assert client.messages(sid).update(body="").body == ""
    with pytest.raises(TwilioRestException) as late:
        client.messages(sid).update(status="canceled")
    assert late.value.code == 30409
    assert client.messages(sid).delete() is True


def sdk_client(sb) -> Client:
    c = Client(sb.account_sid, sb.auth_token, environment={}, http_client=TwilioHttpClient(timeout=10))
    c.api.base_url = sb.base_url
    return c


def test_a_scheduled_message_through_the_sdk(client):
    service = "MG0123456789abcdef0123456789abcdef"
    when = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=2)
    created = client.messages.create(
        to="+15551230000", messaging_service_sid=service, body="later", schedule_type="fixed", send_at=when
    )
    assert created.status == "scheduled" and created.date_sent is None
    assert client.messages(created.sid).fetch().status == "scheduled"
    assert client.messages(created.sid).update(status="canceled").status == "canceled"
    with pytest.raises(TwilioRestException) as too_soon:
        client.messages.create(
            to="+15551230000",
            messaging_service_sid=service,
            body="now",
            schedule_type="fixed",
            send_at=datetime.now(UTC) + timedelta(seconds=30),
        )
    assert (too_soon.value.status, too_soon.value.code) == (400, 35114)
    with pytest.raises(TwilioRestException) as no_service:
        client.messages.create(
            to="+15551230000", from_="+15005550006", body="x", schedule_type="fixed", send_at=when
        )
    assert no_service.value.code == 35118


def test_a_scheduled_message_is_delivered_at_send_at_through_the_sdk():
    from sandbox.testing import run_sandbox

    with run_sandbox("--step-delay", "0", "--time-scale", "600") as sb:
        c = sdk_client(sb)
        when = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=7)  # 0.7 s at x600
        sid = c.messages.create(
            to="+15551230000",
            messaging_service_sid="MG0123456789abcdef0123456789abcdef",
            body="later",
            schedule_type="fixed",
            send_at=when,
        ).sid
        assert c.messages(sid).fetch().status == "scheduled"
        deadline = time.monotonic() + 15
        while (message := c.messages(sid).fetch()).status != "delivered" and time.monotonic() < deadline:
            time.sleep(0.1)
    assert message.status == "delivered"
    assert abs((message.date_sent - when).total_seconds()) <= 1

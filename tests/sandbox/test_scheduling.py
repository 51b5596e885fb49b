"""Scheduled messages: ScheduleType=fixed + SendAt with a Messaging Service, on a compressed clock.

The sandbox runs at --time-scale 600 (ten sandbox minutes per second), so a SendAt six minutes ahead,
just past Twilio's five-minute minimum, comes due after about 0.6 s.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

import pytest

from sandbox.testing import Sandbox, run_sandbox
from tests.sandbox.conftest import Api, assert_error, assert_message

SERVICE = "MG0123456789abcdef0123456789abcdef"
TO = "+15551234567"
SCALE = 600


def send_at(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture(scope="module")
def fast_clock() -> Iterator[Sandbox]:
    with run_sandbox("--step-delay", "1", "--time-scale", str(SCALE)) as sb:
        yield sb


@pytest.fixture
def sapi(fast_clock: Sandbox) -> Iterator[Api]:
    fast_clock.reset()
    client = Api(fast_clock)
    yield client
    client.close()


def schedule(api: Api, seconds: float, **form: str) -> dict:
    form = {"MessagingServiceSid": SERVICE, "ScheduleType": "fixed", "SendAt": send_at(seconds), **form}
    form.setdefault("From", None)
    return api.send(TO, **form)


def wait_for(api: Api, sid: str, status: str, timeout: float = 15.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        message = api.get(sid)
        if message["status"] == status or time.monotonic() > deadline:
            return message
        time.sleep(0.05)


def test_scheduled_then_queued_at_send_at_then_delivered(sapi: Api) -> None:
    when = send_at(420)
    created = schedule(sapi, 420, SendAt=when)
    assert created["status"] == "scheduled" and created["date_sent"] is None
    assert created["messaging_service_sid"] == SERVICE
    assert sapi.get(created["sid"])["status"] == "scheduled"  # 420 sandbox s = 0.7 s: not yet due
    seen = []
    deadline = time.monotonic() + 15
    while not seen or seen[-1] != "delivered":
        assert time.monotonic() < deadline, seen
        status = sapi.get(created["sid"])["status"]
        if not seen or seen[-1] != status:
            seen.append(status)
        time.sleep(0.002)
    # Each step takes 1 sandbox second (1/600 s) after SendAt, so the poll may skip some; never out of order.
    order = ["scheduled", "queued", "sending", "sent", "delivered"]
    assert seen[0] == "scheduled" and seen == sorted(seen, key=order.index)
    delivered = sapi.get(created["sid"])
    sent = parsedate_to_datetime(delivered["date_sent"])
    assert abs((sent - datetime.fromisoformat(when)).total_seconds()) <= 2  # sent at SendAt, +1 s step


def test_cancel_while_scheduled(sapi: Api) -> None:
    sid = schedule(sapi, 3600)["sid"]  # due in 6 s
    canceled = sapi.update(sid, Status="canceled")
    assert canceled.status_code == 200, canceled.text
    assert assert_message(canceled.json())["status"] == "canceled"
    time.sleep(0.2)
    assert sapi.get(sid)["status"] == "canceled"
    assert_error(sapi.update(sid, Status="canceled"), 400, 30409)


def test_a_message_past_scheduled_cannot_be_canceled(sapi: Api) -> None:
    sid = schedule(sapi, 301)["sid"]
    assert wait_for(sapi, sid, "delivered")["status"] == "delivered"
    assert_error(sapi.update(sid, Status="canceled"), 400, 30409)


def test_scheduling_validation_codes(sapi: Api) -> None:
    base = {"To": TO, "Body": "x", "MessagingServiceSid": SERVICE, "From": None}
    from_only = {"MessagingServiceSid": None, "From": "+15005550006"}
    cases = [
        ({"ScheduleType": "bogus", "SendAt": send_at(3600)}, 35126),
        ({"ScheduleType": "fixed"}, 35111),
        ({"ScheduleType": "fixed", "SendAt": "notadate"}, 35114),
        ({"SendAt": "notadate"}, 35114),
        ({"ScheduleType": "fixed", "SendAt": send_at(3600), **from_only}, 35118),
        ({"ScheduleType": "fixed", "SendAt": send_at(120)}, 35114),  # under 300 s ahead
        ({"ScheduleType": "fixed", "SendAt": send_at(-60)}, 35114),  # in the past
        ({"ScheduleType": "fixed", "SendAt": send_at(36 * 24 * 3600)}, 35114),  # over 35 days
        ({"ScheduleType": "fixed", "SendAt": "2026-12-02T10:00:00"}, 35114),  # no offset: not UTC
    ]  # fmt: skip
    for extra, code in cases:
        assert_error(sapi.create(**{**base, **extra}), 400, code)
    for value in ("abc", "0", "36001", "-5", "1.5"):
        assert_error(sapi.create(**{**base, "ValidityPeriod": value}), 400, 21624)
    for value in ("1", "36000"):
        assert sapi.create(**{**base, "ValidityPeriod": value}).status_code == 201
    # The edges of the window: 35 days exactly is allowed.
    assert schedule(sapi, 35 * 24 * 3600 - 5)["status"] == "scheduled"
    assert sapi.sb.stats()["requests"]["invalid"] == len(cases) + 5

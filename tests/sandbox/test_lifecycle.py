"""The delivery simulation: the outcome table, time-driven progress, slow and receipt-less numbers, cancel."""

from __future__ import annotations

import random
import time
from email.utils import parsedate_to_datetime

import pytest

from sandbox.lifecycle import DELIVERED, ERROR_MESSAGES, PROFILES, build_timeline
from tests.sandbox.conftest import SLOW_NUMBER, SLOW_STEP, assert_error


@pytest.mark.parametrize(
    ("to", "status", "error_code"),
    [
        ("+15551233003", "undelivered", 30003),
        ("+15551233005", "undelivered", 30005),
        ("+15551233006", "undelivered", 30006),
        ("+15551233008", "failed", 30008),
        ("+15551237777", "sent", None),
        ("+15551234444", "delivered", None),
        ("+15551230000", "delivered", None),
        ("+447700900123", "delivered", None),
    ],
)
def test_outcome_table_with_zero_step_delay(api, to, status, error_code):
    created = api.send(to=to)
    assert created["status"] == "queued"  # the create response always shows the initial status
    fetched = api.get(created["sid"])
    assert fetched["status"] == status
    assert fetched["error_code"] == error_code
    assert fetched["error_message"] == (ERROR_MESSAGES[error_code] if error_code else None)
    assert fetched["date_sent"] is not None  # sent, or refused by the carrier (failed)
    assert (fetched["price"] is None) == (status == "failed")


def test_receiptless_number_stays_sent(slow_api):
    sid = slow_api.send(to="+15551237777")["sid"]
    time.sleep(5 * SLOW_STEP)  # a normal message would be delivered by now
    assert slow_api.get(sid)["status"] == "sent"


def test_status_moves_through_each_step_in_time(slow_api):
    created = slow_api.send()
    sid = created["sid"]
    seen = [created["status"]]
    dates_sent = {}
    deadline = time.monotonic() + 6
    while seen[-1] != "delivered" and time.monotonic() < deadline:
        message = slow_api.get(sid)
        if message["status"] != seen[-1]:
            seen.append(message["status"])
        dates_sent[message["status"]] = message["date_sent"]
        time.sleep(0.05)
    assert seen == ["queued", "sending", "sent", "delivered"]
    assert dates_sent["sending"] is None
    assert dates_sent["sent"] is not None and dates_sent["delivered"] == dates_sent["sent"]
    created_at = parsedate_to_datetime(created["date_created"])
    assert 0 <= (parsedate_to_datetime(dates_sent["sent"]) - created_at).total_seconds() <= 3


def test_slow_number_takes_ten_times_the_step_delay(slow_api):
    normal, slow = slow_api.send()["sid"], slow_api.send(to=SLOW_NUMBER)["sid"]
    time.sleep(4 * SLOW_STEP)  # > 3 normal steps, < one slow step
    assert slow_api.get(normal)["status"] == "delivered"
    assert slow_api.get(slow)["status"] == "queued"


def test_failed_goes_from_sending_to_failed_without_sent(slow_api):
    sid = slow_api.send(to="+15551233008")["sid"]
    seen = set()
    deadline = time.monotonic() + 4
    while "failed" not in seen and time.monotonic() < deadline:
        seen.add(slow_api.get(sid)["status"])
        time.sleep(0.05)
    assert "failed" in seen and "sent" not in seen


def test_messaging_service_goes_accepted_then_queued(slow_api):
    created = slow_api.send(From=None, MessagingServiceSid="MG" + "cd" * 16)
    assert created["status"] == "accepted"
    time.sleep(1.4 * SLOW_STEP)
    assert slow_api.get(created["sid"])["status"] == "queued"


def test_cancel_before_sending(slow_api):
    sid = slow_api.send(to=SLOW_NUMBER)["sid"]
    response = slow_api.update(sid, Status="canceled")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "canceled"
    time.sleep(4 * SLOW_STEP)
    message = slow_api.get(sid)
    assert message["status"] == "canceled"
    assert message["date_sent"] is None and message["price"] is None


def test_cancel_after_sending_is_refused(slow_api):
    sid = slow_api.send()["sid"]
    time.sleep(1.4 * SLOW_STEP)  # past queued
    assert_error(slow_api.update(sid, Status="canceled"), 400, 30409)
    assert slow_api.get(sid)["status"] != "canceled"


def test_cancel_is_refused_at_once_with_zero_step_delay(api):
    sid = api.send()["sid"]
    assert_error(api.update(sid, Status="canceled"), 400, 30409)


def test_profiles_and_jitter():
    rng = random.Random(3)
    realistic = PROFILES["realistic"]
    timelines = [build_timeline(DELIVERED, realistic, via_service=False, rng=rng) for _ in range(20)]
    offsets = {t[1][0] for t in timelines}
    assert len(offsets) == 20  # jitter: every message has its own timing
    low, high = realistic.step_delay * (1 - realistic.jitter), realistic.step_delay * (1 + realistic.jitter)
    assert all(low <= t[1][0] <= high for t in timelines)
    assert [s for _, s in timelines[0]] == ["queued", "sending", "sent", "delivered"]
    demo = build_timeline(DELIVERED, PROFILES["demo"], via_service=False, rng=rng)
    assert [o for o, _ in demo] == [0.0, 1.0, 2.0, 3.0]
    assert all(o == 0.0 for o, _ in build_timeline(DELIVERED, PROFILES["fast"], via_service=True, rng=rng))

"""The workflow's decisions as plain functions: settings, polling, routing and what the end tasks report."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from twilio_messaging import settings
from twilio_messaging.errors import ERROR_MEANINGS, describe
from twilio_messaging.outputs import status_report
from twilio_messaging.sensors.twilio import past_deadline
from twilio_messaging.statuses import DELIVERED_STATUSES, FAILED_STATUSES, end_state, is_terminal
from twilio_messaging.workflow import outcome as decide

SID = "SM" + "1" * 32
SEND = {"messageSid": SID, "accountSid": "AC" + "0" * 32}


def test_tracking_settings_from_env():
    tracking = settings.tracking_settings({"TWILIO_POKE_INTERVAL": "2", "TWILIO_STATUS_TIMEOUT": "30"})
    assert (tracking.poke_interval, tracking.timeout, tracking.max_wait) == (2.0, 30.0, 900.0)
    assert tracking.retry_delay == timedelta(seconds=2)
    with pytest.raises(ValueError, match="TWILIO_POKE_INTERVAL must be a number"):
        settings.tracking_settings({"TWILIO_POKE_INTERVAL": "soon"})
    with pytest.raises(ValueError, match="TWILIO_STATUS_TIMEOUT must be a positive"):
        settings.tracking_settings({"TWILIO_STATUS_TIMEOUT": "0"})


def test_statuses():
    assert {"delivered", "read"} == DELIVERED_STATUSES
    assert {"undelivered", "failed", "canceled"} == FAILED_STATUSES
    for status in ("queued", "sending", "sent", "accepted", "scheduled", None):
        assert not is_terminal(status) and end_state(status) is None
    assert end_state("read") == "delivered" and end_state("canceled") == "failed"


def test_poke_reports_status_and_error():
    report = status_report({"status": "undelivered", "error_code": 30003, "error_message": "Unreachable"})
    assert is_terminal(report["status"])
    assert report == {"status": "undelivered", "errorCode": 30003, "errorMessage": "Unreachable"}
    assert is_terminal(status_report({"status": "sent"})["status"]) is False


def test_deadline_is_measured_from_the_send():
    sent = datetime(2026, 1, 1, tzinfo=UTC)
    assert not past_deadline(sent.isoformat(), 60, now=sent + timedelta(seconds=59))
    assert past_deadline(sent.isoformat(), 60, now=sent + timedelta(seconds=61))
    assert not past_deadline(None, 60)


@pytest.mark.parametrize(
    ("report", "end", "final"),
    [
        ({"status": "delivered", "errorCode": None}, "delivered", "delivered"),
        ({"status": "read", "errorCode": None}, "delivered", "read"),
        ({"status": "undelivered", "errorCode": 30005}, "failed", "undelivered"),
        ({"status": "canceled", "errorCode": None}, "failed", "canceled"),
    ],
)
def test_terminal_reports_route_without_fetching(report, end, final):
    def fetch(account, sid):
        raise AssertionError("must not fetch")

    outcome = decide.decide_outcome(SEND, report, fetch)
    assert (outcome["end"], outcome["finalStatus"], outcome["messageSid"]) == (end, final, SID)


def test_sensor_timeout_fetches_once_and_reports_unconfirmed():
    calls = []

    def fetch(account, sid):
        calls.append((account, sid))
        return {"status": "sent", "error_code": None}

    outcome = decide.decide_outcome(SEND, None, fetch)
    assert calls == [(SEND["accountSid"], SID)]
    assert outcome["end"] == "failed" and outcome["finalStatus"] == "sent (delivery unconfirmed)"
    assert "no delivery receipt" in outcome["reason"]


def test_failed_sensor_but_delivered_message_routes_to_delivered():
    outcome = decide.decide_outcome(SEND, None, lambda a, s: {"status": "delivered"})
    assert outcome["end"] == "delivered"


def test_fetch_failure_is_the_reason():
    def fetch(account, sid):
        raise RuntimeError("Twilio error 20404: not found")

    outcome = decide.decide_outcome(SEND, {"status": "queued"}, fetch)
    assert outcome["finalStatus"] == "queued (delivery unconfirmed)"
    assert "20404" in outcome["reason"]


def test_nothing_sent():
    outcome = decide.decide_outcome(
        {},
        None,
        None,
        {"errorCode": 21211, "errorMessage": "bad"},  # sendError: code and words apart
    )
    assert outcome["end"] == "failed" and outcome["messageSid"] is None and outcome["errorCode"] == 21211
    assert decide.failure_text(outcome).startswith(
        "No message was sent: Twilio error 21211, Invalid 'To' phone number\nbad"
    )


def test_failure_text_names_sid_status_code_and_meaning():
    outcome = decide.decide_outcome(SEND, {"status": "undelivered", "errorCode": 30003})
    text = decide.failure_text(outcome)
    assert text.splitlines()[0] == "Message undelivered: error 30003, Unreachable destination handset"
    assert SID in text and ERROR_MEANINGS[30003].split(" (")[1] in text
    assert decide.workflow_outputs(outcome) == {
        "messageSid": SID,
        "finalStatus": "undelivered",
        "errorCode": 30003,
    }


def test_describe():
    assert describe(21610).startswith("The recipient has opted out")
    assert describe("30008").endswith("(https://www.twilio.com/docs/errors/30008)")
    assert describe(None) == "no error code"
    assert "see Twilio's documentation" in describe(99999)

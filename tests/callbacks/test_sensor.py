"""TwilioMessageStatusSensor with callbacks: the store first, Twilio only as the backup, the same report
either way; and deferrable=True through TwilioMessageStatusTrigger."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from airflow.sdk.exceptions import TaskDeferred

from tests.unit.test_twilio_sensor import rendered, send
from twilio_messaging.callbacks.store import StatusUpdate, store_from_url
from twilio_messaging.triggers.twilio import TwilioMessageStatusTrigger

STAYS_SENT = "+15558887777"
UNDELIVERED = "+15558883003"
DELIVERS = "+15558880000"


@pytest.fixture
def env(clean_sandbox, monkeypatch, tmp_path, store_url):
    monkeypatch.setenv("AIRFLOW_CONN_TWILIO_DEFAULT", clean_sandbox.conn_json())
    monkeypatch.setenv("TWILIO_STORAGE", f"file://{tmp_path}")
    monkeypatch.setenv("TWILIO_CALLBACK_STORE", store_url)
    return clean_sandbox


def fetches(sandbox) -> int:
    return sandbox.stats()["requests"]["fetch"]


def now_iso(ago: float = 0.0) -> str:
    return (datetime.now(UTC) - timedelta(seconds=ago)).isoformat()


def test_a_final_callback_ends_the_wait_without_a_request(env, request, store_url):
    sid = send(STAYS_SENT)  # Twilio would say "sent" forever
    store_from_url(store_url, 3600).record(StatusUpdate(sid, "delivered"))
    sensor, context = rendered(request, message_sid=sid, sent_at=now_iso(), callbacks=True)
    result = sensor.poke(context)
    assert not isinstance(result, bool) and result.is_done
    assert result.xcom_value == {"status": "delivered", "errorCode": None, "errorMessage": None}
    assert context["ti"].pushed["statusTimeline"][-1]["status"] == "delivered"
    assert fetches(env) == 0


def test_a_failure_called_back_reports_as_polling_does(env, request, store_url):
    sid = send(UNDELIVERED)
    polled, polled_context = rendered(request, message_sid=sid, sent_at=now_iso())
    by_polling = polled.poke(polled_context)
    store_from_url(store_url, 3600).record(StatusUpdate(sid, "undelivered", 30003))
    sensor, context = rendered(request, message_sid=sid, sent_at=now_iso(), callbacks=True)
    by_callback = sensor.poke(context)
    assert by_callback.xcom_value == by_polling.xcom_value  # errorMessage included: one fetch for its text
    assert by_callback.xcom_value["errorMessage"]


def test_within_the_grace_no_request_after_it_polling_catches_up(env, request):
    sid = send(DELIVERS)  # its callbacks are lost: nothing reaches the store
    sensor, context = rendered(
        request, message_sid=sid, sent_at=now_iso(), callbacks=True, callback_grace=300
    )
    assert sensor.poke(context) is False
    assert fetches(env) == 0
    late, late_context = rendered(
        request, message_sid=sid, sent_at=now_iso(ago=301), callbacks=True, callback_grace=300
    )
    result = late.poke(late_context)
    assert result.is_done and result.xcom_value["status"] == "delivered"
    assert fetches(env) == 1


def test_callbacks_off_polls_at_once(env, request):
    sid = send(DELIVERS)
    sensor, context = rendered(request, message_sid=sid, sent_at=now_iso())
    assert sensor.poke(context).is_done
    assert fetches(env) == 1


def test_store_down_polls_as_without_callbacks(env, request, monkeypatch):
    monkeypatch.setenv("TWILIO_CALLBACK_STORE", "redis://127.0.0.1:1/0")
    sid = send(DELIVERS)
    sensor, context = rendered(request, message_sid=sid, sent_at=now_iso(ago=400), callbacks=True)
    assert sensor.poke(context).xcom_value["status"] == "delivered"


def test_deferrable_defers_to_the_trigger_and_reports_as_a_poke(env, request, store_url):
    sid = send(UNDELIVERED)
    sensor, context = rendered(
        request, message_sid=sid, sent_at=now_iso(), deferrable=True, poke_interval=0.2, timeout=60
    )
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(context)
    trigger = deferred.value.trigger
    assert isinstance(trigger, TwilioMessageStatusTrigger)
    _, kwargs = trigger.serialize()
    assert env.auth_token not in repr(kwargs) and kwargs["twilio_conn_id"] == "twilio_default"
    assert kwargs["deadline"] == pytest.approx(datetime.now(UTC).timestamp() + 60, abs=5)

    async def first_event():
        async for event in trigger.run():
            return event.payload

    event = asyncio.run(asyncio.wait_for(first_event(), 30))
    report = sensor.execute_complete(context, event)
    polled, polled_context = rendered(request, message_sid=sid, sent_at=now_iso())
    assert report == polled.poke(polled_context).xcom_value
    assert context["ti"].pushed["statusTimeline"][-1]["status"] == "undelivered"

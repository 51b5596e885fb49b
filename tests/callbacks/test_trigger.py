"""TwilioMessageStatusTrigger against the sandbox: woken by a callback, or polling when callbacks are lost,
late or the store is down; the same outcome either way; nothing secret serialized."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import pytest

from twilio_messaging.callbacks.store import StatusUpdate, store_from_url
from twilio_messaging.triggers.twilio import TwilioMessageStatusTrigger

STAYS_SENT = "+15558887777"
DELIVERS = "+15558880000"
UNDELIVERED = "+15558883003"


@pytest.fixture
def twilio(clean_sandbox, monkeypatch, store_url):
    monkeypatch.setenv("AIRFLOW_CONN_TWILIO_DEFAULT", clean_sandbox.conn_json())
    monkeypatch.setenv("TWILIO_CALLBACK_STORE", store_url)
    return clean_sandbox


def create(sandbox, to: str) -> str:
    with httpx.Client(auth=(sandbox.account_sid, sandbox.auth_token), trust_env=False) as client:
        reply = client.post(sandbox.messages_url, data={"To": to, "From": "+15005550006", "Body": "hi"})
    reply.raise_for_status()
    return reply.json()["sid"]


def run(trigger: TwilioMessageStatusTrigger, limit: float = 30.0) -> dict:
    async def first_event() -> dict:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("the trigger ended without an event")

    return asyncio.run(asyncio.wait_for(first_event(), limit))


def trigger_for(sid: str, **kwargs) -> TwilioMessageStatusTrigger:
    settings = {"deadline": time.time() + 60, "poll_interval": 60.0, "callback_check_interval": 0.1}
    return TwilioMessageStatusTrigger(sid, **{**settings, **kwargs})


def test_a_callback_wakes_it_without_asking_twilio(twilio, store_url):
    sid = create(twilio, STAYS_SENT)  # Twilio itself will never say more than "sent"
    store = store_from_url(store_url, 3600)
    timer = threading.Timer(0.5, store.record, args=(StatusUpdate(sid, "delivered"),))
    timer.start()
    started = time.monotonic()
    event = run(trigger_for(sid))
    assert event["status"] == "done" and event["source"] == "callback"
    assert event["message"]["status"] == "delivered"
    assert time.monotonic() - started < 5
    assert twilio.stats()["requests"]["fetch"] == 0


def test_in_flight_callbacks_do_not_end_the_wait(twilio, store_url):
    sid = create(twilio, DELIVERS)
    store_from_url(store_url, 3600).record(StatusUpdate(sid, "sent"))
    event = run(trigger_for(sid, poll_interval=0.3))
    assert (event["source"], event["message"]["status"]) == ("poll", "delivered")


def test_lost_callbacks_are_caught_by_polling(twilio):
    sid = create(twilio, UNDELIVERED)
    event = run(trigger_for(sid, poll_interval=0.2))
    assert event["status"] == "done" and event["source"] == "poll"
    assert (event["message"]["status"], event["message"]["error_code"]) == ("undelivered", 30003)


def test_store_down_polls_on(twilio, monkeypatch):
    monkeypatch.setenv("TWILIO_CALLBACK_STORE", "redis://127.0.0.1:1/0")
    sid = create(twilio, DELIVERS)
    event = run(trigger_for(sid, poll_interval=0.2))
    assert (event["status"], event["message"]["status"]) == ("done", "delivered")


def test_a_failure_reads_the_same_by_callback_or_by_polling(twilio, store_url):
    sid = create(twilio, UNDELIVERED)
    polled = run(trigger_for(sid, poll_interval=0.1))
    store_from_url(store_url, 3600).record(StatusUpdate(sid, "undelivered", 30003))
    called_back = run(trigger_for(sid))
    assert called_back["source"] == "callback" and polled["source"] == "poll"
    assert called_back["message"] == polled["message"]
    assert polled["message"]["error_message"]


def test_retry_after_is_honoured(twilio):
    sid = create(twilio, DELIVERS)
    twilio.set_faults(rate_429=1.0, retry_after=2)
    threading.Timer(1.0, twilio.clear_faults).start()
    started = time.monotonic()
    event = run(trigger_for(sid, poll_interval=0.05))
    assert event["message"]["status"] == "delivered"
    assert time.monotonic() - started >= 2.0  # waited as told, not at the 0.05 s poll interval
    assert twilio.stats()["faults"]["429"] == 1


def test_gives_up_at_the_deadline(twilio):
    sid = create(twilio, STAYS_SENT)
    event = run(trigger_for(sid, poll_interval=0.1, deadline=time.time() + 1.0))
    assert event["status"] == "timeout" and event["message"]["status"] == "sent"


def test_unknown_message_is_an_error_event(twilio):
    event = run(trigger_for("SM" + "0" * 32, poll_interval=0.1))
    assert event["status"] == "error" and "20404" in event["error"]


def test_serializes_without_secrets(twilio):
    sid = create(twilio, DELIVERS)
    classpath, kwargs = trigger_for(sid).serialize()
    assert classpath == "twilio_messaging.triggers.twilio.TwilioMessageStatusTrigger"
    assert twilio.auth_token not in repr(kwargs)
    assert kwargs["twilio_conn_id"] == "twilio_default" and kwargs["message_sid"] == sid
    again = TwilioMessageStatusTrigger(**kwargs)
    assert again.serialize() == (classpath, kwargs)


def test_many_waits_share_one_store_read_per_interval(twilio, store_url, monkeypatch):
    """Thousands of waits in one triggerer cost one bulk read per interval, not one read each."""
    from twilio_messaging.callbacks.store import SqliteStore

    reads = []
    get_many = SqliteStore.get_many

    def counted(self, sids):
        reads.append(len(sids))
        return get_many(self, sids)

    monkeypatch.setattr(SqliteStore, "get_many", counted)
    sids = [create(twilio, STAYS_SENT) for _ in range(30)]
    store = store_from_url(store_url, 3600)

    async def all_of_them() -> tuple[list[dict], int]:
        waits = [trigger_for(sid, callback_check_interval=0.2) for sid in sids]

        async def first(trigger):
            async for event in trigger.run():
                return event.payload

        tasks = [asyncio.create_task(first(t)) for t in waits]
        await asyncio.sleep(0.5)
        for sid in sids:
            await asyncio.to_thread(store.record, StatusUpdate(sid, "delivered"))
        return await asyncio.wait_for(asyncio.gather(*tasks), 20)

    started = time.monotonic()
    events = asyncio.run(all_of_them())
    elapsed = time.monotonic() - started
    assert {e["source"] for e in events} == {"callback"}
    assert len(reads) <= elapsed / 0.2 + 2  # one read per interval for all 30, not 30 per interval
    assert max(reads) == 30
    assert twilio.stats()["requests"]["fetch"] == 0


def create_with_callback(sandbox, to: str, callback: str) -> str:
    with httpx.Client(auth=(sandbox.account_sid, sandbox.auth_token), trust_env=False) as client:
        form = {"To": to, "From": "+15005550006", "Body": "hi", "StatusCallback": callback}
        reply = client.post(sandbox.messages_url, data=form)
    reply.raise_for_status()
    return reply.json()["sid"]


@pytest.fixture
def calling_back(twilio, receiver_server, monkeypatch):
    """The sandbox calls the receiver (the plugin app on loopback), which checks the sandbox's signature."""
    from twilio_messaging.callbacks.receiver import auth_tokens

    auth_tokens.forget()
    yield twilio, receiver_server
    auth_tokens.forget()


def test_duplicated_and_reordered_callbacks_end_at_the_true_status(calling_back, store_url):
    sandbox, receiver = calling_back
    sandbox.set_faults(rate_callback_duplicate=1.0, rate_callback_reorder=1.0, seed=3)
    sid = create_with_callback(sandbox, UNDELIVERED, receiver.url)
    event = run(trigger_for(sid))
    assert event["source"] == "callback"
    assert (event["message"]["status"], event["message"]["error_code"]) == ("undelivered", 30003)
    stats = sandbox.stats()["callbacks"]
    assert stats["duplicated"] >= 1 and stats["reordered"] >= 1
    assert store_from_url(store_url, 3600).get(sid).status == "undelivered"  # no later callback undid it


def test_every_callback_lost_polling_catches_up(calling_back):
    sandbox, receiver = calling_back
    sandbox.set_faults(rate_callback_drop=1.0)
    sid = create_with_callback(sandbox, DELIVERS, receiver.url)
    event = run(trigger_for(sid, poll_interval=1.0))
    assert (event["source"], event["message"]["status"]) == ("poll", "delivered")
    assert sandbox.stats()["callbacks"]["dropped"] >= 1

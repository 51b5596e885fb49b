"""The tracking helpers: which StatusCallback a send gives, what the store says, when to poll anyway."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from twilio_messaging.callbacks.store import StatusUpdate, store_from_url
from twilio_messaging.callbacks.tracking import (
    final_from_callbacks,
    needs_fetch,
    poll_due,
    status_callback_url,
)
from twilio_messaging.settings import callback_settings

BASE = {"TWILIO_CALLBACK_BASE_URL": "https://airflow.example.com/"}


def test_status_callback_is_the_receiver_only_when_on_and_not_given():
    assert status_callback_url(None, {}) is None
    assert status_callback_url(None, BASE) == "https://airflow.example.com/twilio-messages/status-callback"
    assert status_callback_url("https://mine.example/cb", BASE) == "https://mine.example/cb"


@pytest.mark.parametrize("bad", ["airflow.example.com", "ftp://x", "https://x/?a=1", "https://"])
def test_bad_base_url_names_the_setting(bad):
    with pytest.raises(ValueError, match="TWILIO_CALLBACK_BASE_URL"):
        callback_settings({"TWILIO_CALLBACK_BASE_URL": bad})


def test_only_final_statuses_count(monkeypatch, store_url):
    monkeypatch.setenv("TWILIO_CALLBACK_STORE", store_url)
    store = store_from_url(store_url, 3600)
    store.record(StatusUpdate("SM" + "1" * 32, "delivered"))
    store.record(StatusUpdate("SM" + "2" * 32, "sent"))
    store.record(StatusUpdate("SM" + "3" * 32, "undelivered", 30003))
    found = final_from_callbacks(["SM" + "1" * 32, "SM" + "2" * 32, "SM" + "3" * 32, "SM" + "4" * 32])
    assert {sid[2] for sid in found} == {"1", "3"}
    assert needs_fetch(found["SM" + "3" * 32]) and not needs_fetch(found["SM" + "1" * 32])


def test_unreachable_store_reads_empty(monkeypatch):
    monkeypatch.setenv("TWILIO_CALLBACK_STORE", "redis://127.0.0.1:1/0")
    assert final_from_callbacks(["SM" + "1" * 32]) == {}


def test_poll_due_after_the_grace_only_with_callbacks_on():
    sent = datetime(2026, 1, 1, tzinfo=UTC)
    assert callback_settings({**BASE, "TWILIO_CALLBACK_GRACE": "120"}).grace == 120
    assert poll_due(sent, None, sent + timedelta(seconds=1))
    assert not poll_due(sent, 300, sent + timedelta(seconds=299))
    assert poll_due(sent, 300, sent + timedelta(seconds=300))
    assert poll_due(None, 300, sent)

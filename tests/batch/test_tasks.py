"""The DAG's task callables as plain functions: collecting records after failures, the run verdict."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from twilio_messaging.batch import tasks
from twilio_messaging.batch.report import message_record, summarise
from twilio_messaging.batch.settings import BatchSettings
from twilio_messaging.batch.track import MemoryStore
from twilio_messaging.errors import TwilioAPIError, TwilioConfigError, TwilioUnreachableError
from twilio_messaging.validation import InvalidInput

CHUNKS = [
    {"chunk": 0, "rows": [[1, "+15550000001", "a"], [2, "+15550000002", "b"]]},
    {"chunk": 1, "rows": [[4, "+15550000004", "c"]]},
    {"chunk": 2, "rows": [[5, "+15550000005", "d"]]},
]
SKIPPED = [{"row": 3, "to": "x", "outcome": "invalid", "reason": "bad"}]


def settings(**changes) -> BatchSettings:
    base = BatchSettings(
        schedule=None, pool="twilio_api", concurrency=10, poke_interval=1, first_fetch_after=30,
        status_timeout=600, send_timeout=60, default_from="+15005550006",
    )  # fmt: skip
    return BatchSettings(**{**base.__dict__, **changes})


def test_collect_records_after_failed_send_and_failed_tracking():
    delivered = message_record(1, "+15550000001", "SM1", "delivered")
    undelivered = message_record(2, "+15550000002", "SM2", "undelivered", 30003)
    tracked = [{"chunk": 0, "records": [delivered, undelivered]}]
    # Chunk 1 was sent, but its tracking failed: the store still knows one final status.
    sent = [{"chunk": 1, "sent_at": "2026-01-01T00:00:00+00:00",
             "records": [message_record(4, "+15550000004", "SM4", "queued")]}]  # fmt: skip
    store = MemoryStore()
    store.save({"SM4": ["delivered", None, None]})
    records = tasks.collect_records(CHUNKS, SKIPPED, sent, tracked, store_for=lambda chunk: store)
    assert [(r["row"], r["outcome"]) for r in records] == [
        (1, "delivered"), (2, "failed"), (3, "invalid"), (4, "delivered"), (5, "unknown"),
    ]  # fmt: skip
    assert store.known == {}  # the summary cleans up what tracking left behind
    summary = summarise(records)
    assert (summary["to_send"], summary["failed"], summary["unknown"]) == (4, 2, 1)
    verdict = tasks.failure_verdict(summary, threshold=0.9)
    assert verdict is not None and "1 messages are in chunks whose send task failed" in verdict


def test_failure_verdict_names_the_numbers():
    failed = [message_record(i, f"+1555000{i:04d}", f"SM{i}", "failed", 30008) for i in range(3)]
    records = failed + [message_record(i, f"+1555000{i:04d}", f"SM{i}", "delivered") for i in range(3, 10)]
    summary = summarise(records, "/tmp/r.csv")
    assert tasks.failure_verdict(summary, 0.3) is None
    verdict = tasks.failure_verdict(summary, 0.25)
    assert "3 of 10 messages failed (30.0%)" in verdict and "25.0%" in verdict
    assert "30008: 3" in verdict and "/tmp/r.csv" in verdict


@pytest.mark.parametrize(
    ("exc", "final"),
    [
        (InvalidInput("body_template", "x"), True),
        (TwilioConfigError("no host"), True),
        (TwilioAPIError(401, 20003, "Authenticate"), True),
        (TwilioAPIError(404, 20404, "not found"), True),
        (TwilioAPIError(400, 21211, "bad To"), False),
        (TwilioUnreachableError("down"), False),
        (RuntimeError("?"), False),
    ],
)
def test_final_errors_are_not_retried(exc, final):
    assert tasks.is_final_error(exc) is final


def test_concurrency_param_can_lower_but_not_raise():
    assert tasks.concurrency_from_params({"concurrency": 3}, settings()) == 3
    assert tasks.concurrency_from_params({"concurrency": 50}, settings()) == 10
    assert tasks.concurrency_from_params({}, settings()) == 10
    with pytest.raises(InvalidInput, match="concurrency"):
        tasks.concurrency_from_params({"concurrency": -1}, settings())


def test_sender_defaults_only_without_from_and_service():
    assert tasks.sender_from_params({}, settings()).from_ == "+15005550006"
    service = "MG" + "0" * 32
    sender = tasks.sender_from_params({"messagingServiceSid": service}, settings())
    assert (sender.from_, sender.messaging_service_sid) == (None, service)


def test_no_fetch_before_first_fetch_after():
    sent = {"chunk": 0, "sent_at": datetime.now(UTC).isoformat(),
            "records": [message_record(1, "+15550000001", "SM1", "queued")]}  # fmt: skip
    # No connection is needed (or made) while the chunk is younger than first_fetch_after.
    assert tasks.track_poke(sent, {}, settings(), MemoryStore()) == (False, None)
    rejected_only = {**sent, "records": [message_record(1, "+15005550001", None, None, 21211)]}
    done, value = tasks.track_poke(rejected_only, {}, settings(), MemoryStore())
    assert done and value["records"][0]["outcome"] == "rejected"


def test_settings_from_env(monkeypatch):
    monkeypatch.setenv("TWILIO_BATCH_SCHEDULE", "none")
    monkeypatch.setenv("TWILIO_BATCH_POKE_INTERVAL", "7")
    monkeypatch.delenv("TWILIO_BATCH_FIRST_FETCH_AFTER", raising=False)
    monkeypatch.setenv("TWILIO_BATCH_CONCURRENCY", "25")
    loaded = BatchSettings.from_env()
    assert (loaded.schedule, loaded.poke_interval, loaded.first_fetch_after, loaded.concurrency) == (
        None,
        7,
        7,
        25,
    )
    monkeypatch.setenv("TWILIO_BATCH_POKE_INTERVAL", "soon")
    with pytest.raises(ValueError, match="TWILIO_BATCH_POKE_INTERVAL"):
        BatchSettings.from_env()

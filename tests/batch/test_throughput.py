"""Sender throughput: segment counts, the refusal of a batch the sender cannot drain within Twilio's
ValidityPeriod, and ``pace`` (sends spread at the sender's rate). Plain logic, plus one real send."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from twilio_messaging.batch import plan, send
from twilio_messaging.batch.layout import RunLayout
from twilio_messaging.batch.prepare import prepare_run
from twilio_messaging.batch.send import Pace
from twilio_messaging.batch.throughput import VALIDITY_PERIOD_S, DrainEstimate, segments
from twilio_messaging.connection import TwilioConnection
from twilio_messaging.settings import BatchSettings
from twilio_messaging.validation import InvalidInput

REPO = Path(__file__).resolve().parents[2]
FROM = "+15005550006"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("a" * 306, 2),
        ("a" * 307, 3),
        ("€" * 80, 1),  # an extension character takes two septets: 160 septets
        ("€" * 81, 2),
        ("é" * 160, 1),  # é is in the GSM-7 basic set
        ("ł" * 70, 1),  # ł is not: UCS-2, 70 per segment
        ("ł" * 71, 2),
        ("🎉" * 35, 1),  # an emoji is two UTF-16 units
        ("🎉" * 36, 2),
    ],
)
def test_segments(body, expected):
    assert segments(body) == expected


def test_drain_estimate_counts_the_messages_that_would_expire():
    fits = DrainEstimate(mps=1.0, validity=100)
    for _ in range(101):  # offsets 0..100 s: the last one leaves the queue exactly at the validity period
        fits.add("x")
    assert fits.refusal() is None and fits.seconds == 101
    over = DrainEstimate(mps=1.0, validity=100)
    for _ in range(150):
        over.add("x")
    assert over.expiring == 49 and over.first_expiring == 102
    error = over.refusal()
    assert isinstance(error, InvalidInput) and error.field == "sender_mps"
    text = str(error)
    assert "49 messages would fail with 30001" in text and "150 messages" in text
    assert "Messaging Service" in text and "pace: true" in text
    assert "at most about 100 segments per run" in text


def prepare(params: dict, run_id: str = "r") -> dict:
    layout = RunLayout.of("batch_mps", run_id)
    return prepare_run(
        params, BatchSettings.from_env(), [REPO], layout, "k", map_limit=1024, conn_id="twilio_default"
    )


ROWS = [{"to": f"+1555077{i:04d}", "name": f"N{i}"} for i in range(400)]


def test_prepare_refuses_a_batch_that_would_outlive_the_validity_period():
    params = {"recipients": ROWS, "body_template": "Hi {name}", "from": FROM, "sender_mps": 0.01}
    with pytest.raises(InvalidInput) as info:
        prepare(params)
    text = str(info.value)
    assert info.value.field == "sender_mps"
    # 400 one-segment messages at 0.01/s: 40,000 s, of which 360 fit in 36,000 s.
    assert "11.1 h" in text and "400 messages" in text and "39 messages would fail with 30001" in text
    assert f"ValidityPeriod ({VALIDITY_PERIOD_S / 3600:.1f} h)" in text
    assert not RunLayout.of("batch_mps", "r").manifest(0).exists()  # nothing prepared to send
    # The same batch paced is accepted: nothing waits in Twilio's queue, the sends are spread instead.
    paced = prepare({**params, "pace": True}, "paced")
    assert paced["counts"]["to_send"] == 400
    rows = plan.read_manifest(RunLayout.of("batch_mps", "paced"), paced["chunks"][0])
    assert [row["offset"] for row in rows[:3]] == [0, 1, 2]


def test_pace_waits_for_each_row_slot():
    slept: list[float] = []
    now = [1000.0]

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    pace = Pace(anchor=1000.0, mps=4.0, clock=lambda: now[0], sleep=sleep)
    rows = [{"row": i + 1, "to": "+1", "body": "x", "offset": i} for i in range(5)]

    async def run() -> None:
        for row in rows:
            await pace.wait(row)

    asyncio.run(run())
    assert slept == [0.25, 0.25, 0.25, 0.25]  # offsets 1..4 at 4/s; offset 0 goes at once
    assert now[0] == 1001.0


def test_paced_chunk_sends_at_the_sender_rate(clean_sandbox):
    rows = [{"to": f"+1555078{i:04d}", "name": f"N{i}"} for i in range(16)]
    params = {
        "recipients": rows,
        "body_template": "Hi {name}",
        "from": FROM,
        "sender_mps": 8.0,
        "pace": True,
        "concurrency": 8,
    }
    out = prepare(params, "paced_send")
    layout = RunLayout.of("batch_mps", "paced_send")
    connection = TwilioConnection(
        base_url=clean_sandbox.base_url, username=clean_sandbox.account_sid, secret=clean_sandbox.auth_token
    )
    started = time.monotonic()
    counts = send.send_chunk(out["chunks"][0], BatchSettings.from_env(), layout, connection=connection)
    elapsed = time.monotonic() - started
    assert counts["accepted"] == 16 and len(clean_sandbox.messages()) == 16
    # 16 one-segment messages at 8/s: the last slot is 15/8 = 1.9 s after prepare; unpaced this takes ~0.1 s.
    assert 1.5 <= elapsed < 6, elapsed

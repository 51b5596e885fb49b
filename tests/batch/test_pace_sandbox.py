"""``pace: true`` against the sandbox's per-sender queue (``--sender-mps``): paced, a batch never builds a
backlog in Twilio's queue for its sender; unpaced, the same batch queues behind the sender at once."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from twilio_messaging.batch import send as sending
from twilio_messaging.batch.layout import RunLayout
from twilio_messaging.batch.prepare import prepare_run
from twilio_messaging.connection import TwilioConnection
from twilio_messaging.settings import BatchSettings

REPO = Path(__file__).resolve().parents[2]
MPS = 3.0
N = 30


@pytest.fixture(scope="module")
def queue_sandbox() -> Iterator[Any]:
    from sandbox.testing import run_sandbox

    with run_sandbox("--sender-mps", str(MPS), "--step-delay", "0") as sb:
        yield sb


def peak_backlog(sb: Any, sender: str, run: Any) -> float:
    """The largest queued backlog (sandbox seconds) ``sender`` had while ``run()`` ran."""
    peak = [0.0]
    done = threading.Event()

    def sample() -> None:
        for queue in sb._call("GET", "/_sandbox/senders")["senders"]:
            if queue["sender"] == sender:
                peak[0] = max(peak[0], float(queue["backlog_seconds"]))

    def watch() -> None:
        while not done.is_set():
            sample()
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        run()
        sample()  # an unpaced batch's backlog peaks as its last message is created: never miss that moment
    finally:
        done.set()
        watcher.join(timeout=5)
    return peak[0]


def send(sb: Any, run_id: str, sender: str, pace: bool) -> float:
    rows = [{"to": f"+1555079{i:04d}", "name": f"N{i}"} for i in range(N)]
    params = {
        "recipients": rows,
        "body_template": "Hi {name}",
        "from": sender,
        "sender_mps": MPS,
        "pace": pace,
        "concurrency": 10,
    }
    layout = RunLayout.of("batch_pace", run_id)
    out = prepare_run(
        params, BatchSettings.from_env(), [REPO], layout, run_id, map_limit=1024, conn_id="twilio_default"
    )
    connection = TwilioConnection(base_url=sb.base_url, username=sb.account_sid, secret=sb.auth_token)

    def run() -> None:
        sending.send_chunk(out["chunks"][0], BatchSettings.from_env(), layout, connection=connection)

    return peak_backlog(sb, sender, run)


def test_pace_keeps_the_sender_queue_empty(queue_sandbox):
    sb = queue_sandbox
    sb.reset()
    # Two senders, so each has a queue of its own.
    unpaced = send(sb, "unpaced", "+15550001001", pace=False)
    paced = send(sb, "paced", "+15550001002", pace=True)
    print(f"\nPACE {N} at {MPS:g}/s: peak sender backlog {unpaced:.1f} s unpaced, {paced:.1f} s paced")
    assert unpaced >= N / MPS / 2  # created far faster than the sender sends: seconds of queue
    assert paced <= 3 / MPS  # at most a few messages ahead of the sender
    assert len(sb.messages()) == 2 * N
    assert sb.stats().get("queue", {}).get("expired_30001", 0) == 0

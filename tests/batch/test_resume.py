"""A send_chunk or track_chunk killed half-way (SIGKILL, a real process) resumes from storage: nothing is sent
twice, nothing is lost, and what the killed try recorded is not sent or fetched again."""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from twilio_messaging.batch import ledger, send, track
from twilio_messaging.batch.layout import RunLayout
from twilio_messaging.batch.prepare import prepare_run
from twilio_messaging.connection import TwilioConnection
from twilio_messaging.settings import BatchSettings
from twilio_messaging.storage import read_json

REPO = Path(__file__).resolve().parents[2]
FROM = "+15005550006"
WORKER = """
import json, sys
from twilio_messaging.batch import send, track
from twilio_messaging.batch.layout import RunLayout
from twilio_messaging.settings import BatchSettings
from twilio_messaging.connection import TwilioConnection

spec = json.loads(sys.stdin.read())
layout = RunLayout.of(spec["dag_id"], spec["run_id"])
connection = TwilioConnection(**spec["connection"])
if spec["what"] == "send":
    send.send_chunk(spec["ref"], BatchSettings.from_env(), layout, connection=connection)
else:
    track.track_poke(spec["sent"], BatchSettings.from_env(), layout, connection=connection)
print("finished")
"""


def connection(sb: Any) -> dict[str, str]:
    return {"base_url": sb.base_url, "username": sb.account_sid, "secret": sb.auth_token}


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def start_worker(spec: dict[str, Any]) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "plugins"), str(REPO)])}
    process = subprocess.Popen(
        [sys.executable, "-c", WORKER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert process.stdin is not None
    process.stdin.write(json.dumps(spec))
    process.stdin.close()
    return process


def kill(process: subprocess.Popen[str]) -> None:
    assert process.poll() is None, "the task finished before it could be killed: " + process.stderr.read()
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


@pytest.fixture
def fast_backoff(monkeypatch) -> None:
    """Shorter client backoff (only the waiting changes; what is retried or looked up stays the same)."""
    from twilio_messaging import client
    from twilio_messaging.retry import RetryPolicy

    monkeypatch.setattr(client, "RetryPolicy", functools.partial(RetryPolicy, base_delay=0.05, max_delay=0.5))


def prepared(n: int, run_id: str) -> tuple[RunLayout, dict[str, Any]]:
    rows = [{"to": f"+1555044{i:04d}", "name": f"R{i}"} for i in range(n)]
    params = {
        "recipients": rows,
        "body_template": "Hi {name}",
        "from": FROM,
        "chunk_size": n,
        "concurrency": 2,
    }
    layout = RunLayout.of("batch_resume", run_id)
    out = prepare_run(
        params, BatchSettings.from_env(), [REPO], layout, "k", map_limit=1024, conn_id="twilio_default"
    )
    return layout, {**out, "params": params}


def test_killed_send_chunk_resumes_from_its_results_without_duplicates(clean_sandbox, fast_backoff):
    sb = clean_sandbox
    layout, batch = prepared(40, "killed_send")
    ref = batch["chunks"][0]
    sb.set_faults(latency_ms=150)  # 2 in flight: about 3 s for the chunk
    worker = start_worker(
        {
            "what": "send",
            "dag_id": layout.dag_id,
            "run_id": layout.run_id,
            "ref": ref,
            "params": batch["params"],
            "prepared_at": batch["prepared_at"],
            "connection": connection(sb),
        }
    )

    def checkpointed() -> list[dict[str, Any]]:
        results = read_json(layout.results(0))
        return results["records"] if isinstance(results, dict) else []

    wait_for(lambda: len(checkpointed()) >= 6, timeout=60, what="a checkpoint with a few sent rows")
    kill(worker)
    time.sleep(0.5)  # requests in flight when it died still land at the sandbox
    at_kill = len(sb.messages())
    recorded = checkpointed()
    assert read_json(layout.results(0))["complete"] is False
    assert 0 < len(recorded) <= at_kill < 40, (len(recorded), at_kill)

    # The retry, with responses lost on the way back (the sandbox stored the message, the client saw a 500).
    sb.set_faults(rate_lost_response=0.2, lost_response_mode="500", seed=5)
    creates_before = sb.stats()["requests"]["create"]
    counts = send.send_chunk(
        ref, BatchSettings.from_env(), layout, connection=TwilioConnection(**connection(sb))
    )
    stats = sb.stats()
    stored = sb.messages()
    assert Counter(m["to"] for m in stored) == Counter(r["to"] for r in batch["params"]["recipients"])
    assert stats["faults"]["lost_response"] > 0
    assert counts["reused"] == len(recorded) and counts["messages"] == 40 and counts["accepted"] == 40
    final = read_json(layout.results(0))
    assert final["complete"] is True
    by_row = {r["row"]: r["sid"] for r in final["records"]}
    assert all(by_row[r["row"]] == r["sid"] for r in recorded)  # what the killed try recorded was kept
    assert {m["sid"] for m in stored} == set(by_row.values())
    # Recorded rows were neither sent nor looked up again: at most one create per row the kill left open
    # (plus the lost-response retries), and the others were looked up before sending.
    assert (
        stats["requests"]["create"] - creates_before
        < 40 - len(recorded) + stats["faults"]["lost_response"] + 1
    )
    assert stats["requests"]["list"] >= 40 - at_kill


def test_killed_track_poke_resumes_from_its_tracking_state(clean_sandbox, monkeypatch):
    sb = clean_sandbox
    monkeypatch.setenv("TWILIO_BATCH_FIRST_FETCH_AFTER", "1")
    layout, batch = prepared(30, "killed_track")
    conn = TwilioConnection(**connection(sb))
    counts = send.send_chunk(batch["chunks"][0], BatchSettings.from_env(), layout, connection=conn)
    sent = {**counts, "sent_at": (datetime.now(UTC) - timedelta(seconds=5)).isoformat()}
    sb.set_faults(latency_ms=200)  # 2 in flight: 30 fetches take about 3 s
    worker = start_worker(
        {
            "what": "track",
            "dag_id": layout.dag_id,
            "run_id": layout.run_id,
            "sent": sent,
            "params": batch["params"],
            "connection": connection(sb),
        }
    )

    def saved() -> dict[str, Any]:
        return read_json(layout.tracking(0), {})

    wait_for(lambda: len(saved()) >= 5, timeout=60, what="a tracking checkpoint")
    kill(worker)
    known = saved()
    assert 5 <= len(known) < 30
    fetches_before = sb.stats()["requests"]["fetch"]
    sb.set_faults(latency_ms=0)
    done, value = track.track_poke(sent, BatchSettings.from_env(), layout, connection=conn)
    assert done and value == {"chunk": 0, "delivered": 30, "failed": 0, "unconfirmed": 0, "rejected": 0}
    # Exactly the messages the killed poke had not saved were fetched; a saved final one never again.
    assert sb.stats()["requests"]["fetch"] - fetches_before == 30 - len(known)
    tracked = list(ledger.iter_jsonl(layout.tracked(0)))
    assert [r["outcome"] for r in tracked] == ["delivered"] * 30
    assert not layout.tracking(0).exists()  # cleared once the chunk's final records are written

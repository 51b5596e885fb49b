"""Guarantee 2: Twilio down (connection refused), then back: the run retries with backoff and completes with
exactly one message. Down for longer than the retry budget: the run fails saying Twilio was unreachable."""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest

from sandbox.testing import run_sandbox
from tests.reliability.conftest import (
    BATCH_DAG,
    SECRETS,
    SENDER,
    TOKEN,
    TwilioSwitch,
    load_dag,
    stored_text,
    task_states,
    try_numbers,
    xcom,
)

OUTAGE_S = 4.0


@pytest.fixture
def switched(monkeypatch, airflow_db) -> Iterator[tuple[object, TwilioSwitch]]:
    """A sandbox (1 s per delivery step, so checkStatus polls) reachable only through a switch."""
    with run_sandbox("--step-delay", "1", auth_token=TOKEN) as sandbox:
        switch = TwilioSwitch(sandbox.port)
        monkeypatch.setenv("AIRFLOW_CONN_TWILIO_DEFAULT", switch.conn_json(sandbox))
        try:
            yield sandbox, switch
        finally:
            switch.close()


def test_outage_then_back_completes_with_exactly_one_message(switched, monkeypatch):
    sandbox, switch = switched
    timeline: list[str] = []
    refusals: list[float] = []
    real_handle = httpx.HTTPTransport.handle_request

    def observed(self, request):  # counts what the client saw; changes nothing
        try:
            return real_handle(self, request)
        except httpx.ConnectError:
            refusals.append(time.monotonic())
            raise

    monkeypatch.setattr(httpx.HTTPTransport, "handle_request", observed)

    def operator() -> None:
        deadline = time.monotonic() + 60
        while not refusals and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(OUTAGE_S)  # Twilio stays down while sendMessage keeps trying to create
        switch.up()
        timeline.append("up")
        while not sandbox.messages() and time.monotonic() < deadline:
            time.sleep(0.02)
        switch.down()  # and goes down again while checkStatus polls
        timeline.append("down again")
        time.sleep(2.5)
        switch.up()
        timeline.append("up again")

    thread = threading.Thread(target=operator, daemon=True)
    thread.start()
    run = load_dag().test(run_conf={"to": "+15552400001", "from": SENDER, "body": "outage"})
    thread.join(timeout=30)

    assert timeline == ["up", "down again", "up again"]
    assert run.state == "success", task_states(run)
    [message] = sandbox.messages()
    assert message["status"] == "delivered"
    assert sandbox.stats()["requests"]["create"] == 1
    assert xcom(run, "delivered", "finalStatus") == "delivered"
    assert xcom(run, "delivered", "messageSid") == message["sid"]
    # The client backed off and retried within the task (try 1, one create): a refused connection sends
    # nothing. Counted from what the transport saw, not from log output (its capture depends on logging
    # set-up). Backoff delays of about 0.5-1 s then 1-2 s fit three refusals into the outage.
    assert len(refusals) >= 3, refusals
    gaps = [b - a for a, b in itertools.pairwise(refusals)]
    assert max(gaps) > min(gaps), "no backoff between attempts"
    assert try_numbers(run)["sendMessage"] == 1
    print(
        f"\nOUTAGE: {OUTAGE_S:.0f}s down at send, 2.5s down while polling; run {run.state}; "
        f"{len(refusals)} refused connections; tries {try_numbers(run)}; "
        "1 message"
    )


def test_outage_longer_than_the_retry_budget_says_twilio_was_unreachable(switched, fast_backoff):
    sandbox, _switch = switched  # the switch stays off for the whole run
    dag = load_dag()
    dag.get_task("sendMessage").retry_delay = timedelta(seconds=1)

    run = dag.test(run_conf={"to": "+15552400002", "from": SENDER, "body": "never reaches Twilio"})

    assert run.state == "failed"
    states = task_states(run)
    assert states["sendMessage"] == "failed" and states["failed"] == "failed"
    assert try_numbers(run)["sendMessage"] == 3  # unreachable is transient: every Airflow try was used
    outcome = xcom(run, "routeByStatus", "outcome")
    from twilio_messaging.workflow.outcome import failure_text

    text = " ".join(failure_text(outcome).split())  # what the failed end task raises (in short lines)
    assert "was unreachable" in text and "Connection refused" in text, text
    assert "Traceback" not in text and "httpcore" not in text and "File " not in text
    assert not any(secret in text + stored_text(run) for secret in SECRETS)
    assert sandbox.messages() == [] and sandbox.stats()["requests"]["create"] == 0


def test_batch_outage_then_back_sends_every_row_exactly_once(switched, fast_backoff, tmp_path, monkeypatch):
    sandbox, switch = switched
    rows = [{"to": f"+1555241{i:04d}", "name": f"R{i}", "date": "now"} for i in range(30)]
    refusals: list[float] = []
    real_handle = httpx.AsyncHTTPTransport.handle_async_request

    async def observed(self, request):  # counts what the client saw; changes nothing
        try:
            return await real_handle(self, request)
        except httpx.ConnectError:
            refusals.append(time.monotonic())
            raise

    monkeypatch.setattr(httpx.AsyncHTTPTransport, "handle_async_request", observed)

    def operator() -> None:
        deadline = time.monotonic() + 60
        while not refusals and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(3.0)  # down for 3 s from the first attempt to send, then back
        switch.up()

    threading.Thread(target=operator, daemon=True).start()

    run = load_dag(BATCH_DAG).test(run_conf={"recipients": rows, "from": SENDER, "opt_out_path": None})

    counts = Counter(m["to"] for m in sandbox.messages())
    assert counts == Counter(r["to"] for r in rows), "lost or duplicate messages"
    assert run.state == "success", task_states(run)
    summary = xcom(run, "summary")
    assert summary["delivered"] == len(rows) and summary["unknown"] == 0
    assert len(refusals) >= len(rows)  # every row met the outage
    print(
        f"\nOUTAGE batch: 3s down while sending, {len(refusals)} refused connections; "
        f"{len(counts)} messages for {len(rows)} rows; "
        f"tries {try_numbers(run)}"
    )

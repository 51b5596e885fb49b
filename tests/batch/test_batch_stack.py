"""The same-day duplicate a new user met, through the real stack (scheduler, api-server, LocalExecutor):
a manual run triggered from the UI of the paused DAG plus the scheduled run that unpausing creates send each
recipient ONE message; ``allow_resend`` sends again."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

DAG_ID = "twilio_batch_notifications"
# The sample the defaults send: include/recipients_sample.csv minus invalid, opted-out and duplicate rows.
SAMPLE = [f"+155501000{i:02d}" for i in (1, 2, 3, 4, 5, 6, 7, 12, 13, 14, 15)] + ["+15550103003"]


@pytest.fixture(scope="module")
def scheduled_stack(tmp_path_factory) -> Iterator[tuple[Any, Any, Any]]:
    from sandbox.testing import run_sandbox
    from scripts.airflow_stack import AirflowStack

    home = tmp_path_factory.mktemp("airflow-batch-stack")
    env = {
        "TWILIO_BATCH_SCHEDULE": "@daily",  # the production default: unpausing creates today's run
        "TWILIO_BATCH_POKE_INTERVAL": "2",
        "TWILIO_BATCH_FIRST_FETCH_AFTER": "2",
        "TWILIO_BATCH_STATUS_TIMEOUT": "120",
        "TWILIO_STORAGE": f"file://{home / 'storage'}",
    }
    with run_sandbox("--step-delay", "0.2") as sandbox:
        airflow = AirflowStack(home, twilio_conn=sandbox.conn_json(), extra_env=env, log=lambda text: None)
        airflow.start(wait_for_dags=[DAG_ID])
        try:
            yield airflow, airflow.client(), sandbox
        finally:
            airflow.stop()


def wait_all_done(client: Any, run_ids: set[str], timeout: float) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        runs = {r["dag_run_id"]: r for r in client.list_runs(DAG_ID)}
        if run_ids <= set(runs) and all(runs[r]["state"] in ("success", "failed") for r in run_ids):
            return runs
        if time.monotonic() > deadline:
            states = {r: runs.get(r, {}).get("state") for r in run_ids}
            pytest.fail(f"runs not finished after {timeout:.0f}s: {states}")
        time.sleep(2)


def test_manual_and_scheduled_run_on_the_same_day_send_once_and_allow_resend_sends_again(scheduled_stack):
    _, client, sandbox = scheduled_stack
    # What the UI's Trigger dialog does on a paused DAG: a manual run with today's logical date, then
    # "Unpause on trigger" makes the scheduler add today's scheduled run.
    now = datetime.now(UTC).isoformat()
    client.request(
        "POST",
        f"/api/v2/dags/{DAG_ID}/dagRuns",
        json={"dag_run_id": "manual_today", "logical_date": now, "conf": {}},
    )
    client.unpause(DAG_ID)
    deadline = time.monotonic() + 120
    while not any(r["run_type"] == "scheduled" for r in client.list_runs(DAG_ID)):
        assert time.monotonic() < deadline, "unpausing did not create today's scheduled run"
        time.sleep(1)
    scheduled = next(r["dag_run_id"] for r in client.list_runs(DAG_ID) if r["run_type"] == "scheduled")
    runs = wait_all_done(client, {"manual_today", scheduled}, timeout=400)
    assert {runs[r]["state"] for r in ("manual_today", scheduled)} == {"success"}, runs

    counts = Counter(m["to"] for m in sandbox.messages())
    assert counts == Counter(SAMPLE), "a recipient got more than one message on the same day"
    summaries = {r: client.xcom(DAG_ID, r, "summary") for r in ("manual_today", scheduled)}
    assert {s["dedupe_key"] for s in summaries.values()} == {datetime.now(UTC).date().isoformat()}
    first, second = sorted(summaries.values(), key=lambda s: s["already_sent"])
    assert (first["sent"], first["already_sent"]) == (len(SAMPLE), 0)
    assert (second["sent"], second["already_sent"]) == (0, len(SAMPLE))
    report = Path(second["report_path"]).read_text()
    sids = {m["sid"] for m in sandbox.messages()}
    assert report.count("already_sent") == len(SAMPLE) and all(sid in report for sid in sids)

    # allow_resend: the same day, every recipient again.
    client.trigger(DAG_ID, {"allow_resend": True}, run_id="resend_today")
    runs = wait_all_done(client, {"resend_today"}, timeout=300)
    assert runs["resend_today"]["state"] == "success"
    assert Counter(m["to"] for m in sandbox.messages()) == Counter(SAMPLE * 2)
    resent = client.xcom(DAG_ID, "resend_today", "summary")
    assert (resent["sent"], resent["already_sent"], resent["allow_resend"]) == (len(SAMPLE), 0, True)

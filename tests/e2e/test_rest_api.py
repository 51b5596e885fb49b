"""The workflow on a real Airflow: REST API triggers, scheduler, reschedule-mode sensor, branch, XComs."""

from __future__ import annotations

import time

import pytest

from scripts.airflow_client import APIError, RunResult
from tests.e2e.conftest import DAG_ID, E2E

pytestmark = pytest.mark.e2e

SENDER = "+15005550006"
DELIVERED_TO = "+15551230001"
UNDELIVERED_TO = "+15551233003"  # sandbox: undelivered with error 30003
ACTIVE_STATES = ("queued", "running", "scheduled", "up_for_reschedule", "success", "up_for_retry")


def conf(to: str, body: str) -> dict[str, str]:
    return {"to": to, "from": SENDER, "body": body}


def sandbox_message(e2e: E2E, sid: str) -> dict:
    matches = [m for m in e2e.sandbox.messages() if m["sid"] == sid]
    assert len(matches) == 1, f"expected exactly one sandbox message {sid}, found {len(matches)}"
    return matches[0]


def assert_rescheduled(e2e: E2E, result: RunResult) -> None:
    """checkStatus gave back its slot (up_for_reschedule) and was poked again, on the same try.

    One exception, told apart by its own evidence: apache/airflow#71172, where the scheduler takes a stale
    executor event for a rescheduled sensor as a failure, records a "state mismatch" event and retries it
    (what the sensor's retries are for). A retry without that event fails the test.
    """
    seen = result.states_seen("checkStatus")
    assert any(state == "up_for_reschedule" for state, _ in seen), (
        f"checkStatus was never rescheduled: {seen}"
    )
    if result.try_number("checkStatus") == 1:
        resumed_same_try = [
            (state, try_number)
            for i, (state, try_number) in enumerate(seen)
            if state == "up_for_reschedule"
            and any(t == try_number and s in ACTIVE_STATES and s != "up_for_retry" for s, t in seen[i + 1 :])
        ]
        assert resumed_same_try, f"checkStatus never resumed after up_for_reschedule on the same try: {seen}"
        return
    params = {"dag_id": DAG_ID, "run_id": result.run_id, "task_id": "checkStatus", "event": "state mismatch"}
    mismatches = e2e.client.request("GET", "/api/v2/eventLogs", params=params).json()["event_logs"]
    assert mismatches, f"checkStatus was retried without apache/airflow#71172's state mismatch: {seen}"


def test_delivered_run(e2e: E2E) -> None:
    body = f"e2e delivered {time.time()}"
    run_id = e2e.trigger(conf(DELIVERED_TO, body))
    result = e2e.wait(run_id)

    assert result.state == "success", e2e.task_log_hint(run_id)
    assert result.task_state("sendMessage") == "success"
    assert result.task_state("checkStatus") == "success"
    assert result.task_state("delivered") == "success"
    assert result.task_state("failed") == "skipped"
    assert_rescheduled(e2e, result)

    outputs = e2e.outputs(run_id, "delivered")
    assert outputs["finalStatus"] == "delivered"
    assert outputs["messageSid"].startswith("SM")
    assert outputs.get("errorCode") is None
    message = sandbox_message(e2e, outputs["messageSid"])
    assert (message["to"], message["from"], message["body"], message["status"]) == (
        DELIVERED_TO,
        SENDER,
        body,
        "delivered",
    )


def test_undelivered_run_fails_through_the_failed_branch(e2e: E2E) -> None:
    body = f"e2e undelivered {time.time()}"
    run_id = e2e.trigger(conf(UNDELIVERED_TO, body))
    result = e2e.wait(run_id)

    assert result.state == "failed", e2e.task_log_hint(run_id)
    assert result.task_state("sendMessage") == "success"
    assert result.task_state("checkStatus") == "success"
    assert result.task_state("failed") == "failed"
    assert result.task_state("delivered") == "skipped"
    assert_rescheduled(e2e, result)

    outputs = e2e.outputs(run_id, "failed")
    assert outputs["finalStatus"] == "undelivered"
    assert str(outputs["errorCode"]) == "30003"
    message = sandbox_message(e2e, outputs["messageSid"])
    assert (message["to"], message["body"], message["status"]) == (UNDELIVERED_TO, body, "undelivered")


@pytest.mark.parametrize(
    ("bad_conf", "field"),
    [
        pytest.param(conf("5551234567", "bad number"), "to", id="to-not-e164"),
        pytest.param(conf(DELIVERED_TO, "x" * 1601), "body", id="body-1601-chars"),
        pytest.param({"from": SENDER, "body": "no recipient"}, "to", id="to-missing"),
    ],
)
def test_invalid_conf_is_refused_with_400(e2e: E2E, bad_conf: dict, field: str) -> None:
    messages_before = len(e2e.sandbox.messages())
    run_id = e2e.run_id("invalid")

    with pytest.raises(APIError) as refused:
        e2e.client.trigger(DAG_ID, bad_conf, run_id=run_id)

    assert refused.value.status_code == 400
    assert f"param {field}" in str(refused.value.detail), refused.value.detail
    with pytest.raises(APIError) as missing:
        e2e.client.get_run(DAG_ID, run_id)
    assert missing.value.status_code == 404
    assert run_id not in {run["dag_run_id"] for run in e2e.client.list_runs(DAG_ID)}
    assert len(e2e.sandbox.messages()) == messages_before


def test_soak_20_runs_back_to_back(e2e: E2E) -> None:
    """20 runs at once: every one ends as its number says, one SMS each, no spurious sensor failure."""
    tag = f"soak {time.time()}"
    plan = {}
    for i in range(20):
        to = UNDELIVERED_TO if i % 5 == 4 else f"+1555124{i:04d}"
        plan[e2e.trigger(conf(to, f"{tag} #{i}"), prefix="soak")] = to
    started = time.monotonic()

    results = {run_id: e2e.wait(run_id, interval=1.0) for run_id in plan}
    elapsed = time.monotonic() - started

    retried = {
        run_id: r.try_number("checkStatus")
        for run_id, r in results.items()
        if r.try_number("checkStatus") > 1
    }
    print(
        f"\nSOAK: 20 runs finished in {elapsed:.0f}s; {len(retried)} needed a checkStatus retry "
        f"(try_number > 1: {retried or 'none'})"
    )
    problems = []
    for run_id, result in results.items():
        undelivered = plan[run_id] == UNDELIVERED_TO
        want = ("failed", "failed", "skipped") if undelivered else ("success", "skipped", "success")
        got = (result.state, result.task_state("failed"), result.task_state("delivered"))
        if got != want or result.task_state("checkStatus") != "success":
            problems.append(
                f"{run_id}: run/failed/delivered={got}, checkStatus={result.task_state('checkStatus')}"
            )
    assert not problems, "\n".join(problems)

    sent = [m for m in e2e.sandbox.messages() if m["body"].startswith(tag)]
    assert sorted(m["body"] for m in sent) == sorted(f"{tag} #{i}" for i in range(20)), (
        "lost or duplicate SMS"
    )

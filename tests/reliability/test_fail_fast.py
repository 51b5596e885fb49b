"""Guarantee 3: bad credentials, a wrong account or a missing connection fail at once (try 1, no retry,
nothing sent) with a message that says what to fix and never holds the token."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from tests.reliability.conftest import (
    BATCH_DAG,
    SECRETS,
    SENDER,
    WRONG_TOKEN,
    count_secrets,
    load_dag,
    stored_text,
    task_states,
    try_numbers,
    xcom,
)

OTHER_ACCOUNT = "AC" + "f" * 32


def quick_retries(dag, *task_ids: str):
    """A retry would come after 1 s instead of minutes, so a test sees it instead of timing out."""
    for task_id in task_ids:
        dag.get_task(task_id).retry_delay = timedelta(seconds=1)
    return dag


def wrong_password(sandbox) -> str:
    return json.dumps({**json.loads(sandbox.conn_json()), "password": WRONG_TOKEN})


CASES = {
    "bad-credentials": ("20003", "Check the login and password of the Airflow connection 'twilio_default'"),
    "wrong-account": ("20404", "Check the Account SID"),
    "missing-connection": (None, "twilio_default"),
}


def arrange(case: str, sandbox, monkeypatch) -> dict:
    conf = {"to": "+15552300001", "from": SENDER, "body": f"fail fast {case}"}
    if case == "bad-credentials":
        monkeypatch.setenv("AIRFLOW_CONN_TWILIO_DEFAULT", wrong_password(sandbox))
    elif case == "wrong-account":
        conf["accountSid"] = OTHER_ACCOUNT
    else:
        monkeypatch.delenv("AIRFLOW_CONN_TWILIO_DEFAULT")
    return conf


@pytest.mark.parametrize("case", list(CASES))
def test_workflow_fails_fast_with_a_message_that_says_what_to_fix(rel, monkeypatch, case):
    conf = arrange(case, rel, monkeypatch)
    code, hint = CASES[case]

    run = quick_retries(load_dag(), "sendMessage").test(run_conf=conf)

    assert run.state == "failed"
    states = task_states(run)
    assert states["sendMessage"] == "failed" and states["failed"] == "failed"
    assert try_numbers(run)["sendMessage"] == 1, "retried an error that a retry cannot fix"
    assert rel.messages() == []
    creates = rel.stats()["requests"]["create"]
    assert creates == (0 if case == "missing-connection" else 1)  # one request, never repeated
    send_error = xcom(run, "sendMessage", "sendError")
    error = send_error["errorMessage"]
    assert hint in error, error
    # The code is a field of its own (its meaning and docs link come from errors.error_info).
    assert send_error["errorCode"] == (int(code) if code else None)
    outcome = xcom(run, "routeByStatus", "outcome")
    assert hint in outcome["reason"]  # the failed end task repeats it
    assert not any(secret in error + stored_text(run) for secret in SECRETS)


@pytest.mark.parametrize("case", list(CASES))
def test_batch_fails_fast_with_a_message_that_says_what_to_fix(rel, monkeypatch, capfd, case):
    conf = arrange(case, rel, monkeypatch)
    code, hint = CASES[case]
    rows = [{"to": f"+1555231{i:04d}", "name": "x", "date": "y"} for i in range(3)]
    batch = {"recipients": rows, "from": SENDER, "opt_out_path": None}
    if "accountSid" in conf:
        batch["accountSid"] = conf["accountSid"]

    run = quick_retries(load_dag(BATCH_DAG), "send_chunk").test(run_conf=batch)

    assert run.state == "failed"
    assert task_states(run)["send_chunk[0]"] == "failed"
    assert try_numbers(run)["send_chunk[0]"] == 1, "retried an error that a retry cannot fix"
    assert rel.messages() == []
    output = capfd.readouterr()
    raised = [line for line in (output.out + output.err).splitlines() if "AirflowFailException:" in line]
    assert any(hint in line and (code or "") in line for line in raised), raised
    assert count_secrets(output.out + output.err) == 0
    summary = xcom(run, "summary")
    assert summary["unknown"] == 3
    assert not any(secret in json.dumps(summary) + stored_text(run) for secret in SECRETS)

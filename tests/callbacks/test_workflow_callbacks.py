"""The workflow DAG with callbacks on (dag.test, the sandbox calling the receiver on loopback): the same
outcomes as polling, without polling; and a receiver that is down for the whole run, caught by polling."""

from __future__ import annotations

import pytest

from scripts.airflow_stack import free_port
from tests.workflow.test_workflow_dag import conf, load_dag, outputs, task_states, xcom


@pytest.fixture
def workflow_env(monkeypatch, airflow_db, clean_sandbox, store_url):
    from twilio_messaging.callbacks.receiver import auth_tokens

    monkeypatch.setenv("AIRFLOW_CONN_TWILIO_DEFAULT", clean_sandbox.conn_json())
    monkeypatch.setenv("TWILIO_CALLBACK_STORE", store_url)
    auth_tokens.forget()
    return clean_sandbox


def run_workflow(to: str):
    run = load_dag().test(run_conf=conf(to))  # parsed now: the callback settings of this test apply
    states = task_states(run)
    end = "delivered" if states["delivered"] == "success" else "failed"
    return run, outputs(run, end), xcom(run, "checkStatus")


@pytest.mark.parametrize("to", ["+15551230001", "+15551233003"], ids=["delivered", "undelivered"])
def test_callbacks_give_the_outcome_polling_gives(workflow_env, receiver_server, monkeypatch, to):
    sandbox = workflow_env
    polled_run, polled, polled_report = run_workflow(to)
    polling_fetches = sandbox.stats()["requests"]["fetch"]
    assert polling_fetches >= 1

    sandbox.reset()
    monkeypatch.setenv("TWILIO_CALLBACK_BASE_URL", f"http://127.0.0.1:{receiver_server.port}")
    run, called_back, report = run_workflow(to)
    assert sandbox.stats()["callbacks"]["sent"] >= 1  # sendMessage asked Twilio for callbacks
    assert run.state == polled_run.state
    assert report == polled_report
    assert {**called_back, "messageSid": None} == {**polled, "messageSid": None}
    # Delivered: not one fetch. Undelivered: one, for Twilio's error text (the report must match polling's).
    assert sandbox.stats()["requests"]["fetch"] == (0 if report["status"] == "delivered" else 1)


def test_receiver_down_for_the_whole_run_polling_catches_up(workflow_env, monkeypatch):
    sandbox = workflow_env
    monkeypatch.setenv("TWILIO_CALLBACK_BASE_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens
    monkeypatch.setenv("TWILIO_CALLBACK_GRACE", "2")
    run, outcome, _ = run_workflow("+15551230001")
    assert run.state == "success" and outcome["finalStatus"] == "delivered"
    assert sandbox.stats()["callbacks"]["failed"] >= 1  # the sandbox could not call back
    assert sandbox.stats()["requests"]["fetch"] >= 1  # polling found the status after the grace


def test_check_status_pokes_at_the_callback_interval_only_with_callbacks_on(monkeypatch):
    # With callbacks on a poke reads the store (no request to Twilio), so it comes sooner than a fetch would.
    monkeypatch.setenv("TWILIO_POKE_INTERVAL", "60")
    monkeypatch.setenv("TWILIO_CALLBACK_POKE_INTERVAL", "1.5")
    monkeypatch.delenv("TWILIO_CALLBACK_BASE_URL", raising=False)
    assert load_dag().get_task("checkStatus").poke_interval == 60
    monkeypatch.setenv("TWILIO_CALLBACK_BASE_URL", "http://127.0.0.1:8080")
    assert load_dag().get_task("checkStatus").poke_interval == 1.5

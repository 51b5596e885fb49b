"""The README's examples (dags/example_*.py) run with dag.test against the sandbox process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]


def load(dag_id: str):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags" / f"{dag_id}.py"))
    assert bag.import_errors == {}
    return bag.dags[dag_id]


def xcom(run, task_id: str, key: str = "return_value") -> Any:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = (
            session.query(XComModel)
            .filter_by(dag_id=run.dag_id, run_id=run.run_id, task_id=task_id, key=key)
            .one_or_none()
        )
        return None if row is None else XComModel.deserialize_value(row)


@pytest.fixture
def sandbox(monkeypatch, airflow_db, clean_sandbox, tmp_path):
    monkeypatch.setenv("AIRFLOW_CONN_TWILIO_DEFAULT", clean_sandbox.conn_json())
    monkeypatch.setenv("TWILIO_STORAGE", f"file://{tmp_path}")
    return clean_sandbox


def test_send_message_example(sandbox):
    run = load("example_twilio_send_message").test()

    assert run.state == "success"
    [message] = sandbox.messages()
    assert message["to"] == "+15551234567" and message["from"] == "+15005550006"
    assert message["body"] == f"Reminder: the report for {run.run_after:%Y-%m-%d} is ready."
    assert xcom(run, "send_reminder", "messageSid") == message["sid"]
    assert xcom(run, "send_reminder")["messageSid"] == message["sid"]  # the operator's return value


def test_message_status_example(sandbox):
    run = load("example_twilio_message_status").test()

    assert run.state == "success"
    [message] = sandbox.messages()
    assert message["body"] == "Your code is 123456"
    assert xcom(run, "wait_for_delivery") == {"status": "delivered", "errorCode": None, "errorMessage": None}
    assert [e["status"] for e in xcom(run, "wait_for_delivery", "statusTimeline")] == ["delivered"]


def test_notifier_example_sends_once_on_failure_and_nothing_on_success(sandbox):
    run = load("example_twilio_notifier").test(run_conf={"fail": False})
    assert run.state == "success"
    assert sandbox.messages() == []

    run = load("example_twilio_notifier").test(run_conf={"fail": True})
    assert run.state == "failed"
    bodies = [m["body"] for m in sandbox.messages()]
    task_alerts = [b for b in bodies if "task nightly_export failed" in b]
    assert len(task_alerts) == 1, bodies
    assert f"run {run.run_id}" in task_alerts[0] and "/dags/example_twilio_notifier/runs/" in task_alerts[0]
    assert len(bodies) == len(set(bodies)), bodies  # never the same notification twice


def test_deferrable_status_example(sandbox, monkeypatch, tmp_path):
    from twilio_messaging.triggers.twilio import TwilioMessageStatusTrigger

    monkeypatch.setenv("TWILIO_CALLBACK_STORE", f"sqlite:///{tmp_path / 'callbacks.sqlite3'}")
    waited: list[str] = []
    run_trigger = TwilioMessageStatusTrigger.run

    def recorded(self):
        waited.append(self.message_sid)
        return run_trigger(self)

    monkeypatch.setattr(TwilioMessageStatusTrigger, "run", recorded)
    dag = load("example_twilio_deferrable_status")
    dag.get_task("wait").poke_interval = 0.2  # the trigger's backup poll, short for the test (no receiver)
    run = dag.test()

    assert run.state == "success"
    [message] = sandbox.messages()
    assert waited == [message["sid"]]  # the wait ran in the trigger
    assert xcom(run, "wait") == {"status": "delivered", "errorCode": None, "errorMessage": None}

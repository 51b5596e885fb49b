"""The trigger form is complete as offered: `from` has the deployment default ($TWILIO_DEFAULT_FROM), and the
cross-field rules Airflow cannot check at trigger time are stated in the descriptions (issue 14 point 5)."""

from __future__ import annotations

import pytest

from tests.workflow.test_workflow_dag import DAG_ID, load_dag, xcom

SENDER = "+15005550006"


def test_from_defaults_to_the_deployment_sender(monkeypatch):
    monkeypatch.setenv("TWILIO_DEFAULT_FROM", SENDER)
    params = load_dag().params
    assert params.get_param("from").value == SENDER
    assert "TWILIO_DEFAULT_FROM" in params.get_param("from").description
    monkeypatch.delenv("TWILIO_DEFAULT_FROM")
    assert load_dag().params.get_param("from").value is None  # no deployment default: empty, as before


@pytest.mark.parametrize("name", ["from", "messagingServiceSid", "body"])
def test_rules_airflow_cannot_check_are_stated(name):
    description = load_dag().params.get_param(name).description
    assert "Airflow cannot check this rule when the run is triggered" in description, description


def test_a_malformed_deployment_sender_fails_the_parse(monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    from tests.workflow.test_workflow_dag import DAG_FILE

    monkeypatch.setenv("TWILIO_DEFAULT_FROM", "not a sender!")
    errors = DagBag(dag_folder=str(DAG_FILE)).import_errors
    assert any("TWILIO_DEFAULT_FROM='not a sender!'" in text for text in errors.values()), errors


@pytest.fixture
def sandbox_default_from(monkeypatch, airflow_db, clean_sandbox):
    monkeypatch.setenv("AIRFLOW_CONN_TWILIO_DEFAULT", clean_sandbox.conn_json())
    monkeypatch.setenv("TWILIO_DEFAULT_FROM", SENDER)
    return clean_sandbox


def test_the_form_as_offered_sends(sandbox_default_from):
    run = load_dag().test(run_conf={"to": "+15551230401", "body": "from the default sender"})
    assert run.state == "success"
    [message] = sandbox_default_from.messages()
    assert message["from"] == SENDER


def test_a_messaging_service_replaces_the_default_sender(sandbox_default_from):
    service = "MG" + "a" * 32
    # The UI form submits the default `from` along with the service the user typed.
    conf = {"to": "+15551230402", "from": SENDER, "messagingServiceSid": service, "body": "via service"}
    run = load_dag().test(run_conf=conf)
    assert xcom(run, "sendMessage", "sendError") is None
    [message] = sandbox_default_from.messages()
    assert message["messaging_service_sid"] == service
    assert run.dag_id == DAG_ID and run.state == "success"

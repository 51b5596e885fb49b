"""The DAG agrees with the Arazzo workflow it implements (the copy shipped in dags/workflows/)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from twilio_messaging import contract
from twilio_messaging.connection import TwilioConnection
from twilio_messaging.forms import create_form
from twilio_messaging.operators.twilio import resolve_account_sid
from twilio_messaging.outputs import SEND_OUTPUTS, status_report
from twilio_messaging.retry import Verdict, classify_status
from twilio_messaging.statuses import end_state
from twilio_messaging.validation import InvalidInput, validate_inputs
from twilio_messaging.workflow import outcome as decide
from twilio_messaging.workflow.arazzo import load_workflow

REPO = Path(__file__).resolve().parents[2]
ARAZZO = REPO / "dags" / "workflows" / "twilio-send-message-track-status-workflow.yml"
ACCOUNT = "AC0123456789abcdef0123456789abcdef"

# Arazzo-required inputs that the DAG does not require, and what stands in for them.
RELAXED_INPUTS = {
    "accountSid": "falls back to the login of the connection twilio_default",
    "from": "or messagingServiceSid (exactly one of them)",
    "body": "or mediaUrl (at least one of them)",
}
EXTRA_INPUTS = {"mediaUrl", "messagingServiceSid", "sendAt"}


@pytest.fixture(scope="module")
def flow():
    _, flow = load_workflow(ARAZZO, "send-message-track-status")
    return flow


@pytest.fixture(scope="module")
def dag():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags" / "twilio_send_message_track_status.py"))
    assert bag.import_errors == {}
    return bag.dags["twilio_send_message_track_status"]


def _required_params(dag) -> set[str]:
    from airflow.sdk.definitions._internal.types import NOTSET

    return {name for name in dag.params if dag.params.get_param(name).value is NOTSET}


def test_every_step_has_its_task(flow, dag):
    step_ids = [step["stepId"] for step in flow["steps"]]
    assert step_ids == ["sendMessage", "checkStatus"]
    for step_id in step_ids:
        assert dag.has_task(step_id), step_id
    assert dag.get_task("sendMessage").downstream_task_ids == {"checkStatus"}


def test_inputs_and_params_agree(flow, dag):
    properties = set(flow["inputs"]["properties"])
    arazzo_required = set(flow["inputs"]["required"])
    assert set(dag.params.keys()) == properties | EXTRA_INPUTS
    # Required in Arazzo <=> required param, except the inputs with a documented stand-in.
    assert _required_params(dag) == arazzo_required - set(RELAXED_INPUTS)
    assert set(RELAXED_INPUTS) <= arazzo_required


def test_account_sid_falls_back_to_the_connection_login():
    connection = TwilioConnection(base_url="http://127.0.0.1:1", username=ACCOUNT, secret="s")
    assert resolve_account_sid(None, connection) == ACCOUNT
    assert resolve_account_sid("AC" + "f" * 32, connection) == "AC" + "f" * 32
    api_key = TwilioConnection(base_url="http://127.0.0.1:1", username="SK" + "0" * 32, secret="s")
    with pytest.raises(InvalidInput, match="accountSid"):
        resolve_account_sid(None, api_key)


def test_from_and_body_stand_ins_are_enforced():
    assert validate_inputs({"to": "+15551234567", "messagingServiceSid": "MG" + "a" * 32, "body": "x"})
    assert validate_inputs({"to": "+15551234567", "from": "+15005550006", "mediaUrl": ["https://e.x/a.png"]})
    with pytest.raises(InvalidInput, match="from/messagingServiceSid"):
        validate_inputs({"to": "+15551234567", "body": "x"})
    with pytest.raises(InvalidInput, match="body/mediaUrl"):
        validate_inputs({"to": "+15551234567", "from": "+15005550006"})


def test_send_payload_matches_the_arazzo_request_body(flow):
    step = flow["steps"][0]
    assert step["operationId"] == "createMessage"
    assert step["requestBody"]["contentType"] == "application/x-www-form-urlencoded"
    payload = step["requestBody"]["payload"]
    inputs = {
        "to": "+15551234567",
        "from": "+15005550006",
        "body": "hi",
        "statusCallback": "https://cb.example/s",
    }
    form = create_form(validate_inputs(inputs))
    assert set(form) == set(payload)
    for field, expression in payload.items():
        assert form[field] == inputs[expression.removeprefix("$inputs.")]
    # Optional fields that are empty are left out.
    assert "StatusCallback" not in create_form(validate_inputs({**inputs, "statusCallback": None}))
    assert [p["value"] for p in step["parameters"]] == ["$inputs.accountSid"]


def test_success_criteria(flow):
    send, check = flow["steps"]
    assert send["successCriteria"] == [{"condition": "$statusCode == 201"}]
    assert check["successCriteria"] == [{"condition": "$statusCode == 200"}]
    assert classify_status(201) is Verdict.DONE and classify_status(200) is Verdict.DONE


def test_step_outputs_are_published(flow, dag):
    send, check = flow["steps"]
    assert set(send["outputs"]) <= set(SEND_OUTPUTS)
    assert set(check["outputs"]) <= set(status_report({}))
    sensor = dag.get_task("checkStatus")
    assert check["operationId"] == "fetchMessage"
    assert {p["name"] for p in check["parameters"]} == {"AccountSid", "MessageSid"}
    # fetchMessage's AccountSid and MessageSid are sendMessage's published outputs.
    sources = {field: getattr(sensor, field) for field in ("account_sid", "message_sid")}
    assert {f: (arg.operator.task_id, arg.key) for f, arg in sources.items()} == {
        "account_sid": ("sendMessage", "accountSid"),
        "message_sid": ("sendMessage", "messageSid"),
    }


def test_end_criteria_match_the_status_routing(flow, dag):
    ends = {end["name"]: end for end in flow["steps"][1]["onSuccess"]}
    assert set(ends) == {"delivered", "failed"}
    assert dag.get_task(contract.BRANCH_TASK).downstream_task_ids == set(ends)
    for name, end in ends.items():
        assert end["type"] == "end"
        statuses = re.findall(r'\$\.status == "(\w+)"', end["criteria"][0]["condition"])
        assert statuses, end
        for status in statuses:
            assert end_state(status) == name, status


def test_workflow_outputs_are_produced_by_both_end_tasks(flow):
    expected = {name: expr.split(".")[-1] for name, expr in flow["outputs"].items()}
    assert set(expected) == {"messageSid", "finalStatus"}
    assert set(expected) <= set(contract.WORKFLOW_OUTPUTS)
    # Both end tasks publish the same outputs, from one outcome.
    outcome = decide.decide_outcome(
        {"messageSid": "SM" + "1" * 32, "accountSid": ACCOUNT}, {"status": "delivered", "errorCode": None}
    )
    assert decide.workflow_outputs(outcome) == {
        "messageSid": "SM" + "1" * 32,
        "finalStatus": "delivered",
        "errorCode": None,
    }

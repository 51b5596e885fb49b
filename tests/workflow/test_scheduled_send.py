"""A scheduled send through the workflow DAG (``dag.test``) against a sandbox on a compressed clock.

``sendAt`` goes out as ScheduleType=fixed + SendAt with the Messaging Service; the message is ``scheduled``
first, which checkStatus must treat as still in flight, then ``queued`` at SendAt and delivered. At
--time-scale 300 a SendAt seven minutes ahead comes due after 1.4 s.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

import pytest

from sandbox.testing import Sandbox, run_sandbox
from tests.workflow.test_workflow_dag import load_dag, outputs, task_states, xcom
from twilio_messaging.statuses import end_state, is_terminal

SERVICE = "MG0123456789abcdef0123456789abcdef"


@pytest.fixture(scope="module")
def scheduling_sandbox() -> Iterator[Sandbox]:
    with run_sandbox("--step-delay", "1", "--time-scale", "300") as sb:
        yield sb


@pytest.fixture
def use_scheduling_sandbox(monkeypatch, airflow_db, scheduling_sandbox: Sandbox) -> Sandbox:
    scheduling_sandbox.reset()
    monkeypatch.setenv("AIRFLOW_CONN_TWILIO_DEFAULT", scheduling_sandbox.conn_json())
    return scheduling_sandbox


def test_scheduled_is_not_final() -> None:
    assert not is_terminal("scheduled") and end_state("scheduled") is None


def test_a_scheduled_send_is_tracked_until_delivered(use_scheduling_sandbox: Sandbox) -> None:
    sb = use_scheduling_sandbox
    send_at = (datetime.now(UTC) + timedelta(minutes=7)).replace(microsecond=0)
    run = load_dag().test(
        run_conf={
            "to": "+15551230001",
            "messagingServiceSid": SERVICE,
            "body": "scheduled workflow test",
            "sendAt": send_at.isoformat(),
        }
    )

    assert run.state == "success"
    assert task_states(run)["delivered"] == "success"
    [message] = sb.messages()
    assert message["messaging_service_sid"] == SERVICE and message["status"] == "delivered"
    assert abs((parsedate_to_datetime(message["date_sent"]) - send_at).total_seconds()) <= 3
    assert xcom(run, "sendMessage", "initialStatus") == "scheduled"
    # checkStatus saw 'scheduled' and kept polling instead of stopping there.
    assert sb.stats()["requests"]["fetch"] >= 2
    assert outputs(run, "delivered") == {
        "messageSid": message["sid"],
        "finalStatus": "delivered",
        "errorCode": None,
    }


def test_send_at_without_a_messaging_service_fails_before_sending(use_scheduling_sandbox: Sandbox) -> None:
    send_at = datetime.now(UTC) + timedelta(hours=1)
    run = load_dag().test(
        run_conf={"to": "+15551230001", "from": "+15005550006", "body": "x", "sendAt": send_at.isoformat()}
    )
    assert run.state == "failed"
    assert use_scheduling_sandbox.messages() == []
    error = xcom(run, "sendMessage", "sendError")
    assert "'sendAt/messagingServiceSid'" in error["errorMessage"]

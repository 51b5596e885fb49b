"""The send-and-track DAG end to end with ``dag.test``, against a real sandbox process, one test per path."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from sandbox.testing import run_sandbox

REPO = Path(__file__).resolve().parents[2]
DAG_FILE = REPO / "dags" / "twilio_send_message_track_status.py"
DAG_ID = "twilio_send_message_track_status"
FROM = "+15005550006"


def load_dag():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAG_FILE))
    assert bag.import_errors == {}
    return bag.dags[DAG_ID]


@pytest.fixture
def use_sandbox(monkeypatch, airflow_db, clean_sandbox):
    monkeypatch.setenv("AIRFLOW_CONN_TWILIO_DEFAULT", clean_sandbox.conn_json())
    return clean_sandbox


def task_states(run) -> dict[str, str | None]:
    from airflow.models import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = session.query(TaskInstance).filter_by(dag_id=DAG_ID, run_id=run.run_id).all()
        return {
            ti.task_id: None if ti.state is None else str(getattr(ti.state, "value", ti.state)) for ti in tis
        }


def try_number(run, task_id: str) -> int:
    from airflow.models import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        return (
            session.query(TaskInstance)
            .filter_by(dag_id=DAG_ID, run_id=run.run_id, task_id=task_id)
            .one()
            .try_number
        )


def xcom(run, task_id: str, key: str = "return_value") -> Any:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = (
            session.query(XComModel)
            .filter_by(dag_id=DAG_ID, run_id=run.run_id, task_id=task_id, key=key)
            .one_or_none()
        )
        return None if row is None else XComModel.deserialize_value(row)


def outputs(run, end_task: str) -> dict[str, Any]:
    return {key: xcom(run, end_task, key) for key in ("messageSid", "finalStatus", "errorCode")}


def stored_text(run) -> str:
    """Every XCom value and rendered template field of the run, as text (to look for leaked secrets)."""
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        xcoms = session.query(XComModel).filter_by(dag_id=DAG_ID, run_id=run.run_id).all()
        rendered = session.query(RenderedTaskInstanceFields).filter_by(dag_id=DAG_ID, run_id=run.run_id).all()
        return repr([XComModel.deserialize_value(x) for x in xcoms]) + repr(
            [r.rendered_fields for r in rendered]
        )


def conf(to: str, **extra: Any) -> dict[str, Any]:
    return {"to": to, "from": FROM, "body": f"workflow test to {to}", **extra}


def test_delivered(use_sandbox):
    run = load_dag().test(run_conf=conf("+15551230001"))

    assert run.state == "success"
    states = task_states(run)
    assert states == {
        "sendMessage": "success",
        "checkStatus": "success",
        "routeByStatus": "success",
        "delivered": "success",
        "failed": "skipped",
    }
    [message] = use_sandbox.messages()
    assert xcom(run, "sendMessage", "messageSid") == message["sid"]
    assert xcom(run, "sendMessage", "initialStatus") == "queued"
    assert xcom(run, "sendMessage", "accountSid") == use_sandbox.account_sid  # fell back to the login
    assert xcom(run, "checkStatus") == {"status": "delivered", "errorCode": None, "errorMessage": None}
    assert outputs(run, "delivered") == {
        "messageSid": message["sid"],
        "finalStatus": "delivered",
        "errorCode": None,
    }
    assert message["body"] == "workflow test to +15551230001" and message["from"] == FROM
    text = stored_text(run)
    assert message["sid"] in text and f"/Messages/{message['sid']}.json" in text  # the rendered endpoint
    assert use_sandbox.auth_token not in text


@pytest.mark.parametrize(
    ("to", "status", "code"),
    [("+15551233003", "undelivered", 30003), ("+15551233008", "failed", 30008)],
    ids=["undelivered", "failed"],
)
def test_carrier_failure_fails_the_run(use_sandbox, to, status, code):
    run = load_dag().test(run_conf=conf(to))

    assert run.state == "failed"
    states = task_states(run)
    assert states["checkStatus"] == "success"
    assert states["delivered"] == "skipped" and states["failed"] == "failed"
    [message] = use_sandbox.messages()
    assert outputs(run, "failed") == {"messageSid": message["sid"], "finalStatus": status, "errorCode": code}
    assert xcom(run, "checkStatus")["status"] == status


def test_canceled_while_queued(monkeypatch, airflow_db):
    with run_sandbox("--step-delay", "5") as sb:
        monkeypatch.setenv("AIRFLOW_CONN_TWILIO_DEFAULT", sb.conn_json())
        canceled: list[int] = []

        def cancel_when_created() -> None:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if messages := sb.messages():
                    sid = messages[0]["sid"]
                    response = httpx.post(
                        f"{sb.base_url}/2010-04-01/Accounts/{sb.account_sid}/Messages/{sid}.json",
                        data={"Status": "canceled"},
                        auth=(sb.account_sid, sb.auth_token),
                        trust_env=False,
                    )
                    canceled.append(response.status_code)
                    return
                time.sleep(0.05)

        canceller = threading.Thread(target=cancel_when_created, daemon=True)
        canceller.start()
        run = load_dag().test(run_conf=conf("+15551230002"))
        canceller.join(timeout=5)

        assert canceled == [200]
        assert run.state == "failed"
        [message] = sb.messages()
        assert message["status"] == "canceled"
        assert outputs(run, "failed") == {
            "messageSid": message["sid"],
            "finalStatus": "canceled",
            "errorCode": None,
        }
        assert task_states(run)["delivered"] == "skipped"


def test_stuck_in_sent_times_out_as_unconfirmed(use_sandbox, monkeypatch):
    monkeypatch.setenv("TWILIO_STATUS_TIMEOUT", "4")  # read at parse time: load_dag() re-parses the file
    dag = load_dag()
    assert dag.get_task("checkStatus").timeout == 4

    run = dag.test(run_conf=conf("+15551237777"))

    assert run.state == "failed"
    states = task_states(run)
    assert states["checkStatus"] == "failed"  # AirflowSensorTimeout: not retried
    assert states["routeByStatus"] == "success" and states["failed"] == "failed"
    [message] = use_sandbox.messages()
    assert message["status"] == "sent"
    assert outputs(run, "failed") == {
        "messageSid": message["sid"],
        "finalStatus": "sent (delivery unconfirmed)",
        "errorCode": None,
    }


def test_4xx_on_send_is_final(use_sandbox):
    run = load_dag().test(run_conf=conf("+15005550001"))  # Twilio's magic "invalid To" number

    assert run.state == "failed"
    states = task_states(run)
    assert states["sendMessage"] == "failed"
    assert states["checkStatus"] == "upstream_failed"
    assert states["failed"] == "failed" and states["delivered"] == "skipped"
    assert use_sandbox.messages() == []
    assert use_sandbox.stats()["requests"]["create"] == 1  # no retry of a 4xx
    assert outputs(run, "failed") == {"messageSid": None, "finalStatus": None, "errorCode": 21211}


def test_bad_credentials(use_sandbox, monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_TWILIO_DEFAULT", use_sandbox.conn_json().replace("sandbox-auth-token", "wrong")
    )
    run = load_dag().test(run_conf=conf("+15551230003"))

    assert run.state == "failed"
    assert task_states(run)["sendMessage"] == "failed"
    assert use_sandbox.messages() == []
    assert outputs(run, "failed")["errorCode"] == 20003
    error = xcom(run, "sendMessage", "sendError")["errorMessage"]
    assert "twilio_default" in error and "wrong" not in error


@pytest.mark.parametrize("mode", ["drop", "500"])
def test_lost_response_on_send_creates_exactly_one_message(use_sandbox, mode):
    # Every create is stored but its response is lost (connection dropped, or a 500 after storing):
    # the client must find the message instead of sending it again.
    use_sandbox.set_faults(rate_lost_response=1.0, lost_response_mode=mode)
    run = load_dag().test(run_conf=conf("+15551230004"))

    assert run.state == "success"
    [message] = use_sandbox.messages()
    stats = use_sandbox.stats()
    assert stats["faults"]["lost_response"] == 1
    assert stats["requests"]["create"] == 1 and stats["requests"]["list"] >= 1  # looked up, not resent
    assert outputs(run, "delivered")["messageSid"] == message["sid"]


@pytest.mark.parametrize(
    ("bad_conf", "error"),
    [
        ({"from": FROM, "body": "no recipient"}, "ParamValidationError"),
        ({"to": "5551234", "from": FROM, "body": "x"}, "ParamValidationError"),
        ({"to": "+15551234567", "from": FROM, "body": ""}, "ParamValidationError"),
        ({"to": "+15551234567", "from": FROM, "body": "x", "accountSid": "AC123"}, "ParamValidationError"),
        ({"to": "+15551234567", "from": FROM, "mediaUrl": ["ftp://x/y.png"]}, "ParamValidationError"),
        (
            {"to": "+15551234567", "from": FROM, "body": "x", "mediaUrl": ["https://x/a"] * 11},
            "ParamValidationError",
        ),
    ],
)
def test_invalid_conf_refused_at_trigger_time(use_sandbox, bad_conf, error):
    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError):
        load_dag().test(run_conf=bad_conf)
    assert use_sandbox.messages() == []
    assert sum(use_sandbox.stats()["requests"].values()) == 0


@pytest.mark.parametrize(
    ("bad_conf", "field"),
    [
        ({"to": "+15551234567", "body": "no sender"}, "from/messagingServiceSid"),
        (
            {"to": "+15551234567", "from": FROM, "messagingServiceSid": "MG" + "a" * 32, "body": "x"},
            "from/messagingServiceSid",
        ),
        ({"to": "+15551234567", "from": FROM}, "body/mediaUrl"),
        ({"to": "+15551234567", "from": FROM, "body": "x", "Body": "typo"}, "Body"),
    ],
)
def test_cross_field_rules_fail_before_any_request(use_sandbox, bad_conf, field):
    run = load_dag().test(run_conf=bad_conf)

    assert run.state == "failed"
    assert task_states(run)["sendMessage"] == "failed"
    assert use_sandbox.messages() == []
    assert sum(use_sandbox.stats()["requests"].values()) == 0
    reason = xcom(run, "routeByStatus", "outcome")["reason"]
    assert f"Invalid input for '{field}'" in reason
    assert outputs(run, "failed") == {"messageSid": None, "finalStatus": None, "errorCode": None}


def test_status_404_fails_the_sensor_instead_of_polling(monkeypatch, airflow_db):
    # The message disappears right after it is created: checkStatus must fail on the 404, not keep polling.
    with run_sandbox("--step-delay", "5") as sb:
        monkeypatch.setenv("AIRFLOW_CONN_TWILIO_DEFAULT", sb.conn_json())

        def delete_when_created() -> None:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if messages := sb.messages():
                    httpx.delete(
                        f"{sb.base_url}/2010-04-01/Accounts/{sb.account_sid}/Messages/{messages[0]['sid']}.json",
                        auth=(sb.account_sid, sb.auth_token),
                        trust_env=False,
                    )
                    return
                time.sleep(0.02)

        deleter = threading.Thread(target=delete_when_created, daemon=True)
        deleter.start()
        run = load_dag().test(run_conf=conf("+15551230005"))
        deleter.join(timeout=5)

        assert run.state == "failed"
        states = task_states(run)
        assert states["checkStatus"] == "failed" and states["failed"] == "failed"
        outcome = xcom(run, "routeByStatus", "outcome")
        assert outcome["finalStatus"] == "unknown (delivery unconfirmed)"
        assert try_number(run, "checkStatus") == 4  # retried (apache/airflow#71172 guard), never polled on
        assert "20404" in outcome["reason"]
        assert sb.stats()["requests"]["fetch"] >= 2  # the sensor's poke(s) and the branch's last look


def test_status_timeline_is_stored_and_published(monkeypatch, airflow_db):
    from twilio_messaging.timeline import read_timeline, timeline_path

    with run_sandbox("--step-delay", "1") as sb:
        monkeypatch.setenv("AIRFLOW_CONN_TWILIO_DEFAULT", sb.conn_json())
        run = load_dag().test(run_conf=conf("+15551230006"))

    assert run.state == "success"
    stored = read_timeline(timeline_path(DAG_ID, run.run_id))
    assert stored and stored[-1]["status"] == "delivered" and stored[-1]["errorCode"] is None
    assert len(stored) >= 2, stored  # queued/sending/sent seen before delivered (1 s steps, 1 s pokes)
    assert [e["at"] for e in stored] == sorted(e["at"] for e in stored)
    assert xcom(run, "checkStatus", "statusTimeline") == stored
    assert xcom(run, "delivered", "statusTimeline") == stored


def test_status_timeline_on_the_failed_end_after_a_timeout(use_sandbox, monkeypatch):
    from twilio_messaging.timeline import read_timeline, timeline_path

    monkeypatch.setenv("TWILIO_STATUS_TIMEOUT", "3")
    run = load_dag().test(run_conf=conf("+15551237777"))

    assert run.state == "failed"
    stored = read_timeline(timeline_path(DAG_ID, run.run_id))
    assert stored and {e["status"] for e in stored} == {"sent"}
    assert xcom(run, "failed", "statusTimeline") == stored

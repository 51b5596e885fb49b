"""Every DAG in dags/ imports cleanly, and the send-and-track DAG has the shape of its diagram."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DAG_ID = "twilio_send_message_track_status"


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO / "dags"))


@pytest.fixture(scope="module")
def dag(dagbag):
    return dagbag.dags[DAG_ID]


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert DAG_ID in dagbag.dag_ids
    # Every Python file in dags/ that defines a DAG was loaded (nothing silently ignored).
    loaded = {Path(d.fileloc).resolve() for d in dagbag.dags.values()}
    dag_files = {
        p.resolve()
        for p in (REPO / "dags").rglob("*.py")
        if "DAG(" in p.read_text() or "@dag" in p.read_text()
    }
    assert dag_files <= loaded


def test_dag_settings(dag):
    assert dag.timetable.__class__.__name__ == "NullTimetable"  # schedule=None: triggered with conf only
    assert {"twilio", "sms"} <= set(dag.tags)
    assert "Sends a message via the Twilio REST API" in dag.doc_md  # the workflow's description
    assert "delivered" in dag.doc_md and "failed" in dag.doc_md


def test_structure_reads_like_the_diagram(dag):
    from airflow.providers.http.sensors.http import HttpSensor
    from airflow.providers.standard.operators.python import BranchPythonOperator, PythonOperator

    from twilio_messaging.operators.twilio import TwilioSendMessageOperator
    from twilio_messaging.sensors.twilio import TwilioMessageStatusSensor
    from twilio_messaging.workflow.inputs import SendMessageFromParams

    tasks = {t.task_id: t for t in dag.tasks}
    assert set(tasks) == {"sendMessage", "checkStatus", "routeByStatus", "delivered", "failed"}
    # The provider's operator, reading the trigger form (the workflow's own subclass, in the app layer).
    assert type(tasks["sendMessage"]) is SendMessageFromParams
    assert SendMessageFromParams.__bases__ == (TwilioSendMessageOperator,)
    assert tasks["sendMessage"].twilio_conn_id == "twilio_default"
    assert type(tasks["checkStatus"]) is TwilioMessageStatusSensor and isinstance(
        tasks["checkStatus"], HttpSensor
    )
    assert type(tasks["routeByStatus"]) is BranchPythonOperator
    assert type(tasks["delivered"]) is PythonOperator and type(tasks["failed"]) is PythonOperator

    assert tasks["sendMessage"].downstream_task_ids == {"checkStatus"}
    assert tasks["checkStatus"].downstream_task_ids == {"routeByStatus"}
    assert tasks["routeByStatus"].downstream_task_ids == {"delivered", "failed"}
    assert tasks["delivered"].downstream_task_ids == set() and tasks["failed"].downstream_task_ids == set()

    assert tasks["routeByStatus"].trigger_rule == "all_done"
    assert tasks["delivered"].trigger_rule == "all_success" and tasks["failed"].trigger_rule == "all_success"


def test_sensor_configuration(dag):
    sensor = dag.get_task("checkStatus")
    assert sensor.mode == "reschedule"
    assert sensor.http_conn_id == "twilio_default"
    assert sensor.method == "GET"
    # The message comes from sendMessage's outputs (XComArgs, so no task id inside a Jinja string).
    from airflow.sdk.definitions.xcom_arg import PlainXComArg

    for field, key in (("message_sid", "messageSid"), ("account_sid", "accountSid"), ("sent_at", "sentAt")):
        arg = getattr(sensor, field)
        assert isinstance(arg, PlainXComArg) and (arg.operator.task_id, arg.key) == ("sendMessage", key)
        assert field in sensor.template_fields
    # 429 and 5xx keep polling; a 404 (or any other 4xx) for a message we just created is an error.
    assert set(sensor.response_error_codes_allowlist) == {"429", "500", "502", "503", "504"}
    assert not any("404".startswith(code) for code in sensor.response_error_codes_allowlist)
    assert "accountSid" in sensor.endpoint and "messageSid" in sensor.endpoint
    assert "password" not in sensor.endpoint and "conn" not in sensor.endpoint
    # apache/airflow#71172: reschedule sensors need retries to survive the scheduler race.
    assert sensor.retries >= 2
    assert sensor.exponential_backoff is True
    assert sensor.max_wait is not None


def test_sensor_timings_come_from_the_environment(dag):
    # tests/conftest.py sets TWILIO_POKE_INTERVAL=1 and TWILIO_STATUS_TIMEOUT=30 before parsing.
    import os

    sensor = dag.get_task("checkStatus")
    assert sensor.poke_interval == float(os.environ["TWILIO_POKE_INTERVAL"])
    assert sensor.timeout == float(os.environ["TWILIO_STATUS_TIMEOUT"])
    assert sensor.retry_delay <= timedelta(seconds=60)


def test_production_defaults_without_env(monkeypatch):
    from twilio_messaging.settings import tracking_settings

    settings = tracking_settings({})
    assert (settings.poke_interval, settings.timeout, settings.max_wait) == (60.0, 86400.0, 900.0)
    assert settings.exponential_backoff and settings.retries == 3


def test_send_task_retries_only_what_is_safe(dag):
    send = dag.get_task("sendMessage")
    # Retries exist for an unreachable Twilio; 4xx and bad input raise AirflowFailException (never retried).
    assert send.retries >= 1


def test_params_have_titles_descriptions_and_only_to_is_required(dag):
    params = dag.params
    assert set(params.keys()) == {
        "accountSid",
        "to",
        "from",
        "body",
        "statusCallback",
        "mediaUrl",
        "messagingServiceSid",
        "sendAt",
    }
    for name in params:
        param = params.get_param(name)
        assert param.schema.get("title"), name
        assert param.description, name
    from airflow.sdk.definitions._internal.types import NOTSET

    required = {name for name in params if params.get_param(name).value is NOTSET}
    assert required == {"to"}


def test_twilio_calls_share_the_pool_and_idempotent_tasks_survive_a_lost_worker(dag):
    for task_id in ("sendMessage", "checkStatus"):
        assert dag.get_task(task_id).pool == "twilio_api", task_id
    assert dag.get_task("routeByStatus").retries >= 1
    assert dag.get_task("delivered").retries >= 1
    assert dag.get_task("failed").retries == 0  # it fails the run on purpose

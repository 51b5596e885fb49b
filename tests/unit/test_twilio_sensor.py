"""TwilioMessageStatusSensor: templating, the deadline from the send, transient codes and the status timeline,
poked against the sandbox process."""

from __future__ import annotations

import json
import time
import warnings
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from twilio_messaging.hooks.twilio import TwilioHook
from twilio_messaging.sensors.twilio import TwilioMessageStatusSensor
from twilio_messaging.timeline import read_timeline, timeline_path
from twilio_messaging.validation import validate_message

DAG_ID = "sensor_unit"


class FakeTI:
    def __init__(self, run_id: str) -> None:
        self.dag_id, self.run_id, self.task_id = DAG_ID, run_id, "wait"
        self.pushed: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = json.loads(json.dumps(value))  # what XCom would store


@pytest.fixture
def env(clean_sandbox, monkeypatch, tmp_path):
    monkeypatch.setenv("AIRFLOW_CONN_TWILIO_DEFAULT", clean_sandbox.conn_json())
    monkeypatch.setenv("TWILIO_STORAGE", f"file://{tmp_path}")
    return clean_sandbox


def send(to: str) -> str:
    with TwilioHook().get_client() as client:
        return client.create_message(validate_message(to, "+15005550006", "sensor test"))["sid"]


def rendered(
    request, params: dict[str, Any] | None = None, **kwargs: Any
) -> tuple[TwilioMessageStatusSensor, dict[str, Any]]:
    """A sensor whose templates are rendered against a minimal context, as the task runner does first."""
    sensor = TwilioMessageStatusSensor(task_id="wait", **kwargs)
    ti = FakeTI(f"run_{request.node.name}")
    context: dict[str, Any] = {"ti": ti, "params": params or {}}
    sensor.render_template_fields(context)  # type: ignore[arg-type]
    return sensor, context


def test_message_sid_is_templated_and_the_endpoint_is_the_message_url(env, request):
    sid = send("+15551230101")
    sensor, _ = rendered(request, {"sid": sid}, message_sid="{{ params.sid }}")
    assert sensor.message_sid == sid
    assert sensor.endpoint == f"/2010-04-01/Accounts/{env.account_sid}/Messages/{sid}.json"
    assert {"message_sid", "account_sid", "sent_at", "twilio_conn_id"} <= set(sensor.template_fields)
    assert sensor.mode == "reschedule" and sensor.deferrable is False


def test_done_on_a_final_status_with_the_timeline(env, request):
    sid = send("+15551233003")  # undelivered, 30003
    sensor, context = rendered(request, message_sid=sid, sent_at=datetime.now(UTC).isoformat())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = sensor.poke(context)  # type: ignore[arg-type]
    assert not isinstance(result, bool) and result.is_done
    assert result.xcom_value == {
        "status": "undelivered",
        "errorCode": 30003,
        "errorMessage": "Unreachable destination handset",
    }
    ti = context["ti"]
    [entry] = ti.pushed["statusTimeline"]
    assert entry["status"] == "undelivered" and entry["errorCode"] == 30003
    assert datetime.fromisoformat(entry["at"]).tzinfo is not None
    assert read_timeline(timeline_path(DAG_ID, ti.run_id)) == ti.pushed["statusTimeline"]
    # issue 14 point 6: HttpSensor.poke's determine_kwargs import warned on every poke; this poke does not.
    assert [w for w in caught if "determine_kwargs" in str(w.message)] == []


def test_every_poke_appends_to_the_same_timeline(env, request):
    sid = send("+15551237777")  # stays "sent"
    sensor, context = rendered(request, message_sid=sid, sent_at=datetime.now(UTC).isoformat())
    assert sensor.poke(context) is False  # type: ignore[arg-type]
    # A sensor retry is a new operator instance on the same run: it appends to the same file.
    again, _ = rendered(request, message_sid=sid, sent_at=datetime.now(UTC).isoformat())
    assert again.poke(context) is False  # type: ignore[arg-type]
    stored = read_timeline(timeline_path(DAG_ID, context["ti"].run_id))
    assert [e["status"] for e in stored] == ["sent", "sent"]
    assert "statusTimeline" not in context["ti"].pushed  # only when it finishes


def test_the_deadline_counts_from_the_send(env, request):
    from airflow.sdk.exceptions import AirflowSensorTimeout

    sid = send("+15551237777")
    old = (datetime.now(UTC) - timedelta(seconds=61)).isoformat()
    sensor, context = rendered(request, message_sid=sid, sent_at=old, timeout=60)
    with pytest.raises(AirflowSensorTimeout, match="still 'sent' 60 s after sending"):
        sensor.poke(context)  # type: ignore[arg-type]
    assert [e["status"] for e in context["ti"].pushed["statusTimeline"]] == ["sent"]
    # A final status still wins after the deadline.
    delivered = send("+15551230102")
    sensor, context = rendered(request, message_sid=delivered, sent_at=old, timeout=60)
    assert sensor.poke(context).is_done  # type: ignore[arg-type,union-attr]


def test_without_sent_at_the_deadline_counts_from_twilios_date_created(env, request):
    from airflow.sdk.exceptions import AirflowSensorTimeout

    sid = send("+15551237777")
    sensor, context = rendered(request, message_sid=sid, timeout=1)
    assert sensor.poke(context) is False  # type: ignore[arg-type]
    time.sleep(2.1)  # date_created has a resolution of one second
    with pytest.raises(AirflowSensorTimeout):
        sensor.poke(context)  # type: ignore[arg-type]


def test_transient_codes_keep_polling_and_404_fails(env, request):
    from airflow.sdk.exceptions import AirflowException

    sid = send("+15551230103")
    sensor, context = rendered(request, message_sid=sid)
    assert set(sensor.response_error_codes_allowlist) == {"429", "500", "502", "503", "504"}
    env.set_faults(rate_429=1.0, retry_after=None)
    assert sensor.poke(context) is False  # type: ignore[arg-type]
    env.set_faults(rate_429=0.0, rate_5xx=1.0)
    assert sensor.poke(context) is False  # type: ignore[arg-type]
    env.clear_faults()
    assert read_timeline(timeline_path(DAG_ID, context["ti"].run_id)) == []  # nothing was observed
    missing, context = rendered(request, message_sid="SM" + "0" * 32)
    with pytest.raises(AirflowException, match=r"^404"):
        missing.poke(context)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["../../Accounts", "SM123", "{{ 7 * 7 }}x"])
def test_a_malformed_sid_fails_without_a_request(env, request, bad):
    from airflow.sdk.exceptions import AirflowFailException

    sensor, context = rendered(request, message_sid=bad)
    with pytest.raises(AirflowFailException, match="'messageSid': must match"):
        sensor.poke(context)  # type: ignore[arg-type]
    assert env.stats()["requests"].get("fetch", 0) == 0


def test_the_status_decides_so_no_response_check_is_taken():
    with pytest.raises(TypeError, match="no response_check"):
        TwilioMessageStatusSensor(
            task_id="s", message_sid="SM" + "0" * 32, response_check=lambda response: True
        )

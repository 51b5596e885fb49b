"""The Airflow callables of the DAG, called directly with stand-in context objects."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from twilio_messaging import dag_tasks

SENT_AT = datetime(2026, 1, 1, tzinfo=UTC)


class FakeTI:
    def __init__(self, xcoms: dict[tuple[str, str], Any] | None = None, try_number: int = 1) -> None:
        self.xcoms = dict(xcoms or {})
        self.pushed: dict[str, Any] = {}
        self.try_number = try_number

    def xcom_pull(self, task_ids: str, key: str = "return_value") -> Any:
        return self.xcoms.get((task_ids, key))

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


def test_send_retry_looks_up_before_sending(clean_sandbox, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_TWILIO_DEFAULT", clean_sandbox.conn_json())
    params = {"to": "+15551239999", "from": "+15005550006", "body": "retried try"}
    dag_run = SimpleNamespace(start_date=datetime.now(UTC) - timedelta(seconds=5), conf=params)

    first = dag_tasks.send_message(FakeTI(try_number=1), params, dag_run)
    # Try 2 after a try whose result was lost (e.g. the worker died after the POST): adopt, do not resend.
    ti = FakeTI(try_number=2)
    second = dag_tasks.send_message(ti, params, dag_run)

    assert second["messageSid"] == first["messageSid"]
    assert len(clean_sandbox.messages()) == 1
    assert (
        ti.pushed["messageSid"] == first["messageSid"]
        and ti.pushed["accountSid"] == clean_sandbox.account_sid
    )


def test_send_invalid_input_fails_without_retry_and_without_requests(clean_sandbox, monkeypatch):
    from airflow.sdk.exceptions import AirflowFailException

    monkeypatch.setenv("AIRFLOW_CONN_TWILIO_DEFAULT", clean_sandbox.conn_json())
    params = {"to": "+15551239999", "body": "no sender"}
    ti = FakeTI()
    with pytest.raises(AirflowFailException, match="'from/messagingServiceSid'"):
        dag_tasks.send_message(ti, params, SimpleNamespace(start_date=None, conf=params))
    assert ti.pushed["sendError"]["errorCode"] is None
    assert sum(clean_sandbox.stats()["requests"].values()) == 0


def test_send_with_api_key_login_needs_account_sid(clean_sandbox, monkeypatch):
    from airflow.sdk.exceptions import AirflowFailException

    conn = clean_sandbox.conn_json().replace(clean_sandbox.account_sid, clean_sandbox.api_key_sid)
    conn = conn.replace(clean_sandbox.auth_token, clean_sandbox.api_key_secret)
    monkeypatch.setenv("AIRFLOW_CONN_TWILIO_DEFAULT", conn)
    params = {"to": "+15551239998", "from": "+15005550006", "body": "api key"}
    with pytest.raises(AirflowFailException, match="'accountSid': is required when the login"):
        dag_tasks.send_message(FakeTI(), params, SimpleNamespace(start_date=None, conf=params))
    assert clean_sandbox.messages() == []

    params = {**params, "accountSid": clean_sandbox.account_sid}
    outputs = dag_tasks.send_message(FakeTI(), params, SimpleNamespace(start_date=None, conf=params))
    assert outputs["accountSid"] == clean_sandbox.account_sid
    assert [m["sid"] for m in clean_sandbox.messages()] == [outputs["messageSid"]]

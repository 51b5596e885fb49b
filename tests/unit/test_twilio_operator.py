"""TwilioSendMessageOperator: templating, params as data, duplicate safety and sendError, called directly
with stand-in context objects against the sandbox process."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from twilio_messaging.operators.twilio import TwilioSendMessageOperator
from twilio_messaging.workflow.inputs import SendMessageFromParams


class FakeTI:
    def __init__(self, try_number: int = 1) -> None:
        self.pushed: dict[str, Any] = {}
        self.try_number = try_number

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


def context(params: dict[str, Any], ti: FakeTI | None = None, start_date: datetime | None = None) -> Any:
    dag_run = SimpleNamespace(start_date=start_date, conf=params)
    return {"ti": ti or FakeTI(), "dag_run": dag_run, "params": params}


def from_params(**kwargs: Any) -> SendMessageFromParams:
    """The workflow's sendMessage: the provider's operator taking the trigger form's params."""
    return SendMessageFromParams(task_id="sendMessage", **kwargs)


@pytest.fixture
def sandbox_conn(clean_sandbox, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_TWILIO_DEFAULT", clean_sandbox.conn_json())
    return clean_sandbox


def test_every_argument_is_templated_and_rendered(sandbox_conn):
    op = TwilioSendMessageOperator(
        task_id="send",
        to="{{ params.number }}",
        from_="+1500555{{ '0006' }}",
        body="Run {{ run_id }}",
        media_url=["https://e.example/{{ run_id }}.png"],
        status_callback="https://cb.example/{{ run_id }}",
    )
    assert set(op.template_fields) == {
        "to", "from_", "messaging_service_sid", "body", "media_url", "status_callback", "account_sid",
        "send_at", "twilio_conn_id",
    }  # fmt: skip
    ctx = {**context({"number": "+15551239990"}), "run_id": "r1"}
    op.render_template_fields(ctx)
    assert (op.to, op.from_, op.body) == ("+15551239990", "+15005550006", "Run r1")
    assert op.media_url == ["https://e.example/r1.png"]
    outputs = op.execute(ctx)
    [message] = sandbox_conn.messages()
    assert outputs["messageSid"] == message["sid"] and message["body"] == "Run r1"
    assert set(outputs) == {"messageSid", "initialStatus", "accountSid", "sentAt"} and op.multiple_outputs


def test_params_are_data_never_templates(sandbox_conn):
    # What a trigger form holds is the user's data: a Jinja expression in it is sent as typed.
    params = {"to": "+15551239991", "from": "+15005550006", "body": "{{ conn.twilio_default.password }}"}
    op = from_params()
    ctx = context(params)
    op.render_template_fields(ctx)
    op.execute(ctx)
    [message] = sandbox_conn.messages()
    assert message["body"] == "{{ conn.twilio_default.password }}"
    assert sandbox_conn.auth_token not in repr(message)


def test_arguments_win_over_params(sandbox_conn):
    op = from_params(body="from the DAG author")
    op.execute(context({"to": "+15551239992", "from": "+15005550006", "body": "from the form"}))
    assert [m["body"] for m in sandbox_conn.messages()] == ["from the DAG author"]


def test_send_retry_looks_up_before_sending(sandbox_conn):
    params = {"to": "+15551239999", "from": "+15005550006", "body": "retried try"}
    start = datetime.now(UTC) - timedelta(seconds=5)

    first = from_params().execute(context(params, FakeTI(try_number=1), start))
    # Try 2 after a try whose result was lost (e.g. the worker died after the POST): adopt, do not resend.
    ti = FakeTI(try_number=2)
    second = from_params().execute(context(params, ti, start))

    assert second["messageSid"] == first["messageSid"]
    assert len(sandbox_conn.messages()) == 1
    assert second["accountSid"] == sandbox_conn.account_sid
    assert sandbox_conn.stats()["requests"]["list"] >= 1  # try 2 looked


def test_send_invalid_input_fails_without_retry_and_without_requests(sandbox_conn):
    from airflow.sdk.exceptions import AirflowFailException

    params = {"to": "+15551239999", "body": "no sender"}
    ti = FakeTI()
    with pytest.raises(AirflowFailException, match="'from/messagingServiceSid'"):
        from_params().execute(context(params, ti))
    assert ti.pushed["sendError"]["errorCode"] is None
    assert sum(sandbox_conn.stats()["requests"].values()) == 0


def test_unknown_conf_keys_are_refused_against_the_dags_params(sandbox_conn):
    from airflow.sdk.exceptions import AirflowFailException

    params = {"to": "+15551239997", "from": "+15005550006", "body": "x", "priority": 1}
    ctx = context(params)
    ctx["dag_run"].conf = {**params, "Body": "typo"}
    with pytest.raises(AirflowFailException, match="Invalid input for 'Body'"):
        from_params().execute(ctx)
    ctx["dag_run"].conf = params  # "priority" is one of this DAG's params: accepted
    from_params().execute(ctx)
    assert len(sandbox_conn.messages()) == 1


def test_unreachable_twilio_is_retried_and_says_so(sandbox_conn, monkeypatch):
    from airflow.sdk.exceptions import AirflowException, AirflowFailException

    import twilio_messaging.client as client_module
    from twilio_messaging.retry import RetryPolicy

    monkeypatch.setattr(client_module, "RetryPolicy", lambda: RetryPolicy(max_attempts=2, base_delay=0.01))
    sandbox_conn.set_faults(rate_429=1.0, retry_after=None)
    ti = FakeTI()
    with pytest.raises(AirflowException) as info:
        from_params().execute(context({"to": "+15551239996", "from": "+15005550006", "body": "x"}, ti))
    assert not isinstance(info.value, AirflowFailException)  # Airflow's retries apply
    assert (
        ti.pushed["sendError"]["maybeCreated"] is False
        and "unreachable" in ti.pushed["sendError"]["errorMessage"]
    )


def test_send_with_api_key_login_needs_account_sid(clean_sandbox, monkeypatch):
    from airflow.sdk.exceptions import AirflowFailException

    conn = clean_sandbox.conn_json().replace(clean_sandbox.account_sid, clean_sandbox.api_key_sid)
    conn = conn.replace(clean_sandbox.auth_token, clean_sandbox.api_key_secret)
    monkeypatch.setenv("AIRFLOW_CONN_TWILIO_DEFAULT", conn)
    params = {"to": "+15551239998", "from": "+15005550006", "body": "api key"}
    with pytest.raises(AirflowFailException, match="'accountSid': is required when the login"):
        from_params().execute(context(params))
    assert clean_sandbox.messages() == []

    params = {**params, "accountSid": clean_sandbox.account_sid}
    outputs = from_params().execute(context(params))
    assert outputs["accountSid"] == clean_sandbox.account_sid
    assert [m["sid"] for m in clean_sandbox.messages()] == [outputs["messageSid"]]

"""TwilioNotifier: templating, the default body, one SMS per event however often Airflow runs the callback,
and no exception into the callback runner; against the sandbox process."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from twilio_messaging.notifications.twilio import TwilioNotifier

FROM = "+15005550006"


@pytest.fixture
def env(clean_sandbox, monkeypatch, tmp_path):
    monkeypatch.setenv("AIRFLOW_CONN_TWILIO_DEFAULT", clean_sandbox.conn_json())
    monkeypatch.setenv("TWILIO_STORAGE", f"file://{tmp_path}")
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "http://airflow.example:8080")
    return clean_sandbox


def task_context(try_number: int = 1, state: str = "failed", run_id: str = "manual__r1") -> dict[str, Any]:
    ti = SimpleNamespace(dag_id="etl", run_id=run_id, task_id="load", try_number=try_number, state=state)
    dag_run = SimpleNamespace(dag_id="etl", run_id=run_id, state="running", clear_number=0)
    return {"ti": ti, "dag_run": dag_run, "run_id": run_id, "params": {"team": "data"}}


def dag_context(state: str = "failed") -> dict[str, Any]:
    dag_run = SimpleNamespace(dag_id="etl", run_id="manual__r2", state=state, clear_number=0)
    return {"dag_run": dag_run, "run_id": "manual__r2", "reason": "task_failure"}


def test_default_body_names_dag_run_task_state_and_links_the_run(env):
    TwilioNotifier(to="+15551230201", from_=FROM)(task_context())
    [message] = env.messages()
    assert message["body"] == (
        "Airflow: task load failed. DAG etl, run manual__r1, task load (try 1). "
        "http://airflow.example:8080/dags/etl/runs/manual__r1/tasks/load"
    )
    assert message["to"] == "+15551230201" and message["from"] == FROM


def test_fields_are_templated(env):
    notifier = TwilioNotifier(
        to="{{ '+1555123' ~ '0202' }}",
        from_=FROM,
        body="{{ params.team }}: {{ notification.dag_id }} is {{ notification.state }}",
    )
    assert set(notifier.template_fields) >= {"to", "from_", "body"}
    notifier(task_context(state="up_for_retry"))
    [message] = env.messages()
    assert (message["to"], message["body"]) == ("+15551230202", "data: etl is up_for_retry")


def test_the_same_event_twice_sends_once(env):
    notifier = TwilioNotifier(to=["+15551230203", "+15551230204"], from_=FROM)
    notifier(task_context())
    notifier(task_context())  # Airflow ran the callback again for the same failure
    TwilioNotifier(to=["+15551230203", "+15551230204"], from_=FROM)(task_context())  # a fresh parse
    assert sorted(m["to"] for m in env.messages()) == ["+15551230203", "+15551230204"]
    # A new try, another event or another run is a new notification.
    notifier(task_context(try_number=2))
    notifier(task_context(state="success"))
    notifier(task_context(run_id="manual__other"))
    assert len(env.messages()) == 2 + 3 * 2
    assert env.stats()["requests"]["create"] == 8


def test_dag_level_callbacks(env):
    notifier = TwilioNotifier(to="+15551230205", from_=FROM)
    notifier(dag_context())
    notifier(dag_context())
    [message] = env.messages()
    assert message["body"] == (
        "Airflow: DAG run failed. DAG etl, run manual__r2. http://airflow.example:8080/dags/etl/runs/manual__r2"
    )


def test_a_failure_is_logged_never_raised(env, monkeypatch, capfd):
    monkeypatch.setenv("AIRFLOW_CONN_TWILIO_DEFAULT", env.conn_json().replace(env.auth_token, "wrong-token"))
    notifier = TwilioNotifier(to="+15551230206", from_=FROM)
    notifier(task_context())  # no exception
    logged = capfd.readouterr().out
    assert "Twilio notification not sent" in logged and "20003" in logged
    assert "wrong-token" not in logged
    # Nothing was sent, so nothing is marked sent: the next run of the callback tries again.
    monkeypatch.setenv("AIRFLOW_CONN_TWILIO_DEFAULT", env.conn_json())
    notifier(task_context())
    assert len(env.messages()) == 1


def test_bad_input_is_logged_before_any_request(env, capfd):
    TwilioNotifier(to="not-a-number", from_=FROM)(task_context())
    assert "Invalid input for 'to'" in capfd.readouterr().out
    assert sum(env.stats()["requests"].values()) == 0


def test_async_notify_sends_once_and_never_raises(env, monkeypatch):
    import asyncio

    async def awaited(notifier: TwilioNotifier, context: dict[str, Any]) -> None:
        notifier.context = context  # type: ignore[assignment]  # what the triggerer sets before awaiting
        await notifier

    notifier = TwilioNotifier(to="+15551230207", from_=FROM)
    asyncio.run(awaited(notifier, task_context()))
    asyncio.run(awaited(TwilioNotifier(to="+15551230207", from_=FROM), task_context()))
    [message] = env.messages()
    assert message["body"].startswith("Airflow: task load failed. DAG etl")
    asyncio.run(
        awaited(TwilioNotifier(to="+15551230208", from_=FROM, body="{{ missing.attr }}"), task_context())
    )
    monkeypatch.setenv("AIRFLOW_CONN_TWILIO_DEFAULT", env.conn_json().replace(env.auth_token, "wrong-token"))
    asyncio.run(awaited(TwilioNotifier(to="+15551230209", from_=FROM), task_context()))  # logged, not raised
    assert len(env.messages()) == 1

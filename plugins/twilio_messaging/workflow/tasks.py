"""Airflow callables of the send-and-track DAG's branch and end tasks: XCom in, ``outcome``, XCom out.

sendMessage and checkStatus are the provider's operator and sensor; every decision lives in
``twilio_messaging.workflow.outcome``, this module only moves values in and out of XCom.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk.exceptions import AirflowFailException
from airflow.sdk.types import RuntimeTaskInstanceProtocol

from twilio_messaging.contract import (
    BRANCH_TASK,
    CHECK_TASK,
    DELIVERED_TASK,
    FAILED_TASK,
    OUTCOME_XCOM,
    SEND_ERROR_XCOM,
    SEND_TASK,
    TIMELINE_XCOM,
)
from twilio_messaging.hooks.twilio import TwilioHook
from twilio_messaging.retry import RetryPolicy
from twilio_messaging.timeline import read_timeline, timeline_path
from twilio_messaging.workflow import outcome as decide

log = logging.getLogger(__name__)

# The branch's one extra status fetch must not hold the run for minutes when Twilio is down.
LAST_FETCH_POLICY = RetryPolicy(max_attempts=3, max_elapsed=30.0)


def choose_end(ti: RuntimeTaskInstanceProtocol, twilio_conn_id: str = TwilioHook.default_conn_name) -> str:
    """Branch: route to ``delivered`` or ``failed``; a failed or timed-out checkStatus leads to ``failed``."""

    def fetch_once(account_sid: str, message_sid: str) -> dict[str, Any]:
        hook = TwilioHook(twilio_conn_id)
        with hook.get_client(account_sid, retry_policy=LAST_FETCH_POLICY) as client:
            return client.fetch_message(message_sid)

    send = {key: ti.xcom_pull(task_ids=SEND_TASK, key=key) for key in ("messageSid", "accountSid")}
    outcome = decide.decide_outcome(
        send,
        ti.xcom_pull(task_ids=CHECK_TASK),
        fetch=fetch_once,
        send_error=ti.xcom_pull(task_ids=SEND_TASK, key=SEND_ERROR_XCOM),
    )
    ti.xcom_push(key=OUTCOME_XCOM, value=outcome)
    log.info("Final status %s: routing to %s", outcome["finalStatus"], outcome["end"])
    return DELIVERED_TASK if outcome["end"] == "delivered" else FAILED_TASK


def _publish(ti: RuntimeTaskInstanceProtocol) -> tuple[dict[str, Any], dict[str, Any]]:
    outcome = ti.xcom_pull(task_ids=BRANCH_TASK, key=OUTCOME_XCOM) or {}
    outputs = decide.workflow_outputs(outcome)
    for key, value in outputs.items():
        ti.xcom_push(key=key, value=value)
    # Copied here so the run's end task has the whole timeline; checkStatus has none when it failed.
    timeline = ti.xcom_pull(task_ids=CHECK_TASK, key=TIMELINE_XCOM)
    if timeline is None:
        timeline = read_timeline(timeline_path(ti.dag_id, ti.run_id))
    ti.xcom_push(key=TIMELINE_XCOM, value=timeline)
    return outcome, outputs


def report_delivered(ti: RuntimeTaskInstanceProtocol) -> dict[str, Any]:
    """End task ``delivered``: publish the workflow outputs; the run stays green."""
    _, outputs = _publish(ti)
    log.info("Message %s delivered (%s)", outputs["messageSid"], outputs["finalStatus"])
    return outputs


def report_failed(ti: RuntimeTaskInstanceProtocol) -> None:
    """End task ``failed``: publish the workflow outputs, then fail the run with the reason."""
    outcome, _ = _publish(ti)
    raise AirflowFailException(decide.failure_text(outcome))

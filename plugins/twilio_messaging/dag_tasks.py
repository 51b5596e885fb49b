"""Airflow callables of the send-and-track DAG: read the context, call ``workflow``, map errors to Airflow.

Every decision lives in ``twilio_messaging.workflow``; this module only moves values in and out of XCom.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk.exceptions import AirflowException, AirflowFailException
from airflow.sdk.types import RuntimeTaskInstanceProtocol

from twilio_messaging import workflow
from twilio_messaging.connection import DEFAULT_CONN_ID, TwilioConnection
from twilio_messaging.errors import TwilioAPIError, TwilioConfigError, TwilioUnreachableError
from twilio_messaging.hooks.twilio import TwilioHook
from twilio_messaging.retry import RetryPolicy
from twilio_messaging.timeline import TIMELINE_XCOM, read_timeline, timeline_path
from twilio_messaging.validation import InvalidInput

log = logging.getLogger(__name__)

SEND_TASK = "sendMessage"
CHECK_TASK = "checkStatus"
BRANCH_TASK = "routeByStatus"
DELIVERED_TASK = "delivered"
FAILED_TASK = "failed"
SEND_OUTPUTS = ("messageSid", "initialStatus", "accountSid", "sentAt")
# The branch's one extra status fetch must not hold the run for minutes when Twilio is down.
LAST_FETCH_POLICY = RetryPolicy(max_attempts=3, max_elapsed=30.0)


def send_message(ti: Any, params: dict[str, Any], dag_run: Any, **_: Any) -> dict[str, Any]:
    """sendMessage: validate, create the message once, publish messageSid / initialStatus / accountSid."""
    # A retried try may follow one whose message was created but whose result was lost: look first.
    sent_since = dag_run.start_date if ti.try_number > 1 else None
    try:
        connection = TwilioConnection.from_airflow(DEFAULT_CONN_ID)
        outputs = workflow.send_message(params, connection, conf=dag_run.conf or {}, sent_since=sent_since)
    except (InvalidInput, TwilioConfigError, TwilioAPIError) as exc:
        # Published so the failed end task can say why nothing was sent; the text never holds the token.
        code = exc.code if isinstance(exc, TwilioAPIError) else None
        ti.xcom_push(key="sendError", value={"errorCode": code, "errorMessage": str(exc)})
        raise AirflowFailException(str(exc)) from None
    except TwilioUnreachableError as exc:
        # Published too, so that if this was the last try the failed end task says Twilio was unreachable.
        ti.xcom_push(
            key="sendError",
            value={"errorCode": None, "errorMessage": str(exc), "maybeCreated": exc.maybe_created},
        )
        raise AirflowException(str(exc)) from None  # retried by Airflow; the next try looks before sending
    for key in SEND_OUTPUTS:
        ti.xcom_push(key=key, value=outputs[key])
    log.info("Created message %s (status %s)", outputs["messageSid"], outputs["initialStatus"])
    return outputs


def _fetch_once(account_sid: str, message_sid: str) -> dict[str, Any]:
    with TwilioHook(DEFAULT_CONN_ID).get_client(account_sid, retry_policy=LAST_FETCH_POLICY) as client:
        return client.fetch_message(message_sid)


def choose_end(ti: RuntimeTaskInstanceProtocol) -> str:
    """Branch: route to ``delivered`` or ``failed``; a failed or timed-out checkStatus leads to ``failed``."""
    send = {key: ti.xcom_pull(task_ids=SEND_TASK, key=key) for key in ("messageSid", "accountSid")}
    outcome = workflow.decide_outcome(
        send,
        ti.xcom_pull(task_ids=CHECK_TASK),
        fetch=_fetch_once,
        send_error=ti.xcom_pull(task_ids=SEND_TASK, key="sendError"),
    )
    ti.xcom_push(key="outcome", value=outcome)
    log.info("Final status %s: routing to %s", outcome["finalStatus"], outcome["end"])
    return DELIVERED_TASK if outcome["end"] == "delivered" else FAILED_TASK


def _publish(ti: RuntimeTaskInstanceProtocol) -> tuple[dict[str, Any], dict[str, Any]]:
    outcome = ti.xcom_pull(task_ids=BRANCH_TASK, key="outcome") or {}
    outputs = workflow.workflow_outputs(outcome)
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
    raise AirflowFailException(workflow.failure_text(outcome))

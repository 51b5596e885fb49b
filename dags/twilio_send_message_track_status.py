"""Send an SMS/MMS through Twilio and track it to its final delivery status.

    sendMessage >> checkStatus >> routeByStatus >> [delivered, failed]

Implements the Arazzo workflow `send-message-track-status` (dags/workflows/). Trigger it with conf
{"to": ..., "from": ..., "body": ...}; the Twilio credentials come from the connection `twilio_default` only.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from airflow.providers.standard.operators.python import BranchPythonOperator, PythonOperator
from airflow.sdk import DAG, Param, TriggerRule, XComArg

from twilio_messaging import settings
from twilio_messaging.contract import (
    BRANCH_TASK,
    CHECK_TASK,
    DELIVERED_TASK,
    FAILED_TASK,
    SEND_TASK,
    WORKFLOW_DAG_ID,
)
from twilio_messaging.hooks.twilio import TwilioHook
from twilio_messaging.sensors.twilio import TwilioMessageStatusSensor
from twilio_messaging.workflow import tasks
from twilio_messaging.workflow.arazzo import doc_md
from twilio_messaging.workflow.inputs import SendMessageFromParams, trigger_params

WORKFLOW_FILE = Path(__file__).parent / "workflows" / "twilio-send-message-track-status-workflow.yml"
WORKFLOW_ID = "send-message-track-status"
# Read when the file is parsed (twilio_messaging/settings.py lists every variable): TWILIO_POKE_INTERVAL,
# TWILIO_STATUS_TIMEOUT, TWILIO_MAX_WAIT, TWILIO_DEFAULT_FROM, TWILIO_CALLBACK_*.
TRACKING = settings.tracking_settings()
DEFAULT_FROM = settings.default_from()
CALLBACKS = settings.callback_settings()
# With callbacks on, a poke reads the callback store (no request to Twilio), so it can come sooner.
POKE_INTERVAL = (
    min(TRACKING.poke_interval, CALLBACKS.poke_interval) if CALLBACKS.enabled else TRACKING.poke_interval
)
CONN_ID = TwilioHook.default_conn_name

END_STATES = f"""
## End states
- **delivered**: Twilio reports `delivered` (or `read`). The run succeeds.
- **failed**: the message is `undelivered`, `failed` or `canceled`, could not be sent, or was still in flight
  (e.g. `sent (delivery unconfirmed)`: no carrier receipt) when tracking stopped. The task `failed` fails the
  run with the SID, the final status, the error code and its meaning.

Both end tasks publish the XComs `messageSid`, `finalStatus` and `errorCode`.

## Status polling (checkStatus)
Every {POKE_INTERVAL:g} s at first, backing off exponentially up to {TRACKING.max_wait:g} s,
for at most {TRACKING.timeout:g} s after sending
(env `TWILIO_POKE_INTERVAL`, `TWILIO_MAX_WAIT`, `TWILIO_STATUS_TIMEOUT`).
Status callbacks are {"on" if CALLBACKS.enabled else "off"} (`TWILIO_CALLBACK_BASE_URL`): when on, sendMessage
asks Twilio to call the receiver (unless the run gives its own `statusCallback`), and each poke reads the
callback store first, asking Twilio only when no final status was called back
{CALLBACKS.grace:g} s after sending (`TWILIO_CALLBACK_GRACE`).
A try 2 on checkStatus is apache/airflow#71172 being absorbed by the sensor's retries: it polls the same
message, nothing is sent twice, and the deadline still counts from the send.

The **Messages** tab of a run shows the outcome with the Twilio meaning, the status timeline and the inputs.
"""


with DAG(
    dag_id=WORKFLOW_DAG_ID,
    schedule=None,
    start_date=datetime(2024, 1, 1),
    catchup=False,
    doc_md=doc_md(WORKFLOW_FILE, WORKFLOW_ID, END_STATES),
    tags=["twilio", "sms", "arazzo"],
    # `from` defaults to $TWILIO_DEFAULT_FROM; descriptions state the rules Airflow cannot check at trigger.
    params={name: Param(**spec) for name, spec in trigger_params(DEFAULT_FROM).items()},
    default_args={"owner": "messaging"},
) as dag:
    # The provider's TwilioSendMessageOperator, taking the trigger form's values as data: never rendered as
    # templates (so a body such as "{{ conn.twilio_default.password }}" is sent as typed).
    send_message = SendMessageFromParams(
        task_id=SEND_TASK,
        twilio_conn_id=CONN_ID,
        default_sender=DEFAULT_FROM,  # yields to a Messaging Service the user gave
        default_status_callback=CALLBACKS.receiver_url,  # the receiver, unless the run gives its own
        pool=settings.API_POOL,  # bounds Twilio concurrency together with the batch DAG
        retries=2,  # only after Twilio was unreachable; a retry looks for the message before sending
        retry_delay=timedelta(minutes=1),
        execution_timeout=timedelta(minutes=10),  # the client's own retry budget is about 2 minutes
        doc_md="createMessage (expects 201); publishes messageSid, initialStatus and accountSid.",
    )

    check_status = TwilioMessageStatusSensor(
        task_id=CHECK_TASK,
        twilio_conn_id=CONN_ID,
        message_sid=XComArg(send_message, key="messageSid"),
        account_sid=XComArg(send_message, key="accountSid"),
        sent_at=XComArg(
            send_message, key="sentAt"
        ),  # the deadline counts from the send, across sensor retries
        mode="reschedule",
        pool=settings.API_POOL,
        poke_interval=POKE_INTERVAL,
        timeout=TRACKING.timeout,
        exponential_backoff=TRACKING.exponential_backoff,
        max_wait=TRACKING.max_wait,
        retries=TRACKING.retries,  # apache/airflow#71172; the deadline is enforced from the send time
        retry_delay=TRACKING.retry_delay,
        callbacks=CALLBACKS.enabled,  # the callback store first; Twilio after the grace
        callback_grace=CALLBACKS.grace,
        doc_md=(
            "fetchMessage until a terminal status; publishes status, errorCode and errorMessage. "
            "A try 2 here is apache/airflow#71172 absorbed by the retries, not a second SMS."
        ),
    )

    route = BranchPythonOperator(
        task_id=BRANCH_TASK,
        python_callable=tasks.choose_end,
        op_kwargs={"twilio_conn_id": CONN_ID},
        trigger_rule=TriggerRule.ALL_DONE,
        retries=2,  # idempotent; survives a lost worker
        doc_md="Routes to delivered or failed; a failed or timed-out checkStatus leads to failed.",
    )

    # Idempotent: a retry after a lost worker publishes the same outputs. `failed` fails on purpose, no retry.
    delivered = PythonOperator(task_id=DELIVERED_TASK, python_callable=tasks.report_delivered, retries=2)
    failed = PythonOperator(task_id=FAILED_TASK, python_callable=tasks.report_failed)

    send_message >> check_status >> route >> [delivered, failed]

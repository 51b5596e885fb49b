"""Example: wait for many messages' final statuses in the triggerer (deferrable=True), woken by callbacks."""

from datetime import datetime

from airflow.sdk import DAG, XComArg

from twilio_messaging.callbacks.tracking import status_callback_url
from twilio_messaging.operators import TwilioSendMessageOperator
from twilio_messaging.sensors import TwilioMessageStatusSensor

with DAG(
    "example_twilio_deferrable_status", schedule=None, start_date=datetime(2024, 1, 1), tags=["example"]
):
    for n, to in enumerate(["+15551234567", "+15551234568"]):
        send = TwilioSendMessageOperator(
            task_id=f"send_{n}",
            to=to,
            from_="+15005550006",
            body="Your order has shipped",
            # The receiver (POST /twilio-messages/status-callback) when TWILIO_CALLBACK_BASE_URL is set.
            status_callback=status_callback_url(None),
        )
        send >> TwilioMessageStatusSensor(
            task_id=f"wait_{n}",
            message_sid=XComArg(send, key="messageSid"),
            sent_at=XComArg(send, key="sentAt"),
            deferrable=True,  # no worker slot while waiting: TwilioMessageStatusTrigger in the triggerer
            timeout=3600,  # polls every 60 s (poke_interval) backing off to 15 min, as the callbacks' backup
        )

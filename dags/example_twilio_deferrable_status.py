"""Example: wait for a message's final status in the triggerer (deferrable=True), woken by a callback."""

from datetime import datetime

from airflow.sdk import DAG, XComArg

from twilio_messaging.callbacks.tracking import status_callback_url
from twilio_messaging.operators import TwilioSendMessageOperator
from twilio_messaging.sensors import TwilioMessageStatusSensor

with DAG("example_twilio_deferrable_status", schedule=None, start_date=datetime(2024, 1, 1)):
    send = TwilioSendMessageOperator(
        task_id="send",
        to="+15551234567",
        from_="+15005550006",
        body="Your order has shipped",
        status_callback=status_callback_url(None),  # the receiver when TWILIO_CALLBACK_BASE_URL is set
    )
    TwilioMessageStatusSensor(
        task_id="wait",
        message_sid=XComArg(send, key="messageSid"),
        sent_at=XComArg(send, key="sentAt"),
        deferrable=True,  # no worker slot while waiting: TwilioMessageStatusTrigger in the triggerer
        timeout=3600,  # polls every 60 s backing off to 15 min, as the callbacks' backup
    )

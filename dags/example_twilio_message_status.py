"""Example: send an SMS, then wait for its final delivery status with TwilioMessageStatusSensor."""

from datetime import datetime

from airflow.sdk import DAG, XComArg

from twilio_messaging.operators import TwilioSendMessageOperator
from twilio_messaging.sensors import TwilioMessageStatusSensor

with DAG("example_twilio_message_status", schedule=None, start_date=datetime(2024, 1, 1), tags=["example"]):
    send = TwilioSendMessageOperator(
        task_id="send", to="+15551234567", from_="+15005550006", body="Your code is 123456"
    )
    TwilioMessageStatusSensor(
        task_id="wait_for_delivery",
        message_sid=XComArg(send, key="messageSid"),
        sent_at=XComArg(send, key="sentAt"),  # the timeout counts from the send, across sensor retries
        timeout=3600,  # default 24 h; polls every 60 s (poke_interval), backing off to 15 min (max_wait)
    )  # returns {"status", "errorCode", "errorMessage"} once the status is final

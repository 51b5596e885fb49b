"""Example: send one SMS with TwilioSendMessageOperator (a daily reminder; trigger it to try it)."""

from datetime import datetime

from airflow.sdk import DAG

from twilio_messaging.operators import TwilioSendMessageOperator

with DAG("example_twilio_send_message", schedule=None, start_date=datetime(2024, 1, 1), tags=["example"]):
    TwilioSendMessageOperator(
        task_id="send_reminder",
        to="+15551234567",
        from_="+15005550006",  # Twilio's test sender; use your number or messaging_service_sid="MG..."
        body="Reminder: the report for {{ dag_run.run_after | ds }} is ready.",
        retries=2,  # only after Twilio was unreachable; a retry looks the message up before resending
    )

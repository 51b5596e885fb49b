"""Example: an SMS to the on-call phone when a task fails (or the run does) with TwilioNotifier.

Trigger it with {"fail": true} to see the failure notification.
"""

from datetime import datetime
from typing import Any

from airflow.sdk import DAG, Param, task

from twilio_messaging.notifications import TwilioNotifier

alert = TwilioNotifier(to="+15551234567", from_="+15005550006")  # body: DAG, run, task, state, link

with DAG(
    "example_twilio_notifier",
    schedule=None,
    start_date=datetime(2024, 1, 1),
    params={"fail": Param(False, type="boolean")},
    on_failure_callback=alert,  # the DAG run failed
    tags=["example"],
):

    @task(on_failure_callback=alert, on_retry_callback=alert)
    def nightly_export(params: dict[str, Any] | None = None) -> None:  # params: injected by Airflow
        if params and params["fail"]:
            raise RuntimeError("the export failed")

    nightly_export()

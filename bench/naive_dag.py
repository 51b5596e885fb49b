"""The naive baseline for the batch benchmark: one mapped task pair per recipient, through the workflow path.

    recipients >> send_one[i] (sync TwilioClient.create_message) >> check_one[i] (reschedule sensor, fetch)

Not deployed: the benchmark copies nothing from here into dags/. Only used by bench/batch_throughput.py.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import DAG, Param, PokeReturnValue, get_current_context, task

from twilio_messaging.hooks.twilio import TwilioHook
from twilio_messaging.statuses import is_terminal
from twilio_messaging.validation import validate_message

POKE_INTERVAL = float(os.environ.get("TWILIO_BATCH_POKE_INTERVAL", "1"))

with DAG(
    dag_id="naive_batch_baseline",
    schedule=None,
    start_date=datetime(2024, 1, 1),
    catchup=False,
    params={"recipients": Param([], type="array"), "from": Param("+15005550006", type="string")},
) as dag:

    @task
    def recipients() -> list[dict]:
        return list(get_current_context()["params"]["recipients"])

    @task(retries=2, retry_delay=timedelta(seconds=5))
    def send_one(recipient: dict) -> str:
        params = get_current_context()["params"]
        request = validate_message(to=recipient["to"], from_=params["from"], body=recipient["body"])
        with TwilioHook().get_client() as client:
            return client.create_message(request)["sid"]

    @task.sensor(mode="reschedule", poke_interval=POKE_INTERVAL, timeout=600, retries=3)
    def check_one(sid: str) -> PokeReturnValue:
        with TwilioHook().get_client() as client:
            status = client.fetch_message(sid)["status"]
        return PokeReturnValue(is_done=is_terminal(status), xcom_value=status)

    check_one.expand(sid=send_one.expand(recipient=recipients()))

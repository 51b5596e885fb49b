"""Deployment settings of the batch DAG, from environment variables (tests shorten the clocks here).

| variable | default | what |
|---|---|---|
| ``TWILIO_BATCH_SCHEDULE`` | ``@daily`` | cron or preset; ``none`` for manual runs only |
| ``TWILIO_BATCH_POOL`` | ``twilio_api`` | Airflow pool that bounds Twilio concurrency across all DAGs |
| ``TWILIO_BATCH_CONCURRENCY`` | ``10`` | requests in flight per chunk task = pool slots each task holds |
| ``TWILIO_BATCH_POKE_INTERVAL`` | ``TWILIO_POKE_INTERVAL`` or 60 s | between status pokes of a chunk |
| ``TWILIO_BATCH_FIRST_FETCH_AFTER`` | the poke interval | no status fetch sooner than this after sending |
| ``TWILIO_BATCH_STATUS_TIMEOUT`` | ``TWILIO_STATUS_TIMEOUT`` or 3600 s | then in flight = unconfirmed |
| ``TWILIO_BATCH_SEND_TIMEOUT`` | 900 s | a chunk task stops retrying unsent rows; the task retry resumes |
| ``TWILIO_BATCH_FROM`` | ``+15005550006`` | default sender of the ``from`` param |
| ``TWILIO_STORAGE`` | ``file://$AIRFLOW_HOME/twilio_messaging`` | run folders (``storage.py``) |
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from twilio_messaging.connection import API_POOL
from twilio_messaging.envvars import positive_int, seconds


@dataclass(frozen=True)
class BatchSettings:
    schedule: str | None
    pool: str
    concurrency: int
    poke_interval: float
    first_fetch_after: float
    status_timeout: float
    send_timeout: float
    default_from: str

    @classmethod
    def from_env(cls) -> BatchSettings:
        schedule = os.environ.get("TWILIO_BATCH_SCHEDULE", "@daily").strip()
        poke = seconds(("TWILIO_BATCH_POKE_INTERVAL", "TWILIO_POKE_INTERVAL"), 60.0)
        return cls(
            schedule=None if schedule.lower() in ("", "none", "null") else schedule,
            pool=os.environ.get("TWILIO_BATCH_POOL", API_POOL).strip() or API_POOL,
            concurrency=positive_int("TWILIO_BATCH_CONCURRENCY", 10),
            poke_interval=poke,
            first_fetch_after=seconds(("TWILIO_BATCH_FIRST_FETCH_AFTER",), poke),
            status_timeout=seconds(("TWILIO_BATCH_STATUS_TIMEOUT", "TWILIO_STATUS_TIMEOUT"), 3600.0),
            send_timeout=seconds(("TWILIO_BATCH_SEND_TIMEOUT",), 900.0),
            default_from=os.environ.get("TWILIO_BATCH_FROM", "+15005550006"),
        )

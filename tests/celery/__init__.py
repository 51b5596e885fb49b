"""The docker-compose topology (CeleryExecutor, PostgreSQL, Redis, two workers) run natively in a test."""

from __future__ import annotations

import os
import socket

WORKER_NAME_ENV = "TWILIO_TEST_WORKER_HOSTNAME"


def worker_hostname() -> str:
    """``[core] hostname_callable`` for the test's workers.

    Two workers on one machine share its FQDN, so each one's tasks would record the same task instance
    ``hostname``; in containers every worker has its own. The test gives each worker process a name in
    ``TWILIO_TEST_WORKER_HOSTNAME`` so that the hostname tells them apart, as it would in compose.
    """
    return os.environ.get(WORKER_NAME_ENV) or socket.getfqdn()

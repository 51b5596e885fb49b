"""One real Airflow stack (api-server, scheduler, dag-processor, triggerer) and one sandbox for tests/e2e.

Both run as separate processes on free loopback ports in a temporary home and are stopped by process id
at the end of the session, pass or fail. The sandbox takes 3 s per delivery status step and the sensor
pokes every 2 s, so checkStatus is rescheduled at least once on a delivered run started alone (the REST
tests check it); runs started together with a batch may first poke after delivery.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from typing import Any

import pytest

from scripts.airflow_client import AirflowClient, RunResult
from scripts.airflow_stack import AirflowStack

DAG_ID = "twilio_send_message_track_status"
STEP_DELAY = "3"  # delivered 9 s after sending: a first poke 3-4 s after the send (task start-up on a loaded
# machine) still finds the message in flight, so checkStatus is rescheduled
POKE_INTERVAL = "2"
MAX_WAIT = "4"  # the DAG backs off exponentially; cap it so a slow run still polls often
# The unconfirmed run ends this long after its send, and the browser test waits for it. A delivered message
# is final at any poke, however late, so the margin only has to cover the sandbox's 9 s delivery.
STATUS_TIMEOUT = "90"
RUN_TIMEOUT = 300.0
NO_ACCESS_USER = "noaccess"
DEFAULT_FROM = "+15005550006"


@dataclass
class E2E:
    """The running stack, its REST client and the sandbox, plus helpers the tests share."""

    stack: AirflowStack
    client: AirflowClient
    sandbox: Any
    artifacts: Path
    data_dir: Path  # TWILIO_BATCH_DATA_DIRS: batch recipients files the tests write
    _ids: Iterator[int] = field(default_factory=lambda: count(1))

    @property
    def base_url(self) -> str:
        return self.stack.base_url

    def run_id(self, prefix: str) -> str:
        return f"{prefix}__{int(time.time())}_{next(self._ids)}"

    def trigger(self, conf: Mapping[str, Any], prefix: str = "e2e") -> str:
        run_id = self.run_id(prefix)
        self.client.trigger(DAG_ID, conf, run_id=run_id)
        return run_id

    def wait(self, run_id: str, *, timeout: float = RUN_TIMEOUT, interval: float = 0.3) -> RunResult:
        result = self.client.wait_for_run(DAG_ID, run_id, timeout=timeout, interval=interval)
        if result.state not in ("success", "failed"):
            pytest.fail(
                f"run {run_id} still {result.state!r} after {timeout:.0f}s: "
                f"{ {t: ti['state'] for t, ti in result.tasks.items()} }\n"
                f"{self.stack.log_tail('scheduler', 30)}"
            )
        return result

    def outputs(self, run_id: str, task_id: str) -> dict[str, Any]:
        return self.client.xcoms(DAG_ID, run_id, task_id)

    def task_log_hint(self, run_id: str) -> str:
        return f"task logs under {self.stack.home / 'logs'}/dag_id={DAG_ID}/run_id={run_id}/"


@pytest.fixture(scope="package")  # stopped after the folder's last test, not idling on to the end
def e2e(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2E]:
    """Start the sandbox and Airflow once for every e2e and browser test; stop both at the end."""
    from sandbox.testing import run_sandbox

    home = tmp_path_factory.mktemp("airflow-e2e")
    # CI can keep screenshots by pointing TEST_ARTIFACTS_DIR at e.g. test-artifacts/ (gitignored).
    artifacts = Path(os.environ.get("TEST_ARTIFACTS_DIR") or tmp_path_factory.mktemp("e2e-artifacts"))
    data_dir = tmp_path_factory.mktemp("batch-data")
    with run_sandbox("--step-delay", STEP_DELAY) as sandbox:
        stack = AirflowStack(
            home,
            twilio_conn=sandbox.conn_json(),
            extra_env={
                "TWILIO_POKE_INTERVAL": POKE_INTERVAL,
                "TWILIO_MAX_WAIT": MAX_WAIT,
                "TWILIO_STATUS_TIMEOUT": STATUS_TIMEOUT,
                # The batch DAG (Messages tab tests): no daily run of its own, files from data_dir.
                "TWILIO_BATCH_SCHEDULE": "none",
                "TWILIO_BATCH_POKE_INTERVAL": POKE_INTERVAL,
                "TWILIO_BATCH_STATUS_TIMEOUT": STATUS_TIMEOUT,
                "TWILIO_BATCH_DATA_DIRS": str(data_dir),
                # A user the auth manager gives no role: authenticated, but may read no DAG.
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"admin:admin,{NO_ACCESS_USER}:",
                "TWILIO_DEFAULT_FROM": DEFAULT_FROM,  # the trigger form's `from` default
            },
            log=lambda text: print(f"[e2e stack] {text}", flush=True),
        )
        stack.start(wait_for_dags=[DAG_ID])
        try:
            client = stack.client()
            client.unpause(DAG_ID)
            yield E2E(stack=stack, client=client, sandbox=sandbox, artifacts=artifacts, data_dir=data_dir)
        finally:
            stack.stop()


@pytest.fixture(scope="package")
def message_runs(e2e: E2E) -> Any:
    """The runs the Messages tab tests read (three workflow runs and a 1,000-recipient batch), once."""
    from tests.e2e.messages_runs import trigger_all

    return trigger_all(e2e)

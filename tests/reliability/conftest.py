"""Shared pieces of the reliability tests: a sandbox with a distinctive auth token, DAG runs, DB reads.

Every sandbox here uses ``TOKEN``, a random auth token made for this session, so a search for it in logs,
XComs and rendered fields finds a leak and nothing else.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "dags"
WORKFLOW_DAG = "twilio_send_message_track_status"
BATCH_DAG = "twilio_batch_notifications"
DAG_FILES = {
    WORKFLOW_DAG: DAGS / "twilio_send_message_track_status.py",
    BATCH_DAG: DAGS / "twilio_batch_notifications.py",
}
SENDER = "+15005550006"
# Distinctive so that a hit can only be a leak: nothing else in a log looks like this.
TOKEN = f"reltok{secrets.token_hex(16)}"
WRONG_TOKEN = f"wrongtok{secrets.token_hex(16)}"
SECRETS = (TOKEN, WRONG_TOKEN)


def load_dag(dag_id: str = WORKFLOW_DAG):
    """Parse the DAG file now (settings read from env vars at parse time take effect)."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAG_FILES[dag_id]))
    assert bag.import_errors == {}
    return bag.dags[dag_id]


def _state(value: Any) -> str | None:
    return None if value is None else str(getattr(value, "value", value))


def task_instances(run) -> dict[tuple[str, int], Any]:
    """{(task_id, map_index): TaskInstance} of a finished dag.test run (detached copies)."""
    from airflow.models import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = session.query(TaskInstance).filter_by(dag_id=run.dag_id, run_id=run.run_id).all()
        session.expunge_all()
        return {(ti.task_id, ti.map_index): ti for ti in tis}


def task_states(run) -> dict[str, str | None]:
    """{task_id: state} for unmapped tasks (mapped ones: "task_id[i]")."""
    return {
        (task if index < 0 else f"{task}[{index}]"): _state(ti.state)
        for (task, index), ti in task_instances(run).items()
    }


def try_numbers(run) -> dict[str, int]:
    return {
        (task if index < 0 else f"{task}[{index}]"): ti.try_number
        for (task, index), ti in task_instances(run).items()
    }


def xcom(run, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = (
            session.query(XComModel)
            .filter_by(dag_id=run.dag_id, run_id=run.run_id, task_id=task_id, key=key, map_index=map_index)
            .one_or_none()
        )
        return None if row is None else XComModel.deserialize_value(row)


def stored_text(run) -> str:
    """Every XCom value, rendered template field and the conf of a run, as one text."""
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        xcoms = session.query(XComModel).filter_by(dag_id=run.dag_id, run_id=run.run_id).all()
        rendered = (
            session.query(RenderedTaskInstanceFields).filter_by(dag_id=run.dag_id, run_id=run.run_id).all()
        )
        values = [XComModel.deserialize_value(x) for x in xcoms]
        fields = [r.rendered_fields for r in rendered]
    return json.dumps(values, default=str) + json.dumps(fields, default=str)


def count_secrets(text: str) -> int:
    return sum(text.count(secret) for secret in SECRETS)


@pytest.fixture(scope="session")
def rsandbox() -> Iterator[Any]:
    """The reliability sandbox: zero delivery delays, the distinctive TOKEN."""
    from sandbox.testing import run_sandbox

    with run_sandbox("--step-delay", "0", auth_token=TOKEN) as sb:
        yield sb


@pytest.fixture
def rel(monkeypatch, airflow_db, rsandbox, tmp_path) -> Iterator[Any]:
    """An empty, fault-free reliability sandbox wired in as ``twilio_default``."""
    rsandbox.reset()
    monkeypatch.setenv("AIRFLOW_CONN_TWILIO_DEFAULT", rsandbox.conn_json())
    yield rsandbox
    rsandbox.reset()


@pytest.fixture
def fast_backoff(monkeypatch) -> None:
    """Shorter client backoff for fault runs (dag.test runs tasks in this process).

    Only the waiting changes: which replies are retried, looked up or final stays the production logic.
    """
    import functools

    from twilio_messaging import client
    from twilio_messaging.retry import RetryPolicy

    monkeypatch.setattr(client, "RetryPolicy", functools.partial(RetryPolicy, base_delay=0.05, max_delay=0.5))


class TwilioSwitch:
    """A TCP forwarder in front of the sandbox that can be switched off: while off, connections to its port
    are refused (and open ones are cut), exactly as when Twilio is down; the sandbox and its store live on.
    """

    def __init__(self, target_port: int) -> None:
        import asyncio
        import threading

        from scripts.airflow_stack import free_port

        self.target_port = target_port
        self.port = free_port()
        self.connections = 0
        self._loop = asyncio.new_event_loop()
        self._server = None
        self._writers: set[Any] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

    def conn_json(self, sandbox) -> str:
        return json.dumps({**json.loads(sandbox.conn_json()), "port": self.port})

    def _call(self, coro) -> Any:
        import asyncio

        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    async def _pipe(self, reader, writer) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _handle(self, client_reader, client_writer) -> None:
        import asyncio

        self.connections += 1
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client_writer.close()
            return
        self._writers |= {client_writer, upstream_writer}
        await asyncio.gather(
            self._pipe(client_reader, upstream_writer), self._pipe(upstream_reader, client_writer)
        )
        self._writers -= {client_writer, upstream_writer}

    async def _start(self) -> None:
        import asyncio

        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)

    async def _stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._writers):
            writer.transport.abort()  # cut open keep-alive connections too
        self._writers.clear()
        if server is not None:
            await server.wait_closed()

    def up(self) -> None:
        self._call(self._start())

    def down(self) -> None:
        self._call(self._stop())

    def close(self) -> None:
        self.down()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)


# ---- a real Airflow stack (guarantees 4, 5, 6 and the soak) -------------------------------------------

STACK_ENV = {
    # The sandbox takes 2 s per status step; checkStatus pokes every 2 s, so it is rescheduled on every run.
    "TWILIO_POKE_INTERVAL": "2",
    "TWILIO_MAX_WAIT": "4",
    "TWILIO_STATUS_TIMEOUT": "240",
    "TWILIO_BATCH_SCHEDULE": "none",  # unpaused, the batch DAG must not start a scheduled run of its own
    "TWILIO_BATCH_POKE_INTERVAL": "2",
    "TWILIO_BATCH_STATUS_TIMEOUT": "240",
    # A killed scheduler's task instances are reset within seconds of the restart, not after 5 minutes.
    "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
    "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_THRESHOLD": "10",
    "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "5",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "60",
}


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


class Stack:
    """The running AirflowStack, its REST client and its sandbox, with the helpers the tests share."""

    def __init__(self, airflow: Any, client: Any, sandbox: Any) -> None:
        self.airflow, self.client, self.sandbox = airflow, client, sandbox
        self._n = 0

    def trigger(self, dag_id: str, conf: dict[str, Any], prefix: str) -> str:
        import time

        self._n += 1
        run_id = f"{prefix}__{int(time.time())}_{self._n}"
        self.client.trigger(dag_id, conf, run_id=run_id)
        return run_id

    def wait(self, dag_id: str, run_id: str, timeout: float = 300.0, **kwargs: Any) -> Any:
        result = self.client.wait_for_run(dag_id, run_id, timeout=timeout, **kwargs)
        if result.state not in ("success", "failed"):
            pytest.fail(
                f"{dag_id} run {run_id} still {result.state!r} after {timeout:.0f}s: "
                f"{ {t: ti['state'] for t, ti in result.tasks.items()} }\n"
                f"{self.airflow.log_tail('scheduler', 30)}"
            )
        return result

    def ti_states(self, dag_id: str, run_id: str) -> dict[str, tuple[str | None, int]]:
        """{task_id or task_id[i]: (state, try_number)} of every task instance, mapped ones included."""
        out = {}
        for ti in self.client.task_instances(dag_id, run_id):
            index = ti.get("map_index", -1)
            key = ti["task_id"] if index is None or index < 0 else f"{ti['task_id']}[{index}]"
            out[key] = (ti["state"], int(ti.get("try_number") or 0))
        return out

    def scheduler_tree(self) -> list[int]:
        """The scheduler and every process below it: executor workers, task supervisors and the task
        processes, which put themselves in process groups of their own (so killpg alone misses them)."""
        import os

        parents: dict[int, int] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    stat = Path(f"/proc/{entry}/stat").read_text()
                except OSError:
                    continue
                fields = stat.rsplit(")", 1)[1].split()
                if fields[0] != "Z":
                    parents[int(entry)] = int(fields[1])
        tree = [self.airflow.procs["scheduler"].pid]
        for pid in tree:
            tree.extend(child for child, parent in parents.items() if parent == pid and child not in tree)
        return [pid for pid in tree if pid in parents]

    def kill_scheduler(self) -> list[int]:
        """SIGKILL the scheduler and all its descendants at once (no clean shutdown); returns their pids."""
        import contextlib
        import os
        import signal
        import time

        proc = self.airflow.procs["scheduler"]
        pids = self.scheduler_tree()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)  # freeze first, so nothing forks or sends while we kill
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.wait(timeout=30)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in pids[1:]):
            time.sleep(0.1)
        alive = [pid for pid in pids[1:] if _alive(pid)]
        assert not alive, f"processes of the killed scheduler are still alive: {alive}"
        return pids

    def start_scheduler(self) -> None:
        import sys

        from scripts.airflow_stack import COMPONENT_COMMANDS
        from scripts.process_groups import start_process

        airflow = self.airflow
        airflow.procs["scheduler"] = start_process(
            "scheduler",
            [sys.executable, "-m", "airflow", *COMPONENT_COMMANDS["scheduler"]],
            env=airflow.env(),
            cwd=airflow.home,
            log_file=airflow.log_dir / "scheduler.log",
            pid_file=airflow.pid_dir / "scheduler.pid",
        )
        airflow.wait_healthy(timeout=120)


@pytest.fixture(scope="module")  # stopped after its module, not idling on to the end of the run
def stack(tmp_path_factory) -> Iterator[Stack]:
    """Airflow (api-server, scheduler, dag-processor, triggerer; LocalExecutor) and a sandbox with TOKEN."""
    from sandbox.testing import run_sandbox
    from scripts.airflow_stack import AirflowStack

    home = tmp_path_factory.mktemp("airflow-reliability")
    with run_sandbox("--step-delay", "2", auth_token=TOKEN) as sandbox:
        airflow = AirflowStack(
            home,
            twilio_conn=sandbox.conn_json(),
            # Pinned: a restarted component must see the storage the killed one wrote to.
            extra_env={**STACK_ENV, "TWILIO_STORAGE": f"file://{home / 'storage'}"},
            log=lambda text: print(f"[reliability stack] {text}", flush=True),
        )
        airflow.start(wait_for_dags=[WORKFLOW_DAG, BATCH_DAG])
        try:
            client = airflow.client()
            client.unpause(WORKFLOW_DAG)
            client.unpause(BATCH_DAG)
            yield Stack(airflow, client, sandbox)
        finally:
            airflow.stop()

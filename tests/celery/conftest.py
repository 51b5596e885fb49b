"""Airflow on CeleryExecutor, PostgreSQL and Redis, with two Celery workers, as local processes.

The same topology as docker-compose.yaml: api-server, scheduler, dag-processor, triggerer and two workers,
each its own process (group), plus the Twilio sandbox. The metadata database is a fresh PostgreSQL database
with a unique name (dropped at the end); the broker is a Redis DB index nobody else uses (flushed at the
start and the end). Without PostgreSQL, Redis or the Celery provider the tests skip and say what to do.

Settings that only make the test fast are set here, through the environment; production defaults stay
in the DAGs and in docker-compose.yaml.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from scripts.airflow_client import AirflowClient
from scripts.airflow_stack import DEFAULT_COMPONENTS, AirflowStack, free_port
from scripts.process_groups import start_process, stop_process_group
from tests.celery import WORKER_NAME_ENV

REPO = Path(__file__).resolve().parents[2]
WORKFLOW_DAG = "twilio_send_message_track_status"
BATCH_DAG = "twilio_batch_notifications"

PG_HOST = os.environ.get("CELERY_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("CELERY_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("CELERY_TEST_PG_USER", "postgres")
REDIS_HOST = os.environ.get("CELERY_TEST_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("CELERY_TEST_REDIS_PORT", "6379"))
# Redis DB 0 is what everybody uses; the test takes an empty one from the top of the default 16.
REDIS_DB_CANDIDATES = range(15, 0, -1)

WORKERS = ("worker-a", "worker-b")
WORKER_CONCURRENCY = 4
# twilio_api pool: two chunk tasks of TWILIO_BATCH_CONCURRENCY slots each at a time.
BATCH_CONCURRENCY = 4
POOL_SLOTS = 2 * BATCH_CONCURRENCY

# Sandbox: Twilio-like API latency (~200 ms per request) and a short delivery timeline
# (queued -> sent -> delivered, 0.5 s +/- 30% per step).
SANDBOX_FLAGS = ("--step-delay", "0.5", "--jitter", "0.3", "--latency-ms", "200", "--seed", "7")

TEST_ENV = {
    # Workflow DAG: poll statuses often, give up long before the test would.
    "TWILIO_POKE_INTERVAL": "2",
    "TWILIO_MAX_WAIT": "4",
    "TWILIO_STATUS_TIMEOUT": "120",
    # Batch DAG: manual runs only (no @daily run on unpause), short polls.
    "TWILIO_BATCH_SCHEDULE": "none",
    "TWILIO_BATCH_CONCURRENCY": str(BATCH_CONCURRENCY),
    "TWILIO_BATCH_POKE_INTERVAL": "2",
    "TWILIO_BATCH_FIRST_FETCH_AFTER": "2",
    "TWILIO_BATCH_STATUS_TIMEOUT": "120",
    # A killed worker's tasks stop heartbeating; find them in ~20 s instead of 5 min.
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "3",
    # A message the killed worker had reserved but not started stays unacked in Redis until the visibility
    # timeout (a day); the scheduler re-queues such a task after task_queued_timeout instead.
    "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "90",
    "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT_CHECK_INTERVAL": "10",
    # Keep Airflow's queue close to what the workers can take, so nothing waits long in Redis.
    "AIRFLOW__CORE__PARALLELISM": str(2 * len(WORKERS) * WORKER_CONCURRENCY),
    "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "32",
    "AIRFLOW__CORE__MAX_ACTIVE_RUNS_PER_DAG": "20",
}


# ---------------------------------------------------------------------------------------------------------
# Services: PostgreSQL, Redis, the Celery provider
# ---------------------------------------------------------------------------------------------------------


def _require_celery() -> None:
    try:
        import airflow.providers.celery  # noqa: F401
        import celery  # noqa: F401
    except ImportError as exc:
        pytest.skip(
            f"Celery test needs apache-airflow-providers-celery ({exc}); install it with "
            "`.venv/bin/pip install -r requirements-celery.txt -c constraints.txt` (make venv does)"
        )


def _require_asyncpg() -> None:
    # Airflow 3 also opens an async engine on the metadata DB; for PostgreSQL that is asyncpg.
    try:
        import asyncpg  # noqa: F401
    except ImportError:
        pytest.skip(
            "Celery test needs asyncpg (Airflow's async PostgreSQL driver); install it with "
            "`.venv/bin/pip install -r requirements-celery.txt -c constraints.txt`"
        )


def _pg_connect(dbname: str = "postgres") -> Any:
    try:
        import psycopg2
    except ImportError:
        pytest.skip(
            "Celery test needs psycopg2 (PostgreSQL driver); install it with "
            "`.venv/bin/pip install -r requirements-celery.txt -c constraints.txt`"
        )
    try:
        conn = psycopg2.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=dbname, connect_timeout=5)
    except psycopg2.OperationalError as exc:
        pytest.skip(
            f"Celery test needs PostgreSQL on {PG_HOST}:{PG_PORT} (user {PG_USER}, trust auth): {exc}".strip()
            + " Start it, e.g. `pg_ctlcluster <version> main start` (.ci/run does), or set CELERY_TEST_PG_*."
        )
    conn.autocommit = True
    return conn


@pytest.fixture(scope="session")
def celery_available() -> None:
    _require_celery()


@pytest.fixture(scope="module")
def postgres_url(celery_available: None) -> Iterator[str]:
    """A fresh, uniquely named database for Airflow's metadata and Celery's results; dropped at the end."""
    _require_asyncpg()
    name = f"twilio_celery_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = _pg_connect()
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    print(f"[celery] created database {name}", flush=True)
    try:
        yield f"postgresql+psycopg2://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        with admin.cursor() as cur:
            # Every Airflow process is stopped by now; FORCE ends any connection left over.
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            assert cur.fetchone() is None, f"database {name} was not dropped"
        admin.close()
        print(f"[celery] dropped database {name}", flush=True)


@pytest.fixture(scope="module")
def redis_url(celery_available: None) -> Iterator[str]:
    """A Redis DB index with no keys in it, flushed at the start and at the end."""
    try:
        import redis
    except ImportError:
        pytest.skip("Celery test needs the redis client; `pip install -r requirements-celery.txt`")
    probe = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, socket_connect_timeout=5)
    try:
        probe.ping()
    except redis.RedisError as exc:
        pytest.skip(
            f"Celery test needs Redis on {REDIS_HOST}:{REDIS_PORT}: {exc}. Start it, e.g. "
            "`redis-server --daemonize yes --bind 127.0.0.1 --save ''` (.ci/run does), "
            "or set CELERY_TEST_REDIS_*."
        )
    finally:
        probe.close()
    override = os.environ.get("CELERY_TEST_REDIS_DB")
    candidates = [int(override)] if override else list(REDIS_DB_CANDIDATES)
    for index in candidates:
        db = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=index)
        if override or db.dbsize() == 0:
            break
        db.close()
    else:
        pytest.skip(f"no empty Redis DB index among {candidates}; set CELERY_TEST_REDIS_DB to one to use")
    db.flushdb()
    print(f"[celery] broker redis://{REDIS_HOST}:{REDIS_PORT}/{index}", flush=True)
    try:
        yield f"redis://{REDIS_HOST}:{REDIS_PORT}/{index}"
    finally:
        db.flushdb()
        db.close()


# ---------------------------------------------------------------------------------------------------------
# The topology
# ---------------------------------------------------------------------------------------------------------


@dataclass
class Worker:
    name: str
    proc: subprocess.Popen
    log_file: Path
    log_port: int
    killed: bool = False

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def alive(self) -> bool:
        return self.proc.poll() is None


@dataclass
class Topology:
    """The running stack, its REST client, the sandbox and the two Celery workers."""

    stack: AirflowStack
    client: AirflowClient
    sandbox: Any
    workers: dict[str, Worker] = field(default_factory=dict)
    # The status-callback store every component shares (a key prefix in the broker's Redis DB).
    callback_store: str = ""

    def kill_worker(self, name: str) -> int:
        """SIGKILL everything the worker runs, as when its machine or container dies; returns the count.

        Killing the process group is not enough: since Airflow 3.3 each task runner leads a process group
        of its own (apache/airflow#65505), so it would outlive its worker. Stop the tree first, so that
        nothing forks or finishes in between, then kill every process in it.
        """
        import psutil

        worker = self.workers[name]
        root = psutil.Process(worker.proc.pid)
        tree = [root, *root.children(recursive=True)]
        for proc in tree:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(signal.SIGSTOP)
        tree += [p for p in root.children(recursive=True) if p not in tree]
        for proc in tree:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.proc.pid, signal.SIGKILL)
        worker.proc.wait(timeout=10)
        _, alive = psutil.wait_procs(tree[1:], timeout=10)
        assert not alive, f"{name}: processes survived SIGKILL: {alive}"
        worker.killed = True
        return len(tree)

    def check_alive(self) -> None:
        self.stack.check_alive()
        for worker in self.workers.values():
            if not worker.killed and not worker.alive():
                tail = "\n".join(worker.log().splitlines()[-40:])
                raise AssertionError(f"{worker.name} exited with {worker.proc.returncode}:\n{tail}")

    def diagnostics(self) -> str:
        parts = [f"--- {name} ---\n{self.stack.log_tail(name, 25)}" for name in self.stack.components]
        parts += [
            f"--- {w.name} ---\n" + "\n".join(w.log().splitlines()[-25:]) for w in self.workers.values()
        ]
        return "\n".join(parts)


def _start_worker(stack: AirflowStack, name: str) -> Worker:
    log_port = free_port()
    env = stack.env()
    env.update(
        {
            # Distinct log server port per worker (they share the machine), and a hostname of its own.
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(log_port),
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "tests.celery.worker_hostname",
            WORKER_NAME_ENV: name,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
        }
    )
    log_file = stack.log_dir / f"{name}.log"
    proc = start_process(
        name,
        [
            sys.executable,
            "-m",
            "airflow",
            "celery",
            "worker",
            "--celery-hostname",
            f"{name}@%h",
            "--concurrency",
            str(WORKER_CONCURRENCY),
            "--pid",
            str(stack.home / f"{name}.pid.celery"),
        ],
        env=env,
        cwd=stack.home,
        log_file=log_file,
        pid_file=stack.pid_dir / f"{name}.pid",
    )
    return Worker(name=name, proc=proc, log_file=log_file, log_port=log_port)


def _wait_workers_ready(topology: Topology, timeout: float = 120.0) -> None:
    """Celery prints ``<name>@<host> ready.`` once it consumes from the queue."""
    deadline = time.monotonic() + timeout
    pending = set(topology.workers)
    while pending and time.monotonic() < deadline:
        topology.check_alive()
        for name in list(pending):
            if f"{name}@" in topology.workers[name].log() and " ready." in topology.workers[name].log():
                pending.discard(name)
        time.sleep(0.5)
    if pending:
        raise AssertionError(
            f"workers {sorted(pending)} not ready after {timeout:.0f}s\n{topology.diagnostics()}"
        )


@pytest.fixture(scope="module")
def celery_topology(
    tmp_path_factory: pytest.TempPathFactory, postgres_url: str, redis_url: str
) -> Iterator[Topology]:
    """Start sandbox, Airflow (CeleryExecutor) and two workers; stop all of them by process id at the end."""
    from sandbox.testing import run_sandbox

    home = tmp_path_factory.mktemp("airflow-celery")
    # Explicit driver: SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3, which is not installed.
    result_backend = "db+" + postgres_url
    started = time.monotonic()
    # Callbacks on, as in docker-compose.yaml: the sandbox calls the api-server's receiver, which stores in
    # Redis, where workers and the triggerer read.
    api_port = free_port()
    callback_store = f"{redis_url}?prefix=twilio-callbacks"
    with run_sandbox(*SANDBOX_FLAGS) as sandbox:
        stack = AirflowStack(
            home,
            api_port=api_port,
            executor="CeleryExecutor",
            sql_alchemy_conn=postgres_url,
            components=DEFAULT_COMPONENTS,
            twilio_conn=sandbox.conn_json(),
            pools={"twilio_api": POOL_SLOTS},
            extra_env={
                "AIRFLOW__CELERY__BROKER_URL": redis_url,
                "AIRFLOW__CELERY__RESULT_BACKEND": result_backend,
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(WORKER_CONCURRENCY),
                # One storage both workers (and the api-server) see: here a shared folder on this host; on
                # several hosts an s3:// or gs:// bucket (docker-compose.yaml mounts a shared volume).
                "TWILIO_STORAGE": f"file://{home / 'shared-storage'}",
                "TWILIO_CALLBACK_BASE_URL": f"http://127.0.0.1:{api_port}",
                "TWILIO_CALLBACK_STORE": callback_store,
                **TEST_ENV,
            },
            log=lambda text: print(f"[celery stack] {text}", flush=True),
        )
        topology: Topology | None = None
        try:
            stack.start(wait_for_dags=[WORKFLOW_DAG, BATCH_DAG])
            topology = Topology(
                stack=stack, client=stack.client(), sandbox=sandbox, callback_store=callback_store
            )
            for name in WORKERS:
                topology.workers[name] = _start_worker(stack, name)
            _wait_workers_ready(topology)
            print(
                f"[celery] stack up in {time.monotonic() - started:.1f}s: "
                + ", ".join(f"{n} (pid {p.pid})" for n, p in stack.procs.items())
                + ", "
                + ", ".join(
                    f"{w.name} (pid {w.proc.pid}, log port {w.log_port})" for w in topology.workers.values()
                ),
                flush=True,
            )
            for dag_id in (WORKFLOW_DAG, BATCH_DAG):
                topology.client.unpause(dag_id)
            yield topology
        finally:
            # Workers first, so that nothing is mid-task when the api-server goes away.
            for worker in topology.workers.values() if topology else ():
                stop_process_group(worker.proc.pid, timeout=20)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    worker.proc.wait(timeout=5)
                (stack.pid_dir / f"{worker.name}.pid").unlink(missing_ok=True)
            stack.stop()
            leftovers = [w.name for w in (topology.workers.values() if topology else ()) if w.alive()]
            assert not leftovers, f"workers still running: {leftovers}"

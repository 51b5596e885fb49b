"""A real, local Airflow 3 stack: api-server, scheduler, dag-processor and triggerer around one AIRFLOW_HOME.

Used by `make demo/up/down` (scripts/stack.py), by the end-to-end tests (tests/e2e) and by the Celery test.
Every component runs as its own process group (scripts/process_groups.py), with its pid in ``<home>/pids/``
so that another process (``make down``) can stop it later; scripts/airflow_client.py talks to its REST API.
Nothing listens on anything but 127.0.0.1 except the log servers, which Airflow binds to all interfaces;
they get free ports so parallel stacks never collide.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from scripts.airflow_client import AirflowClient, APIError
from scripts.process_groups import Log, start_process, stop_process_group

REPO = Path(__file__).resolve().parent.parent
DEFAULT_COMPONENTS: tuple[str, ...] = ("scheduler", "dag-processor", "triggerer", "api-server")
# Airflow CLI arguments per component name.
COMPONENT_COMMANDS: dict[str, list[str]] = {
    "scheduler": ["scheduler"],
    "dag-processor": ["dag-processor"],
    "triggerer": ["triggerer"],
    "api-server": ["api-server"],
    "celery-worker": ["celery", "worker"],
}
# Component name -> key in /api/v2/monitor/health that must report "healthy".
HEALTH_KEYS: dict[str, str] = {
    "scheduler": "scheduler",
    "dag-processor": "dag_processor",
    "triggerer": "triggerer",
}
SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
# Four components write to one SQLite file, and SQLite has one write lock. The api-server's audit log
# (every UI action writes a row to `log`) commits from an async dependency, on the event loop; when another
# request of the same api-server had written but not yet committed (its commit runs after the endpoint, and
# needs that loop), the loop waited for a lock that could only be released by the loop: "database is
# locked" and a 500 after sqlite3's 5 s busy timeout ("unpause on trigger" failed 1 time in 4). So the
# api-server runs its SQLite statements in autocommit (each write releases the lock at once; nothing on
# the loop can wait for a transaction in the same process), the file is in WAL mode (readers never block
# a writer nor it them), and a writer waits up to SQLITE_BUSY_TIMEOUT_S for the scheduler's transactions.
SQLITE_BUSY_TIMEOUT_S = 30
API_SERVER_SQLITE_ENGINE_ARGS = {"isolation_level": "AUTOCOMMIT"}


def sqlite_url(path: Path) -> str:
    """The SQLAlchemy URL of a stack's SQLite DB, with its lock wait (pysqlite and aiosqlite read it)."""
    return f"sqlite:///{path}?timeout={SQLITE_BUSY_TIMEOUT_S}"


def use_wal(path: Path) -> str:
    """Switch the SQLite DB at ``path`` to WAL (kept in the file, for every later connection)."""
    with contextlib.closing(sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT_S)) as db:
        return str(db.execute("PRAGMA journal_mode=WAL").fetchone()[0])


class StackError(RuntimeError):
    """The stack could not be started, or a component died."""


def free_port(host: str = "127.0.0.1") -> int:
    """Return a port that is free on ``host`` right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True if a server could listen on ``host:port`` now (nothing listens there or on all interfaces).

    SO_REUSEADDR, as uvicorn and aiohttp set it: without it the TIME-WAIT connections that the previous
    `make demo` left behind for a minute would make a free port look busy.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


class AirflowStack:
    """Airflow components as separate processes around one AIRFLOW_HOME.

    Defaults: LocalExecutor on SQLite in ``home``, SimpleAuthManager with a known admin password, DAGs and
    plugins from the repository, fast DAG parsing. ``executor``, ``sql_alchemy_conn``, ``components`` and
    ``extra_env`` make it usable for CeleryExecutor/PostgreSQL too (add the "celery-worker" component).
    """

    def __init__(
        self,
        home: Path | str,
        *,
        api_port: int | None = None,
        host: str = "127.0.0.1",
        executor: str = "LocalExecutor",
        sql_alchemy_conn: str | None = None,
        components: Sequence[str] = DEFAULT_COMPONENTS,
        dags_folder: Path | str = REPO / "dags",
        plugins_folder: Path | str = REPO / "plugins",
        twilio_conn: Mapping[str, Any] | str | None = None,
        admin_user: str = "admin",
        admin_password: str = "admin",
        pools: Mapping[str, int] | None = None,
        fast_parsing: bool = True,
        extra_env: Mapping[str, str] | None = None,
        python: Path | str = sys.executable,
        log: Log = print,
    ) -> None:
        unknown = set(components) - set(COMPONENT_COMMANDS)
        if unknown:
            raise ValueError(f"unknown components {sorted(unknown)}; known: {sorted(COMPONENT_COMMANDS)}")
        self.home = Path(home).resolve()
        self.host = host
        self.api_port = api_port or free_port(host)
        self.executor = executor
        self.sql_alchemy_conn = sql_alchemy_conn or sqlite_url(self.home / "airflow.db")
        self.components = tuple(components)
        self.dags_folder = Path(dags_folder).resolve()
        self.plugins_folder = Path(plugins_folder).resolve()
        self.twilio_conn = twilio_conn
        self.admin_user, self.admin_password = admin_user, admin_password
        # Same size the batch DAG documents (`airflow pools set twilio_api 50`); each chunk task holds up to
        # TWILIO_BATCH_CONCURRENCY (10) slots, so a small pool would leave it queued forever.
        self.pools = dict(pools) if pools is not None else {"twilio_api": 50}
        self.fast_parsing = fast_parsing
        self.extra_env = dict(extra_env or {})
        # The interpreter whose Airflow runs (tests/packaging starts the api-server of a clean venv).
        self.python = str(python)
        self.log = log
        self.pid_dir = self.home / "pids"
        self.log_dir = self.home / "process-logs"
        self.procs: dict[str, subprocess.Popen] = {}
        self._client: AirflowClient | None = None

    # -- derived values ---------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.api_port}"

    @property
    def passwords_file(self) -> Path:
        return self.home / "simple_auth_manager_passwords.json.generated"

    def env(self) -> dict[str, str]:
        """The environment every component (and every CLI call) runs with."""
        # Drop whatever Airflow settings the caller has (pytest's UNIT_TEST_MODE would give each process
        # its own random JWT secret, and the tasks could not talk to the api-server).
        env = {
            k: v
            for k, v in os.environ.items()
            if not (
                k.startswith("AIRFLOW__") or k.startswith("AIRFLOW_CONN_") or k.startswith("AIRFLOW_VAR_")
            )
            and k not in ("AIRFLOW_HOME", "AIRFLOW_CONFIG")
        }
        bin_dir = str(Path(self.python).parent)
        env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
        env.setdefault("NO_PROXY", "127.0.0.1,localhost")
        env.setdefault("no_proxy", "127.0.0.1,localhost")
        env["PYTHONUNBUFFERED"] = "1"
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__EXECUTOR": self.executor,
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.sql_alchemy_conn,
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
                "AIRFLOW__CORE__PLUGINS_FOLDER": str(self.plugins_folder),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
                "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH_MANAGER,
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{self.admin_user}:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.passwords_file),
                "AIRFLOW__API__HOST": self.host,
                "AIRFLOW__API__PORT": str(self.api_port),
                "AIRFLOW__API__WORKERS": "1",
                # Both are needed when the api-server is not on localhost:8080, or every task dies with a
                # ConnectError to localhost:8080/execution/.
                "AIRFLOW__API__BASE_URL": self.base_url,
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
                "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.home / "logs"),
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(self._port_setting("worker_log")),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(self._port_setting("trigger_log")),
                "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
            }
        )
        if self.fast_parsing:
            env.update(
                {
                    # New DAG files are found within seconds; changed files re-parsed within 30 s; one parser
                    # process is plenty for a handful of files on a 2-core machine.
                    "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                    "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "30",
                    "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
                    "AIRFLOW__DAG_PROCESSOR__PRINT_STATS_INTERVAL": "300",
                }
            )
        if self.twilio_conn is not None:
            conn = self.twilio_conn if isinstance(self.twilio_conn, str) else json.dumps(self.twilio_conn)
            # JSON form: the URI form would silently turn https into http.
            env["AIRFLOW_CONN_TWILIO_DEFAULT"] = conn
        env.update(self.extra_env)
        return env

    def _port_setting(self, name: str) -> int:
        """A free port for a log server, chosen once per stack and remembered in the home."""
        cache = self.home / "ports.json"
        ports: dict[str, int] = {}
        with contextlib.suppress(OSError, ValueError):
            ports = json.loads(cache.read_text())
        if name not in ports:
            ports[name] = free_port()
            self.home.mkdir(parents=True, exist_ok=True)
            cache.write_text(json.dumps(ports))
        return ports[name]

    # -- lifecycle --------------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Create the home, pre-seed the admin password and migrate the metadata DB."""
        self.home.mkdir(parents=True, exist_ok=True)
        passwords: dict[str, str] = {}
        with contextlib.suppress(OSError, ValueError):
            passwords = json.loads(self.passwords_file.read_text())
        passwords[self.admin_user] = self.admin_password
        self.passwords_file.write_text(json.dumps(passwords))
        self.passwords_file.chmod(0o600)
        started = time.monotonic()
        self.airflow_cli("db", "migrate")
        self.log(f"airflow db migrate: {time.monotonic() - started:.1f}s")
        if self.sqlite_file is not None:
            use_wal(self.sqlite_file)

    def component_env(self, name: str) -> dict[str, str]:
        """What one component adds to ``env()``: on SQLite, the api-server's autocommit (see above)."""
        key = "AIRFLOW__DATABASE__SQL_ALCHEMY_ENGINE_ARGS"
        if name == "api-server" and self.sqlite_file is not None and key not in self.extra_env:
            return {key: json.dumps(API_SERVER_SQLITE_ENGINE_ARGS)}
        return {}

    @property
    def sqlite_file(self) -> Path | None:
        """The SQLite database file, when the stack runs on one (not on PostgreSQL)."""
        url = self.sql_alchemy_conn
        if not url.startswith("sqlite:///"):
            return None
        return Path(url.removeprefix("sqlite:///").split("?", 1)[0])

    def ensure_pool(self, name: str, slots: int, description: str) -> None:
        """Create the pool or set its slots; a GET first, so Airflow logs no 409 traceback on a restart."""
        client = self.client()
        body = {"name": name, "slots": slots, "description": description, "include_deferred": False}
        found = client.request("GET", f"/api/v2/pools/{name}", ok=(200, 404))
        if found.status_code == 404:
            client.request("POST", "/api/v2/pools", json=body, ok=(200, 201))
        elif found.json().get("slots") != slots or found.json().get("description") != description:
            client.request("PATCH", f"/api/v2/pools/{name}", json=body)

    def airflow_cli(self, *args: str, timeout: float = 300.0) -> str:
        """Run an ``airflow`` CLI command with the stack's environment; raise StackError on failure."""
        proc = subprocess.run(
            [self.python, "-m", "airflow", *args],
            env=self.env(),
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if proc.returncode != 0:
            raise StackError(f"airflow {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        return proc.stdout

    def start(self, *, timeout: float = 180.0, wait_for_dags: Sequence[str] = ()) -> AirflowStack:
        """Prepare, start every component, and wait until healthy (and until ``wait_for_dags`` are parsed)."""
        if not port_is_free(self.api_port, self.host):
            raise StackError(f"port {self.api_port} on {self.host} is busy; choose another one")
        self.prepare()
        env = self.env()
        for name in self.components:
            self.procs[name] = start_process(
                name,
                [self.python, "-m", "airflow", *COMPONENT_COMMANDS[name]],
                env={**env, **self.component_env(name)},
                cwd=self.home,
                log_file=self.log_dir / f"{name}.log",
                pid_file=self.pid_dir / f"{name}.pid",
            )
        self.log(f"started {', '.join(f'{n} (pid {p.pid})' for n, p in self.procs.items())}")
        try:
            self.wait_healthy(timeout=timeout)
            for pool, slots in self.pools.items():
                self.ensure_pool(pool, slots, "Twilio API calls (see README)")
            if wait_for_dags:
                self.wait_for_dags(wait_for_dags, timeout=timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def check_alive(self) -> None:
        """Raise StackError with the tail of its log if a component we started has exited."""
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise StackError(
                    f"{name} exited with code {proc.returncode}; last log lines:\n{self.log_tail(name)}"
                )

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.log_dir / f"{name}.log"
        if not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def wait_healthy(self, *, timeout: float = 180.0) -> dict[str, Any]:
        """Wait for /api/v2/monitor/health to report every started component healthy."""
        started = time.monotonic()
        deadline = started + timeout
        wanted = [HEALTH_KEYS[c] for c in self.components if c in HEALTH_KEYS]
        health: dict[str, Any] = {}
        with httpx.Client(timeout=5.0, trust_env=False) as http:
            while time.monotonic() < deadline:
                self.check_alive()
                try:
                    health = http.get(f"{self.base_url}/api/v2/monitor/health").json()
                except (httpx.HTTPError, ValueError):
                    health = {}
                if health and all((health.get(k) or {}).get("status") == "healthy" for k in wanted):
                    self.log(f"Airflow is healthy after {time.monotonic() - started:.1f}s ({self.base_url})")
                    return health
                time.sleep(0.5)
        raise StackError(f"Airflow not healthy after {timeout:.0f}s: {health}\n{self._all_tails()}")

    def wait_for_dags(self, dag_ids: Iterable[str], *, timeout: float = 120.0) -> None:
        """Wait until every DAG in ``dag_ids`` has been parsed and serialized; fail fast on import errors."""
        client = self.client()
        started = time.monotonic()
        pending = list(dag_ids)
        while pending:
            self.check_alive()
            for dag_id in list(pending):
                with contextlib.suppress(APIError):
                    client.get_dag(dag_id)
                    client.dag_details(dag_id)  # 404 until the serialized DAG exists
                    pending.remove(dag_id)
            errors = client.import_errors()
            if errors:
                text = "\n".join(f"{e.get('filename')}: {e.get('stack_trace', '')[-2000:]}" for e in errors)
                raise StackError(f"DAG import errors:\n{text}")
            if not pending:
                break
            if time.monotonic() - started > timeout:
                raise StackError(
                    f"DAGs {pending} not parsed after {timeout:.0f}s\n{self.log_tail('dag-processor')}"
                )
            time.sleep(1.0)
        self.log(f"DAGs parsed after {time.monotonic() - started:.1f}s")

    def client(self) -> AirflowClient:
        if self._client is None:
            self._client = AirflowClient(self.base_url, self.admin_user, self.admin_password)
        return self._client

    def stop(self, *, timeout: float = 20.0) -> None:
        """Stop every component by process group (SIGTERM, then SIGKILL) and remove the pid files."""
        if self._client is not None:
            self._client.close()
            self._client = None
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for name, proc in self.procs.items():
            stop_process_group(proc.pid, timeout=timeout)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=1)
            (self.pid_dir / f"{name}.pid").unlink(missing_ok=True)
        if self.procs:
            self.log(f"stopped {', '.join(f'{n} (pid {p.pid})' for n, p in self.procs.items())}")
        self.procs.clear()

    def detach(self) -> None:
        """Leave the components running (``make up``); their pid files stay for ``make down``."""
        if self._client is not None:
            self._client.close()
            self._client = None
        self.procs.clear()

    def _all_tails(self) -> str:
        return "\n".join(f"--- {name} ---\n{self.log_tail(name, 15)}" for name in self.components)

    def __enter__(self) -> AirflowStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

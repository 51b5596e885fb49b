"""The callback store: the latest status Twilio called back for each message SID, kept for a TTL.

Three backends behind one interface, picked by the URL in ``TWILIO_CALLBACK_STORE``:

- ``sqlite:///path`` (the default): a file next to the Airflow home, nothing to install; the api-server,
  workers and triggerer must share the machine (the local stack, ``make demo``).
- ``redis://host:port/db``: the shared store of a distributed deployment (docker-compose, Celery,
  Kubernetes), recommended: every worker already reaches the Celery broker, keys expire by themselves, and
  bench/callbacks_store.py measured it fastest (bench/README.md).
- ``postgresql://user@host/db``: for a deployment without Redis; give it its own database, since workers
  must not reach the metadata DB in Airflow 3.

Airflow 3.3's ``task_state_store`` does not fit: it is scoped to one task instance and reached only from
inside that task's runtime, while a callback names nothing but a message SID and arrives at the api-server;
the trigger (triggerer) and a batch of 100,000 SIDs (one read per key) would have no way to read it.

Writes are atomic per callback: the idempotency token is claimed and the status applied in one step, a
status only replaces a lower-ranked one (``ordering``), so duplicates, retries and reordering end the same.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from twilio_messaging.callbacks import ordering
from twilio_messaging.settings import callback_settings

# Expired rows of the SQL stores are deleted by the writers, at most this often per process.
PURGE_EVERY = 60.0
READ_CHUNK = 500


class StoreError(Exception):
    """The store could not be reached or used; readers fall back to polling, the receiver answers 503."""


class Applied(Enum):
    STORED = "stored"  # the status is now the message's latest
    STALE = "stale"  # a status already stored ranks as high or higher (reordered or repeated)
    DUPLICATE = "duplicate"  # this idempotency token was seen before (a Twilio retry)


@dataclass(frozen=True)
class StatusUpdate:
    """One status callback, as much of it as tracking needs."""

    message_sid: str
    status: str
    error_code: int | None = None
    account_sid: str | None = None
    received_at: float = 0.0

    def as_message(self) -> dict[str, Any]:
        """The fields of a Twilio message resource this update stands for (what polling would read).

        A callback carries no error message; readers that report one fetch the resource for it.
        """
        return {
            "sid": self.message_sid,
            "account_sid": self.account_sid,
            "status": self.status,
            "error_code": self.error_code,
        }

    def dumps(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def loads(cls, text: str | bytes) -> StatusUpdate:
        return cls(**json.loads(text))


class CallbackStore(ABC):
    """Latest status per message SID, with idempotency tokens; safe to share between threads."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl

    @abstractmethod
    def record(self, update: StatusUpdate, token: str | None = None) -> Applied:
        """Apply one callback; ``token`` is its I-Twilio-Idempotency-Token (None: not deduplicated)."""

    @abstractmethod
    def get_many(self, sids: Iterable[str]) -> dict[str, StatusUpdate]:
        """The stored status of each SID that has one."""

    def get(self, sid: str) -> StatusUpdate | None:
        return self.get_many([sid]).get(sid)

    def close(self) -> None:  # noqa: B027 - a backend without resources has nothing to close
        pass

    @abstractmethod
    def clear(self) -> None:
        """Forget everything (tests, benchmarks)."""


# ---- SQL (SQLite and PostgreSQL share the statements) -----------------------------------------------------

_TABLES = (
    "CREATE TABLE IF NOT EXISTS twilio_callback_status ("
    " sid VARCHAR(64) PRIMARY KEY, rank INTEGER NOT NULL, body TEXT NOT NULL, expires_at DOUBLE PRECISION"
    " NOT NULL)",
    "CREATE TABLE IF NOT EXISTS twilio_callback_token ("
    " token VARCHAR(128) PRIMARY KEY, expires_at DOUBLE PRECISION NOT NULL)",
)
# An expired row counts as absent even before the purge has deleted it.
_CLAIM = (
    "INSERT INTO twilio_callback_token (token, expires_at) VALUES ({p}, {p}) ON CONFLICT (token)"
    " DO UPDATE SET expires_at = excluded.expires_at WHERE twilio_callback_token.expires_at < {p}"
)
_UPSERT = (
    "INSERT INTO twilio_callback_status (sid, rank, body, expires_at) VALUES ({p}, {p}, {p}, {p})"
    " ON CONFLICT (sid) DO UPDATE SET rank = excluded.rank, body = excluded.body,"
    " expires_at = excluded.expires_at"
    " WHERE twilio_callback_status.rank < excluded.rank OR twilio_callback_status.expires_at < {p}"
)
_PURGE = (
    "DELETE FROM twilio_callback_status WHERE expires_at < {p}",
    "DELETE FROM twilio_callback_token WHERE expires_at < {p}",
)


class _SqlStore(CallbackStore):
    placeholder = "?"

    def __init__(self, ttl: float) -> None:
        super().__init__(ttl)
        self._last_purge = 0.0
        self._purge_lock = threading.Lock()

    @abstractmethod
    @contextmanager
    def _cursor(self, write: bool = True) -> Iterator[Any]:
        """A cursor in a transaction that commits on exit (rolls back on an error)."""

    def _sql(self, statement: str) -> str:
        return statement.format(p=self.placeholder)

    def _create(self) -> None:
        with self._cursor() as cur:
            for statement in _TABLES:
                cur.execute(statement)

    def record(self, update: StatusUpdate, token: str | None = None) -> Applied:
        now = time.time()
        expires = now + self.ttl
        with self._cursor() as cur:
            if token is not None:
                cur.execute(self._sql(_CLAIM), (token, expires, now))
                if cur.rowcount == 0:
                    return Applied.DUPLICATE
            row = (update.message_sid, ordering.rank(update.status), update.dumps(), expires, now)
            cur.execute(self._sql(_UPSERT), row)
            applied = Applied.STORED if cur.rowcount else Applied.STALE
            if now - self._last_purge > PURGE_EVERY and self._purge_lock.acquire(blocking=False):
                try:
                    self._last_purge = now
                    for statement in _PURGE:
                        cur.execute(self._sql(statement), (now,))
                finally:
                    self._purge_lock.release()
        return applied

    def get_many(self, sids: Iterable[str]) -> dict[str, StatusUpdate]:
        wanted = list(dict.fromkeys(sids))
        found: dict[str, StatusUpdate] = {}
        now = time.time()
        with self._cursor(write=False) as cur:
            for start in range(0, len(wanted), READ_CHUNK):
                chunk = wanted[start : start + READ_CHUNK]
                marks = ", ".join([self.placeholder] * len(chunk))
                cur.execute(
                    f"SELECT body FROM twilio_callback_status WHERE sid IN ({marks}) "
                    f"AND expires_at >= {self.placeholder}",
                    (*chunk, now),
                )
                for (body,) in cur.fetchall():
                    update = StatusUpdate.loads(body)
                    found[update.message_sid] = update
        return found

    def clear(self) -> None:
        with self._cursor() as cur:
            cur.execute("DELETE FROM twilio_callback_status")
            cur.execute("DELETE FROM twilio_callback_token")


class SqliteStore(_SqlStore):
    """A SQLite file in WAL mode; one connection per thread (sqlite3 connections are not shared)."""

    def __init__(self, path: str | Path, ttl: float) -> None:
        super().__init__(ttl)
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._create()

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=10.0, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    @contextmanager
    def _cursor(self, write: bool = True) -> Iterator[sqlite3.Cursor]:
        try:
            conn = self._connection()
            cur = conn.cursor()
            # A writer takes the lock up front (no upgrade deadlock); readers see a WAL snapshot, unblocked.
            cur.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        except sqlite3.Error as exc:
            raise StoreError(f"callback store {self.path}: {exc}") from exc
        try:
            yield cur
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        finally:
            cur.close()

    def __repr__(self) -> str:
        return f"SqliteStore({str(self.path)!r})"


class PostgresStore(_SqlStore):
    """PostgreSQL through psycopg2 (requirements-celery.txt), a small pool of connections."""

    placeholder = "%s"

    def __init__(self, dsn: str, ttl: float, pool_size: int = 8) -> None:
        super().__init__(ttl)
        try:
            import psycopg2  # type: ignore[import-untyped]
            from psycopg2.pool import ThreadedConnectionPool  # type: ignore[import-untyped]
        except ImportError as exc:
            raise StoreError(
                f"{dsn.split('://')[0]}:// callback store needs psycopg2: pip install psycopg2-binary"
            ) from exc
        self._errors: tuple[type[Exception], ...] = (psycopg2.Error,)
        self._display = _without_password(dsn)
        # ThreadedConnectionPool raises when every connection is out; callers wait for one instead.
        self._slots = threading.BoundedSemaphore(pool_size)
        try:
            self._pool = ThreadedConnectionPool(
                1, pool_size, dsn=dsn.replace("postgresql+psycopg2", "postgresql")
            )
        except psycopg2.Error as exc:
            raise StoreError(f"callback store {self._display}: {exc}".strip()) from exc
        self._create()

    @contextmanager
    def _cursor(self, write: bool = True) -> Iterator[Any]:
        with self._slots:
            try:
                conn = self._pool.getconn()
            except self._errors as exc:
                raise StoreError(f"callback store {self._display}: {exc}".strip()) from exc
            try:
                with conn, conn.cursor() as cur:  # psycopg2: `with conn` commits, or rolls back on an error
                    yield cur
            except self._errors as exc:
                raise StoreError(f"callback store {self._display}: {exc}".strip()) from exc
            finally:
                self._pool.putconn(conn)

    def close(self) -> None:
        self._pool.closeall()

    def __repr__(self) -> str:
        return f"PostgresStore({self._display!r})"


# ---- Redis ------------------------------------------------------------------------------------------------

# KEYS: status key, token key (or ""); ARGV: rank, body, ttl seconds. 0 duplicate, 1 stored, 2 stale.
_RECORD_LUA = """
if KEYS[2] ~= '' and not redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[3]) then return 0 end
local current = redis.call('HGET', KEYS[1], 'r')
if current and tonumber(current) >= tonumber(ARGV[1]) then return 2 end
redis.call('HSET', KEYS[1], 'r', ARGV[1], 'b', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""
_LUA_RESULTS = {0: Applied.DUPLICATE, 1: Applied.STORED, 2: Applied.STALE}


class RedisStore(CallbackStore):
    """One hash per SID and one key per token, each with a TTL; a Lua script applies a callback atomically.

    The URL may carry ``?prefix=`` to keep several deployments (or tests) apart in one Redis DB.
    """

    def __init__(self, url: str, ttl: float) -> None:
        super().__init__(ttl)
        try:
            import redis
        except ImportError as exc:
            raise StoreError("redis:// callback store needs the redis client: pip install redis") from exc
        parts = urlsplit(url)
        self.prefix = (parse_qs(parts.query).get("prefix") or ["twilio-callbacks"])[0] + ":"
        self._display = _without_password(parts._replace(query="").geturl())
        self._errors: tuple[type[Exception], ...] = (redis.RedisError,)
        self._redis = redis.Redis.from_url(
            parts._replace(query="").geturl(), socket_timeout=5.0, socket_connect_timeout=5.0
        )
        self._script = self._redis.register_script(_RECORD_LUA)

    def _status_key(self, sid: str) -> str:
        return f"{self.prefix}s:{sid}"

    def record(self, update: StatusUpdate, token: str | None = None) -> Applied:
        keys = [self._status_key(update.message_sid), f"{self.prefix}t:{token}" if token else ""]
        args: list[str | int] = [ordering.rank(update.status), update.dumps(), max(1, int(self.ttl))]
        try:
            return _LUA_RESULTS[int(self._script(keys=keys, args=args))]
        except self._errors as exc:
            raise StoreError(f"callback store {self._display}: {exc}") from exc

    def get_many(self, sids: Iterable[str]) -> dict[str, StatusUpdate]:
        wanted = list(dict.fromkeys(sids))
        found: dict[str, StatusUpdate] = {}
        try:
            for start in range(0, len(wanted), READ_CHUNK):
                chunk = wanted[start : start + READ_CHUNK]
                with self._redis.pipeline(transaction=False) as pipe:
                    for sid in chunk:
                        pipe.hget(self._status_key(sid), "b")
                    bodies = pipe.execute()
                for body in bodies:
                    if body is not None:
                        update = StatusUpdate.loads(body)
                        found[update.message_sid] = update
        except self._errors as exc:
            raise StoreError(f"callback store {self._display}: {exc}") from exc
        return found

    def clear(self) -> None:
        for key in self._redis.scan_iter(match=f"{self.prefix}*", count=1000):
            self._redis.delete(key)

    def close(self) -> None:
        self._redis.close()

    def __repr__(self) -> str:
        return f"RedisStore({self._display!r}, prefix={self.prefix!r})"


# ---- choosing one -----------------------------------------------------------------------------------------


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")
    user = netloc[0].split(":", 1)[0]
    return parts._replace(netloc=f"{user}:***@{netloc[2]}").geturl()


def store_from_url(url: str, ttl: float) -> CallbackStore:
    """A store for ``url``; an unknown scheme raises ``ValueError`` naming the setting."""
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        # SQLAlchemy's form: sqlite:///relative/path, sqlite:////absolute/path.
        path = url.split("://", 1)[1]
        return SqliteStore(path[1:] if path.startswith("/") else path, ttl)
    if scheme in ("redis", "rediss", "unix"):
        return RedisStore(url, ttl)
    if scheme in ("postgresql", "postgres", "postgresql+psycopg2"):
        return PostgresStore(url, ttl)
    raise ValueError(
        "TWILIO_CALLBACK_STORE must be a sqlite:///, redis:// or postgresql:// URL, "
        f"got {_without_password(url)!r}"
    )


_stores: dict[tuple[str, float], CallbackStore] = {}
_stores_lock = threading.Lock()


def open_store() -> CallbackStore:
    """The store the environment configures, one per process (and per URL)."""
    settings = callback_settings()
    key = (settings.store_url, settings.ttl)
    with _stores_lock:
        if key not in _stores:
            _stores[key] = store_from_url(settings.store_url, settings.ttl)
        return _stores[key]

"""Callback stores of each backend for tests and benchmarks: a fresh SQLite file, a Redis key prefix, or a
PostgreSQL database, each removed afterwards. Redis or PostgreSQL missing: a skip that says what to start."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PG_HOST = os.environ.get("CELERY_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("CELERY_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("CELERY_TEST_PG_USER", "postgres")
REDIS_HOST = os.environ.get("CELERY_TEST_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("CELERY_TEST_REDIS_PORT", "6379"))
REDIS_DB = int(os.environ.get("CALLBACK_TEST_REDIS_DB", "0"))

BACKENDS = ("sqlite", "redis", "postgresql")


class Unavailable(Exception):
    """The backend's server is not running here; the text says how to start it."""


@contextmanager
def store_url(backend: str, folder: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{folder / f'callbacks-{uuid.uuid4().hex[:8]}.sqlite3'}"
    elif backend == "redis":
        import redis

        probe = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB, socket_connect_timeout=3)
        try:
            probe.ping()
        except redis.RedisError as exc:
            raise Unavailable(
                f"needs Redis on {REDIS_HOST}:{REDIS_PORT} ({exc}); start it, e.g. "
                "`redis-server --daemonize yes --bind 127.0.0.1 --save ''` (.ci/run does)"
            ) from None
        prefix = f"twilio-callbacks-test-{uuid.uuid4().hex[:8]}"
        try:
            yield f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}?prefix={prefix}"
        finally:
            for key in probe.scan_iter(match=f"{prefix}:*", count=1000):
                probe.delete(key)
            probe.close()
    elif backend == "postgresql":
        import psycopg2

        try:
            admin = psycopg2.connect(
                host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres", connect_timeout=3
            )
        except psycopg2.OperationalError as exc:
            raise Unavailable(
                f"needs PostgreSQL on {PG_HOST}:{PG_PORT} (user {PG_USER}, trust auth): {exc}".strip()
                + " Start it, e.g. `pg_ctlcluster <version> main start` (.ci/run does)"
            ) from None
        admin.autocommit = True
        name = f"twilio_callbacks_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        with admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"
        finally:
            with admin.cursor() as cur:
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.close()
    else:
        raise ValueError(backend)

"""The local stack's metadata DB (SQLite in WAL mode with a long lock wait, or PostgreSQL) and the demo's
last line when the stack itself cannot start."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from scripts import stack
from scripts.airflow_stack import SQLITE_BUSY_TIMEOUT_S, AirflowStack, StackError, use_wal


def test_the_default_db_is_sqlite_with_a_lock_wait_and_wal(tmp_path: Path):
    local = AirflowStack(tmp_path / "home")
    assert (
        local.sql_alchemy_conn
        == f"sqlite:///{tmp_path / 'home' / 'airflow.db'}?timeout={SQLITE_BUSY_TIMEOUT_S}"
    )
    assert local.sqlite_file == tmp_path / "home" / "airflow.db"
    # Only the api-server autocommits: its audit-log commit on the event loop must never wait for a
    # transaction of its own process.
    assert local.component_env("api-server") == {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_ENGINE_ARGS": '{"isolation_level": "AUTOCOMMIT"}'
    }
    assert local.component_env("scheduler") == {}
    db = tmp_path / "airflow.db"
    sqlite3.connect(db).close()
    assert use_wal(db) == "wal"
    with sqlite3.connect(db) as conn:  # kept in the file: every component's connection gets it
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_postgresql_when_the_user_points_the_stack_at_it(tmp_path: Path):
    url = "postgresql+psycopg2://postgres@127.0.0.1:5432/airflow"
    settings = stack.Settings({"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": url})
    built = stack.build_stack(settings, tmp_path)
    assert built.sql_alchemy_conn == url and built.sqlite_file is None
    assert built.component_env("api-server") == {}
    assert built.env()["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == url
    assert stack.build_stack(stack.Settings({}), tmp_path).sqlite_file == tmp_path / "airflow.db"


def test_the_demos_last_line_is_its_exit_code_when_the_stack_cannot_start(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    def busy(settings: stack.Settings, home: Path) -> int:
        raise StackError("a stack from `make up` is still running (api-server); `make down` first")

    monkeypatch.setattr(stack, "run_demo", busy)
    assert stack.main(["demo"]) == 2
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-3].startswith("ERROR: a stack from `make up` is still running")
    assert lines[-1].startswith("Exit code 2 (") and lines[-1].endswith("s")

"""Test-wide setup: an isolated Airflow home, set before anything imports airflow."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

_HOME = Path(tempfile.mkdtemp(prefix="twilio-airflow-test-"))
os.environ["AIRFLOW_HOME"] = str(_HOME)
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(REPO / "plugins")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "True"
os.environ["AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION"] = "True"
os.environ["AIRFLOW__LOGGING__BASE_LOG_FOLDER"] = str(_HOME / "logs")
os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
os.environ.setdefault("no_proxy", "127.0.0.1,localhost")
# Fast polling for tests, through the documented overrides (production defaults stay in the DAG).
os.environ.setdefault("TWILIO_POKE_INTERVAL", "1")
os.environ.setdefault("TWILIO_STATUS_TIMEOUT", "30")
os.environ.setdefault("TWILIO_BATCH_STATUS_TIMEOUT", "30")


@pytest.fixture(autouse=True)
def run_storage(monkeypatch, tmp_path_factory) -> Path:
    """Each test its own TWILIO_STORAGE: batch runs of one day share a dedupe key, so a ledger left by an
    earlier test would (rightly) skip the recipients a later test sends to again."""
    folder = tmp_path_factory.mktemp("storage")
    monkeypatch.setenv("TWILIO_STORAGE", f"file://{folder}")
    return folder


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """Create the Airflow metadata DB (SQLite in the temporary home) once per session."""
    from airflow.utils import db

    db.resetdb()
    return _HOME


@pytest.fixture(scope="session")
def sandbox() -> Iterator[object]:
    """One sandbox process for the session, on a free loopback port, with zero delivery delays."""
    from sandbox.testing import run_sandbox

    with run_sandbox("--step-delay", "0") as sb:
        yield sb


@pytest.fixture
def clean_sandbox(sandbox):
    """The session sandbox with an empty store and no faults."""
    sandbox.reset()
    yield sandbox
    sandbox.reset()

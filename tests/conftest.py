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


# `make test` runs the suite on pytest-xdist workers (`--dist loadgroup`): most tests wait on a scheduler,
# a sandbox or a browser rather than compute. A group runs whole on one worker, so a fixture shared by a
# folder or a module is built once: folders whose session fixtures start a stack or build the wheel are one
# group, and every other module is its own group.
SHARED_FOLDERS = ("e2e", "packaging")
# The longest groups go out first, so no worker is left with a long one at the end; each takes a minute or
# more (the durations CI prints at the end). Everything else keeps its collection order after them.
LONGEST_FIRST = (
    "celery/test_celery_topology.py",
    "e2e",
    "packaging",
    "reliability/test_e2e_reliability.py",
    "reliability/test_faults.py",
    "batch/test_batch_stack.py",
)


def xdist_group(item: pytest.Item) -> str:
    relative = Path(item.path).resolve().relative_to(REPO / "tests")
    return relative.parts[0] if relative.parts[0] in SHARED_FOLDERS else relative.as_posix()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    groups = {id(item): xdist_group(item) for item in items}
    for item in items:
        item.add_marker(pytest.mark.xdist_group(groups[id(item)]))

    def rank(item: pytest.Item) -> int:
        group = groups[id(item)]
        return LONGEST_FIRST.index(group) if group in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: each group keeps its own order

"""Test-wide setup: an isolated Airflow home, set before anything imports airflow."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


# `make test` runs the suite on pytest-xdist workers: most tests wait on a scheduler, a sandbox or a browser
# rather than compute. A group runs whole on one worker, so a fixture shared by a folder or a module is built
# once: folders whose fixtures start a stack or build the wheel are one group, and every other module is its
# own group. (xdist's own `loadgroup` marks do nothing on pytest 9, whose node ids xdist can no longer
# suffix, hence a scheduler of our own.)
SHARED_FOLDERS = ("e2e", "packaging")
# The longest groups go out first, so no worker is left with a long one at the end; each takes a minute or
# more (the durations CI prints at the end). Everything else keeps its collection order after them.
LONGEST_FIRST = (
    "tests/celery/test_celery_topology.py",
    "tests/e2e",
    "tests/packaging",
    "tests/reliability/test_e2e_reliability.py",
    "tests/reliability/test_faults.py",
    "tests/batch/test_batch_stack.py",
)


def group_of(nodeid: str) -> str:
    """The group of a test, from its node id (``tests/<folder>/<module>.py::<test>``)."""
    module = nodeid.split("::")[0]
    parts = module.split("/")
    return "/".join(parts[:2]) if len(parts) > 2 and parts[1] in SHARED_FOLDERS else module


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        group = group_of(item.nodeid)
        return LONGEST_FIRST.index(group) if group in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: each group keeps its own order


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        """xdist's scope scheduling, with our groups as scopes, handed out in collection order."""

        def _split_scope(self, nodeid: str) -> str:
            return group_of(nodeid)

    config.option.loadscopereorder = False  # keep LONGEST_FIRST's order, not xdist's count of tests per group
    return GroupScheduling(config, log)

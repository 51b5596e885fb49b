"""One home for the environment: every variable the package reads is named in ``settings`` and listed, with
its default, in its docstring; the provider's building blocks read none of them."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from twilio_messaging import settings

PACKAGE = Path(settings.__file__).parent
NAME = re.compile(r"TWILIO_[A-Z_]+")


def variable_names(path: Path) -> set[str]:
    """The ``TWILIO_*`` names a module holds as string constants (not in comments or docstrings' prose)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and NAME.fullmatch(node.value):
            names.add(node.value)
    return names


def test_no_module_but_settings_names_an_environment_variable():
    elsewhere = {
        str(path.relative_to(PACKAGE)): names
        for path in PACKAGE.rglob("*.py")
        if path.name != "settings.py" and (names := variable_names(path))
    }
    assert elsewhere == {}


def test_every_variable_is_listed_with_its_default():
    listed = set(re.findall(r"``(TWILIO_[A-Z_]+)`` = ", settings.__doc__ or ""))
    assert variable_names(PACKAGE / "settings.py") <= listed
    assert {
        "TWILIO_STORAGE",
        "TWILIO_BATCH_DATA_DIRS",
        "TWILIO_STATUS_TIMEOUT",
        "TWILIO_BATCH_STATUS_TIMEOUT",
    } <= (listed)


def test_the_two_status_timeouts_are_separate():
    assert settings.tracking_settings({}).timeout == 24 * 3600
    assert settings.BatchSettings.from_env({}).status_timeout == 3600
    # Each has its own name; neither falls back on the other.
    assert settings.BatchSettings.from_env({"TWILIO_STATUS_TIMEOUT": "30"}).status_timeout == 3600
    assert settings.tracking_settings({"TWILIO_BATCH_STATUS_TIMEOUT": "30"}).timeout == 24 * 3600
    assert settings.BatchSettings.from_env({"TWILIO_BATCH_STATUS_TIMEOUT": "30"}).status_timeout == 30


def test_storage_and_data_dirs_from_the_environment(tmp_path):
    assert settings.storage_url({"TWILIO_STORAGE": "s3://b/x/"}) == "s3://b/x"
    assert settings.storage_url({"AIRFLOW_HOME": str(tmp_path)}) == f"file://{tmp_path}/twilio_messaging"
    assert settings.batch_data_dirs(tmp_path, {}) == [(tmp_path / "include").resolve()]
    assert settings.batch_data_dirs(tmp_path, {"TWILIO_BATCH_DATA_DIRS": "/a:/b"}) == [Path("/a"), Path("/b")]


@pytest.mark.parametrize(
    "module", ["hooks/twilio.py", "operators/twilio.py", "sensors/twilio.py", "notifications/twilio.py"]
)
def test_building_blocks_read_no_environment(module):
    source = (PACKAGE / module).read_text(encoding="utf-8")
    assert "os.environ" not in source and "tracking_settings" not in source and "from_env" not in source

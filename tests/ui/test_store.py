"""Where the tab finds a batch's files, and the paths it refuses to serve."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.ui.fixtures import report_records, write_report
from twilio_messaging import settings, storage
from twilio_messaging.ui import store


@pytest.fixture
def base(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(settings.STORAGE_ENV, f"file://{tmp_path / 'storage'}")
    return tmp_path


def test_report_in_the_run_folder_comes_first(base: Path):
    folder = Path(storage.run_path("b", "manual__2026-12-02T00:00:00+00:00").path)
    write_report(report_records(3), folder / "report.json", "json")
    found = store.batch_report("b", "manual__2026-12-02T00:00:00+00:00", {"report_path": "/etc/passwd"})
    assert found is not None and found[1] == "json" and str(found[0]).endswith("/report.json")


@pytest.mark.parametrize(
    "recorded",
    [
        "/etc/passwd",
        "{home}/simple_auth_manager_passwords.json.generated",
        "{reports}/../outside.csv",
        "{home}/elsewhere/report.csv",
        "file:///etc/hosts.csv",
    ],
)
def test_a_summary_cannot_point_the_download_at_another_file(base: Path, recorded: str):
    (base / "elsewhere").mkdir()
    (base / "elsewhere" / "report.csv").write_text("row,to\n1,+15551234567\n")
    (base / "outside.csv").write_text("row,to\n")
    (base / "simple_auth_manager_passwords.json.generated").write_text("{}")
    path = recorded.format(home=base, reports=base / "reports")
    assert store.batch_report("b", "run", {"report_path": path}) is None


def test_no_report_yet(base: Path):
    assert store.batch_report("b", "run", None) is None
    assert store.batch_report("b", "run", {"report_path": None}) is None

"""Where the tab finds a run's files, and the one gate (``store.inside_run``) that refuses everything else."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.ui.fixtures import report_records, write_report
from twilio_messaging import settings, storage
from twilio_messaging.ui import store

DAG = "twilio_batch_notifications"
RUN = "manual__2026-12-02T00:00:00+00:00"
MARKER = "MARKER-outside-the-run-folder-1f0c"


@pytest.fixture
def base(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(settings.STORAGE_ENV, f"file://{tmp_path / 'storage'}")
    return tmp_path


def folder_of(run_id: str = RUN) -> Path:
    return Path(storage.run_path(DAG, run_id).path)


def read_text(found: tuple[store.ReadablePath, str] | None) -> str:
    assert found is not None
    with found[0].open("rb") as handle:
        return handle.read().decode()


def test_report_in_the_run_folder_comes_first(base: Path):
    write_report(report_records(3), folder_of() / "report.json", "json")
    found = store.batch_report(DAG, RUN, {"report_path": "/etc/passwd"})
    assert found is not None and found[1] == "json" and str(found[0]).endswith("/report.json")


def test_a_recorded_path_inside_the_run_folder_is_followed(base: Path):
    write_report(report_records(3), folder_of() / "elsewhere" / "mine.csv")
    inside = f"file://{folder_of()}/sub/../elsewhere/mine.csv"
    assert "+15550000002" in read_text(store.batch_report(DAG, RUN, {"report_path": inside}))


@pytest.fixture
def marker(base: Path) -> Path:
    """A report-shaped file right next to the storage base, which the api-server could read."""
    folder_of().mkdir(parents=True)
    path = base / "marker-outside.csv"
    path.write_text(f"row,to,outcome,status,sid,error_code,error_meaning,reason\n1,{MARKER},x,,,,,\n")
    return path


def escapes(base: Path, marker: Path) -> dict[str, str]:
    folder = folder_of()
    other = folder_of("scheduled__2026-12-01T00:00:00+00:00")
    write_report(report_records(2), other / "report.csv")
    (folder / "link.csv").symlink_to(marker)
    (folder / "linked-dir").symlink_to(base, target_is_directory=True)
    return {
        "dot-dot": f"file://{folder}/../../../marker-outside.csv",
        "encoded dot-dot": f"file://{folder}/%2e%2e/%2E%2E/%2e%2e/marker-outside.csv",
        "relative dot-dot": "../../../marker-outside.csv",
        "symlink out": f"file://{folder}/link.csv",
        "symlinked folder": f"file://{folder}/linked-dir/marker-outside.csv",
        "another run's folder": f"file://{other}/report.csv",
        "another scheme": f"s3://bucket/{folder}/report.csv",
        "absolute path": str(marker),
        "the storage base": f"file://{base}/storage/report.csv",
    }


@pytest.mark.parametrize(
    "name",
    [
        "dot-dot",
        "encoded dot-dot",
        "relative dot-dot",
        "symlink out",
        "symlinked folder",
        "another run's folder",
        "another scheme",
        "absolute path",
        "the storage base",
    ],
)
def test_every_escape_is_refused_and_logged(
    base: Path, marker: Path, name: str, caplog: pytest.LogCaptureFixture
):
    location = escapes(base, marker)[name]
    with caplog.at_level(logging.WARNING, logger=store.__name__):
        assert store.inside_run(DAG, RUN, location) is None
        assert store.batch_report(DAG, RUN, {"report_path": location}) is None
    assert "refused to read" in caplog.text and RUN in caplog.text


def test_the_marker_outside_is_readable_so_the_refusal_is_the_gate(base: Path, marker: Path):
    """The same file through a path inside the folder is served: only the gate keeps the escapes out."""
    (folder_of() / "copy.csv").write_bytes(marker.read_bytes())
    assert MARKER in read_text(
        store.batch_report(DAG, RUN, {"report_path": f"file://{folder_of()}/copy.csv"})
    )
    assert MARKER in marker.read_text()


def test_object_store_paths_are_normalised_against_the_folder(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(settings.STORAGE_ENV, "s3://bucket/twilio")
    folder = str(storage.run_path(DAG, RUN)).rstrip("/")
    ok = store.inside_run(DAG, RUN, f"{folder}/sub/../report.csv")
    assert ok is not None and str(ok) == f"{folder}/report.csv"
    assert store.inside_run(DAG, RUN, "report.csv") is not None
    for bad in (
        f"{folder}/../other/report.csv",
        f"{folder}/%2e%2e/%2e%2e/secret.csv",
        "s3://other-bucket/twilio/x/report.csv",
        f"gs://bucket/{folder.split('://', 1)[1]}/report.csv",
        f"file://{folder.split('://', 1)[1]}/report.csv",
        "/etc/passwd",
    ):
        assert store.inside_run(DAG, RUN, bad) is None, bad


def test_no_report_yet(base: Path):
    assert store.batch_report(DAG, RUN, None) is None
    assert store.batch_report(DAG, RUN, {"report_path": None}) is None
    assert store.batch_report(DAG, RUN, {"report_path": "file:///etc/hosts"}) is None

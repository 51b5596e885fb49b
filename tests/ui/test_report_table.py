"""The batch table: first page streamed, every sort and filter from the index, CSV and JSON alike."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.ui.fixtures import report_records, write_report
from twilio_messaging.ui import report_table
from twilio_messaging.ui.report_table import Query, ReportIndex, table_page

# How long a test lets table_page wait for the background build. The child process imports Airflow
# (seconds of CPU), so on a loaded machine it outlasts the 5 s a request waits; a test that asserts an
# index answer waits this long instead, or builds the index itself first.
BUILD_WAIT = 120.0


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(report_table.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_rows_stream_the_same_from_csv_and_json(tmp_path: Path, fmt: str):
    records = report_records(250)
    path = write_report(records, tmp_path / f"report.{fmt}", fmt)
    rows = list(report_table.iter_report(path, fmt))
    assert [r["row"] for r in rows] == list(range(1, 251))
    assert rows[9] == {**records[9], "error_code": 30003}
    assert rows[2]["sid"] is None and rows[2]["error_code"] == 21211


def test_first_page_is_streamed_and_starts_the_index(tmp_path: Path):
    path = write_report(report_records(120), tmp_path / "report.csv")
    page = table_page(path, "csv", Query(size=25), key="k", total=120)
    assert page.source == "stream"
    assert [r["row"] for r in page.rows] == list(range(1, 26)) and page.pages == 5
    index = ReportIndex(path, "csv", "k")
    index.ensure()  # waits for the background build if it is still running
    assert index.ready


def test_filter_to_failed_rows_sorted_and_paged(tmp_path: Path):
    path = write_report(report_records(1000), tmp_path / "report.json", "json")
    ReportIndex(path, "json", "k").ensure()
    query = Query.parse({"outcome": "failed", "sort": "row", "order": "desc", "size": "25", "page": "2"})
    page = table_page(path, "json", query, key="k", total=1000)
    assert page.source == "index" and page.total == 100 and page.pages == 4
    assert [r["row"] for r in page.rows] == list(range(750, 500, -10))
    assert {r["status"] for r in page.rows} == {"undelivered"}
    by_code = table_page(path, "json", Query.parse({"error_code": "21211"}), key="k", total=1000)
    assert [(r["row"], r["outcome"]) for r in by_code.rows] == [(3, "rejected")]
    assert dict(page.facets["error_code"]) == {"30003": 100, "21211": 1}


def test_sort_by_status_then_row(tmp_path: Path):
    path = write_report(report_records(30), tmp_path / "report.csv")
    ReportIndex(path, "csv", "k").ensure()
    page = table_page(path, "csv", Query.parse({"sort": "status"}), key="k", total=30)
    assert page.source == "index" and page.query.sort == "status"
    assert [r["status"] for r in page.rows] == ["delivered"] * 26 + ["rejected"] + ["undelivered"] * 3
    assert [r["row"] for r in page.rows][-3:] == [10, 20, 30]
    descending = table_page(path, "csv", Query.parse({"sort": "status", "order": "desc"}), key="k", total=30)
    assert [r["row"] for r in descending.rows][:4] == [30, 20, 10, 3]


def test_a_sort_asked_for_during_the_build_waits_for_it(tmp_path: Path):
    path = write_report(report_records(30), tmp_path / "report.csv")
    index = ReportIndex(path, "csv", "k")
    assert not index.ready
    page = table_page(path, "csv", Query.parse({"sort": "status"}), key="k", total=30, wait=BUILD_WAIT)
    assert index.ready and page.source == "index" and not page.building
    assert [r["status"] for r in page.rows] == ["delivered"] * 26 + ["rejected"] + ["undelivered"] * 3


def test_a_new_report_version_gets_a_new_index(tmp_path: Path):
    path = write_report(report_records(20), tmp_path / "report.csv")
    first = ReportIndex(path, "csv", "k")
    first.ensure()
    write_report(report_records(40), path)
    second = ReportIndex(path, "csv", "k")
    assert second.file != first.file
    page = table_page(path, "csv", Query(sort="sid"), key="k", total=40, wait=BUILD_WAIT)
    assert page.source == "index" and page.total == 40


def test_unknown_query_values_fall_back_to_defaults():
    query = Query.parse({"sort": "reason; DROP TABLE report", "size": "7", "page": "-3", "error_code": "x"})
    assert (query.sort, query.size, query.page) == ("row", 50, 1)
    assert query.filters == (("error_code", "x"),)


HUGE = "99999999999999999999"


@pytest.mark.parametrize("ready", [False, True])
def test_a_page_past_the_end_or_too_large_for_sqlite_is_the_last_page(tmp_path: Path, ready: bool):
    path = write_report(report_records(120), tmp_path / "report.csv")
    if ready:
        ReportIndex(path, "csv", "k").ensure()
    for params in ({"page": HUGE}, {"page": "7"}, {"page": HUGE, "sort": "status"}, {"page": "1e99"}):
        query = Query.parse({**params, "size": "25"})
        page = table_page(path, "csv", query, key="k", total=120, wait=BUILD_WAIT)
        last = 1 if params["page"] == "1e99" else 5
        assert page.query.page == last and page.pages == 5, params
        assert len(page.rows) == (25 if last == 1 else 20), params
    filtered = table_page(
        path, "csv", Query.parse({"error_code": HUGE, "page": HUGE}), key="k", total=120, wait=BUILD_WAIT
    )
    assert filtered.rows == [] and filtered.total == 0


def test_a_sort_before_the_index_is_ready_says_so_and_shows_page_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    path = write_report(report_records(80), tmp_path / "report.csv")
    monkeypatch.setattr(ReportIndex, "ensure_in_background", lambda self: None)  # a build that never ends
    page = table_page(path, "csv", Query.parse({"sort": "sid"}), key="k", total=80, wait=0.1)
    # Report order, and the page's query says so: a sort is never half applied.
    assert page.building and page.source == "stream" and page.query.sort == "row"
    assert [r["row"] for r in page.rows] == list(range(1, 51))


def test_the_background_build_runs_in_a_child_process(tmp_path: Path):
    path = write_report(report_records(300), tmp_path / "report.csv")
    index = ReportIndex(path, "csv", "child")
    index.ensure_in_background()
    assert index.wait_ready(60), "the child process did not build the index"
    assert table_page(path, "csv", Query.parse({"outcome": "failed"}), key="child", total=300).total == 30


def test_indexes_unused_for_a_week_are_pruned(tmp_path: Path, cache: Path):
    old = write_report(report_records(10), tmp_path / "old.csv")
    stale = ReportIndex(old, "csv", "old")
    stale.ensure()
    used = ReportIndex(write_report(report_records(12), tmp_path / "used.csv"), "csv", "used")
    used.ensure()
    week_ago = time.time() - report_table.CACHE_MAX_AGE - 60
    os.utime(stale.file, (week_ago, week_ago))
    os.utime(used.file, (week_ago, week_ago))
    used.page(Query())  # opening it keeps it
    removed = report_table.prune_cache(str(cache))
    assert removed == [os.path.basename(stale.file)]
    assert used.ready and not stale.ready

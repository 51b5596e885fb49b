"""The pages as HTML: escaping of whatever a run carries, the chart's counts, the table's links."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.ui.fixtures import (
    HOSTILE_BODY,
    UNDELIVERED_TIS,
    report_records,
    summary_of,
    undelivered_xcoms,
    write_report,
)
from twilio_messaging.ui import app as ui_app
from twilio_messaging.ui import batch_view, facts, report_table


def render_workflow(conf: dict) -> str:
    view = facts.workflow_view("d", "r", "failed", conf, UNDELIVERED_TIS, undelivered_xcoms())
    return ui_app.templates.get_template("workflow.html").render(view=view)


def test_workflow_page_escapes_the_body_and_never_evaluates_it():
    html = render_workflow({"to": "+15551233003", "from": "+15005550006", "body": HOSTILE_BODY})
    assert "&lt;script&gt;alert(1)&lt;/script&gt; {{ 7*7 }}" in html
    assert "<script>" not in html and "49" not in html
    assert "+15551233003" not in html and "+15•••••3003" in html


def test_hostile_error_message_is_escaped_too():
    xcoms = undelivered_xcoms()
    xcoms[("routeByStatus", "outcome")] = {
        **xcoms[("routeByStatus", "outcome")],
        "reason": "<img src=x onerror=1>",
    }
    view = facts.workflow_view("d", "r", "failed", {"to": "+15551233003"}, UNDELIVERED_TIS, xcoms)
    html = ui_app.templates.get_template("workflow.html").render(view=view)
    assert "<img" not in html and "&lt;img src=x onerror=1&gt;" in html


def bars(html: str) -> dict[str, int]:
    return {s: int(n) for s, n in re.findall(r'data-status="([^"]+)" data-count="(\d+)"', html)}


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_batch_page_chart_counts_equal_the_summary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str):
    monkeypatch.setenv(report_table.CACHE_ENV, str(tmp_path / "cache"))
    records = report_records(200)
    records[4].update(outcome="duplicate", status=None, sid=None, reason=HOSTILE_BODY)
    summary = summary_of(records)
    path = write_report(records, tmp_path / f"report.{fmt}", fmt)
    view = batch_view.batch_view("b", "r", "success", summary)
    page = report_table.table_page(path, fmt, report_table.Query(), key="k", total=summary["rows"])
    html = ui_app.templates.get_template("batch.html").render(
        view=view,
        summary=summary,
        page=page,
        link=lambda **kw: "?" + "&".join(f"{k}={v}" for k, v in kw.items() if v is not None),
        params={},
        sortable=report_table.SORTABLE,
        page_sizes=report_table.PAGE_SIZES,
        report_format=fmt,
    )
    expected = {**summary["by_status"], "duplicate": 1}
    assert bars(html) == expected and sum(expected.values()) == summary["rows"] == 200
    assert "Rows 1–50 of 200" in html and "page 1 of 4" in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; {{ 7*7 }}" in html and "<script>" not in html
    assert '<tr data-code="30003">' in html and "Unreachable destination handset" in html
    assert f"Download the report ({fmt.upper()})" in html


def test_which_page_a_run_gets():
    assert ui_app.kind_of_run("twilio_send_message_track_status", {}) == "workflow"
    assert ui_app.kind_of_run("my_copy", {"sendMessage": {}, "checkStatus": {}, "failed": {}}) == "workflow"
    assert ui_app.kind_of_run("twilio_batch_notifications", {}) == "batch"
    assert ui_app.kind_of_run("etl", {"extract": {}}) == "other"
    html = ui_app.templates.get_template("other.html").render(dag_id="<etl>", run_id="r")
    assert "&lt;etl&gt;" in html and "<etl>" not in html

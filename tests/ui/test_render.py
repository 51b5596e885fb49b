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
from twilio_messaging.ui import batch_view, facts, report_table, store
from twilio_messaging.ui.task_errors import TaskFailure, log_href


def around(dag_id: str = "d", run_id: str = "r", state: str = "failed") -> dict:
    """What every run page gets besides its view: the run, and the way back to Airflow's pages."""
    return ui_app.run_page_context(store.RunRecord(dag_id, run_id, state, {}, "", ""))


def render_workflow(conf: dict) -> str:
    view = facts.workflow_view("d", "r", "failed", conf, UNDELIVERED_TIS, undelivered_xcoms())
    return ui_app.templates.get_template("workflow.html").render(view=view, **around())


def test_workflow_page_escapes_the_body_and_never_evaluates_it():
    html = render_workflow({"to": "+15551233003", "from": "+15005550006", "body": HOSTILE_BODY})
    assert "&lt;script&gt;alert(1)&lt;/script&gt; {{ 7*7 }}" in html
    assert (
        "<script>alert" not in html and html.count("<script") == 1 and "49" not in html.split("<body>", 1)[1]
    )
    assert "+15551233003" not in html and "+15•••••3003" in html


def test_hostile_error_message_is_escaped_too():
    xcoms = undelivered_xcoms()
    xcoms[("routeByStatus", "outcome")] = {
        **xcoms[("routeByStatus", "outcome")],
        "reason": "<img src=x onerror=1>",
    }
    view = facts.workflow_view("d", "r", "failed", {"to": "+15551233003"}, UNDELIVERED_TIS, xcoms)
    html = ui_app.templates.get_template("workflow.html").render(view=view, **around())
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
        **around("b", "r", "success"),
    )
    expected = {**summary["by_outcome"]}
    assert bars(html) == expected and sum(expected.values()) == summary["rows"] == 200
    assert "Rows 1–50 of 200" in html and "page 1 of 4" in html
    assert (
        "&lt;script&gt;alert(1)&lt;/script&gt; {{ 7*7 }}" in html
        and "<script>alert" not in html
        and html.count("<script") == 1
    )
    assert '<tr data-code="30003">' in html and "Unreachable destination handset" in html
    assert f"Download the report ({fmt.upper()})" in html


def test_which_page_a_run_gets():
    assert ui_app.kind_of_run("twilio_send_message_track_status", {}) == "workflow"
    assert ui_app.kind_of_run("my_copy", {"sendMessage": {}, "checkStatus": {}, "failed": {}}) == "workflow"
    assert ui_app.kind_of_run("twilio_batch_notifications", {}) == "batch"
    assert ui_app.kind_of_run("etl", {"extract": {}}) == "other"
    html = ui_app.templates.get_template("other.html").render(dag_id="<etl>", run_id="r", **around("<etl>"))
    assert "&lt;etl&gt;" in html and "<etl>" not in html


def mixed_records() -> list[dict]:
    """Two delivered, one failed (30003), and one of each row a batch does not send."""
    rows = [
        ("delivered", "delivered", "SMa", None, None),
        ("delivered", "delivered", "SMb", None, None),
        ("failed", "undelivered", "SMc", 30003, None),
        # Sent by an earlier run of the day: they carry that run's status, no delivery of this one.
        ("already_sent", "delivered", "SMd", None, "sent by run scheduled__2026-12-01 under key 2026-12-02"),
        ("already_sent", "delivered", "SMe", None, "sent by run scheduled__2026-12-01 under key 2026-12-02"),
        (
            "already_sent",
            "undelivered",
            "SMf",
            None,
            "sent by run scheduled__2026-12-01 under key 2026-12-02",
        ),
        ("invalid", None, None, None, "to: '+1' is not an E.164 number"),
        ("duplicate", None, None, None, "same number as row 1"),
        ("opted_out", None, None, None, "the recipient opted out"),
    ]
    return [
        {
            "row": i,
            "to": f"+1555000{i:04d}",
            "outcome": outcome,
            "status": status,
            "sid": sid,
            "error_code": code,
            "error_meaning": None,
            "reason": reason,
        }
        for i, (outcome, status, sid, code, reason) in enumerate(rows, start=1)
    ]


def test_chart_headline_and_table_count_the_same_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(report_table.CACHE_ENV, str(tmp_path / "cache"))
    records = mixed_records()
    summary = summary_of(records)
    path = write_report(records, tmp_path / "report.csv")
    view = batch_view.batch_view("b", "r", "success", summary)
    page = report_table.table_page(path, "csv", report_table.Query(), key="mixed", total=summary["rows"])
    html = ui_app.templates.get_template("batch.html").render(
        view=view,
        summary=summary,
        page=page,
        link=lambda **kw: "?",
        params={},
        sortable=report_table.SORTABLE,
        page_sizes=report_table.PAGE_SIZES,
        report_format="csv",
        **around("b", "r", "success"),
    )
    drawn = bars(html)
    assert drawn == {
        "delivered": 2,
        "failed": 1,
        "already_sent": 3,
        "invalid": 1,
        "duplicate": 1,
        "opted_out": 1,
    }
    assert sum(drawn.values()) == summary["rows"] == len(records) == page.total == 9
    assert view.headline.startswith(
        "9 rows: 2 delivered, 1 failed (33.3% of 3 to send), 0 unconfirmed, 6 skipped"
    )
    kinds = {bar.label: bar.kind for bar in view.chart.bars}
    assert kinds["already_sent"] == "skipped" and kinds["delivered"] == "delivered"
    assert kinds["failed"] == "failed" and kinds["invalid"] == kinds["opted_out"] == "skipped"
    assert "Rows 1–9 of 9" in html


def test_a_batch_that_failed_in_prepare_shows_the_task_error_in_red(tmp_path: Path):
    failure = TaskFailure(
        task_id="prepare",
        try_number=1,
        map_index=-1,
        message="recipients_path must be a file inside /opt/airflow/include, got '../../../../etc/passwd'",
        error_type="ValueError",
        log_href=log_href("b", "manual__1", "prepare", -1, 1),
    )
    view = batch_view.batch_view("b", "manual__1", "failed", None, failure=failure)
    assert view.banner_kind == "failed" and view.headline == "The run ended failed: task prepare failed"
    html = ui_app.templates.get_template("batch.html").render(
        view=view,
        summary={},
        page=None,
        link=lambda **kw: "?",
        params={},
        sortable=(),
        page_sizes=(),
        report_format="",
        **around("b", "manual__1", "failed"),
    )
    banner = html.split('data-testid="banner"', 1)[1].split("</div>\n", 3)
    assert 'class="banner failed"' in html
    assert "recipients_path must be a file inside /opt/airflow/include" in "".join(banner)
    assert 'href="../../../../../dags/b/runs/manual__1/tasks/prepare?try_number=1"' in html
    assert "see the logs" not in html


def test_run_pages_name_their_run_and_link_to_airflows_run_page():
    view = facts.workflow_view("d", "manual__2026", "failed", {}, UNDELIVERED_TIS, undelivered_xcoms())
    html = ui_app.templates.get_template("workflow.html").render(view=view, **around("d", "manual__2026"))
    head = html.split('data-testid="run-head"', 1)[1].split("</div>", 1)[0]
    assert "<h1>manual__2026</h1>" in head and 'class="state failed"' in head
    assert 'href="../../../../../dags/d/runs/manual__2026"' in head and 'target="_top"' in head


def test_the_browse_page_reason_says_what_the_error_column_does_not():
    refused = {
        "end": "failed",
        "errorCode": None,
        "errorMessage": None,
        "reason": "no message was created: to: bad",
    }
    assert ui_app.not_sent_reason(refused, None) == "no message was created: to: bad"
    coded = {
        "end": "failed",
        "errorCode": 21211,
        "errorMessage": "The 'To' number +15005550001 is not a valid phone number.",
        "reason": "no message was created: …",
    }
    reason = ui_app.not_sent_reason(coded, ui_app.error_info(21211))
    assert reason == "The 'To' number +15•••••0001 is not a valid phone number."
    undelivered = {**coded, "errorCode": 30003, "errorMessage": "Unreachable destination handset"}
    assert ui_app.not_sent_reason(undelivered, ui_app.error_info(30003)) == ""  # the meaning says it already

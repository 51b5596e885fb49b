"""The Messages tab as a person sees it: headless Chromium, 1440 px wide, logged in through the UI.

Opens a delivered run, an undelivered one (30003), one where nothing was sent (21211) and a
1,000-recipient batch, clicks the run page's Messages tab and reads the iframe Airflow shows it in.
With UPDATE_DOCS_SCREENSHOTS=1 (``make screenshots``) the screenshots are copied to docs/.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.e2e.conftest import DAG_ID, E2E
from tests.e2e.messages_runs import BATCH_DAG, HOSTILE_BODY, MessageRuns, wait_unconfirmed
from tests.e2e.test_ui_browser import REPO, chromium_page, log_in
from twilio_messaging.callbacks.ordering import UNKNOWN_RANK, rank

pytestmark = pytest.mark.browser

WIDTH = 1440
DOCS_SHOTS = {
    "messages-undelivered.png": "screenshot-messages-undelivered.png",
    "messages-not-sent.png": "screenshot-messages-not-sent.png",
    "messages-batch.png": "screenshot-messages-batch.png",
    "failed-task-log.png": "screenshot-failed-task-log.png",
    "messages-prepare-failed.png": "screenshot-messages-prepare-failed.png",
    "messages-unconfirmed.png": "screenshot-messages-unconfirmed.png",
    "messages-batch-dark.png": "screenshot-messages-batch-dark.png",
    "messages-recent.png": "screenshot-messages-recent.png",
}


@pytest.fixture(scope="module")
def ui(e2e: E2E) -> Iterator[Any]:
    with chromium_page(WIDTH, accept_downloads=True) as page:
        dialogs: list[str] = []
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        page.dialogs = dialogs  # type: ignore[attr-defined]
        log_in(page, e2e.base_url, e2e.stack.admin_user, e2e.stack.admin_password)
        yield page


@pytest.fixture(scope="module")
def shots(e2e: E2E) -> Iterator[Path]:
    folder = e2e.artifacts / "browser"
    folder.mkdir(parents=True, exist_ok=True)
    yield folder
    if os.environ.get("UPDATE_DOCS_SCREENSHOTS") == "1":
        for name, target in DOCS_SHOTS.items():
            if (folder / name).exists():
                shutil.copyfile(folder / name, REPO / "docs" / target)


def open_tab(page: Any, e2e: E2E, dag_id: str, run_id: str) -> Any:
    """The run page, then a click on its Messages tab; returns the tab's frame."""
    from playwright.sync_api import expect

    page.goto(f"{e2e.base_url}/dags/{dag_id}/runs/{quote(run_id, safe='')}")
    page.get_by_role("link", name="Messages", exact=True).click()
    expect(page).to_have_url(re.compile(r"/plugin/messages$"))
    frame = page.frame_locator('iframe[title="Messages"]')
    expect(frame.get_by_test_id("banner")).to_be_visible()
    return frame


def cells(locator: Any) -> list[str]:
    return [text.strip() for text in locator.all_inner_texts()]


def test_delivered_run(e2e: E2E, message_runs: MessageRuns, ui: Any, shots: Path):
    from playwright.sync_api import expect

    frame = open_tab(ui, e2e, DAG_ID, message_runs.delivered)
    sid = e2e.outputs(message_runs.delivered, "delivered")["messageSid"]
    expect(frame.get_by_test_id("banner")).to_have_text("Delivered to +15•••••0001: status delivered")
    expect(frame.get_by_test_id("message")).to_contain_text(sid)
    timeline = cells(frame.get_by_test_id("timeline").locator("tbody tr td:nth-child(2)"))
    # What checkStatus saw at its pokes, in order; on a busy machine its first poke may already see the end.
    assert timeline[-1] == "delivered", timeline
    ranks = [rank(status) for status in timeline]
    assert UNKNOWN_RANK not in ranks and ranks == sorted(ranks), timeline
    body = frame.get_by_test_id("inputs").get_by_role("row").filter(has_text="Body").locator("td")
    expect(body).to_have_text(HOSTILE_BODY)  # shown literally: not run as a script, not a template
    assert ui.dialogs == []
    expect(frame.get_by_test_id("path")).to_contain_text("delivered success")
    ui.screenshot(path=str(shots / "messages-delivered.png"))


def test_undelivered_run(e2e: E2E, message_runs: MessageRuns, ui: Any, shots: Path):
    from playwright.sync_api import expect

    frame = open_tab(ui, e2e, DAG_ID, message_runs.undelivered)
    banner = frame.get_by_test_id("banner")
    expect(banner).to_contain_text(
        "Not delivered to +15•••••3003: status undelivered, error 30003: Unreachable destination handset"
    )
    expect(banner.get_by_role("link")).to_have_attribute("href", "https://www.twilio.com/docs/errors/30003")
    rows = frame.get_by_test_id("timeline").locator("tbody tr")
    last = rows.nth(rows.count() - 1)
    expect(last).to_contain_text("undelivered")
    expect(last).to_contain_text("30003 Unreachable destination handset")
    expect(frame.get_by_test_id("inputs")).to_contain_text("+15•••••3003")
    expect(frame.get_by_test_id("path")).to_contain_text("failed failed")
    ui.wait_for_timeout(300)
    ui.screenshot(path=str(shots / "messages-undelivered.png"))


def test_nothing_sent_run(e2e: E2E, message_runs: MessageRuns, ui: Any, shots: Path):
    from playwright.sync_api import expect

    frame = open_tab(ui, e2e, DAG_ID, message_runs.invalid)
    banner = frame.get_by_test_id("banner")
    expect(banner).to_contain_text("Nothing was sent: Twilio error 21211, Invalid 'To' phone number")
    expect(banner).to_contain_text("The 'To' number +15•••••0001 is not a valid phone number.")
    expect(frame.get_by_test_id("message")).to_contain_text("none (nothing was created)")
    expect(frame.get_by_test_id("path")).to_contain_text("sendMessage failed")
    expect(frame.get_by_test_id("run-head")).to_contain_text(message_runs.invalid)
    ui.screenshot(path=str(shots / "messages-not-sent.png"))


def test_prepare_failure_shows_the_tasks_error_in_red(
    e2e: E2E, message_runs: MessageRuns, ui: Any, shots: Path
):
    from playwright.sync_api import expect

    frame = open_tab(ui, e2e, BATCH_DAG, message_runs.prepare_failed)
    banner = frame.get_by_test_id("banner")
    expect(banner).to_have_class(re.compile(r"\bfailed\b"))
    expect(banner).to_contain_text("The run ended failed: task prepare failed")
    expect(frame.get_by_test_id("task-error")).to_contain_text("recipients_path")
    expect(frame.get_by_test_id("task-error")).to_contain_text("must be a file inside")
    color = banner.evaluate("el => getComputedStyle(el).borderLeftColor")
    assert color.startswith(("rgb(2", "oklch(0.577")), color  # Airflow's red, not the warning orange
    ui.screenshot(path=str(shots / "messages-prepare-failed.png"))
    frame.get_by_test_id("task-log-link").click()  # Airflow's own log page of the task, in the same window
    expect(ui).to_have_url(re.compile(r"/dags/twilio_batch_notifications/runs/[^/]+/tasks/prepare"))
    expect(ui.get_by_text(re.compile("must be a file inside")).first).to_be_visible()


def test_unconfirmed_message_says_it_may_still_arrive(
    e2e: E2E, message_runs: MessageRuns, ui: Any, shots: Path
):
    from playwright.sync_api import expect

    wait_unconfirmed(e2e, message_runs)
    frame = open_tab(ui, e2e, DAG_ID, message_runs.unconfirmed)
    banner = frame.get_by_test_id("banner")
    expect(banner).to_contain_text(
        "unconfirmed: no final status before the status timeout (last status sent)"
    )
    expect(banner).to_contain_text("the message may still arrive")
    expect(banner).not_to_contain_text("Not delivered")
    ui.screenshot(path=str(shots / "messages-unconfirmed.png"))


@pytest.mark.parametrize(
    ("run", "meaning"),
    [("undelivered", "Unreachable destination handset"), ("invalid", "Invalid 'To' phone number")],
)
def test_failed_task_log_shows_the_meaning_without_scrolling(
    e2e: E2E, message_runs: MessageRuns, ui: Any, shots: Path, run: str, meaning: str
):
    """The ``failed`` task's error: its first lines fit the log view at 1440 px."""
    from playwright.sync_api import expect

    ui.goto(f"{e2e.base_url}/dags/{DAG_ID}/runs/{quote(getattr(message_runs, run), safe='')}/tasks/failed")
    line = ui.get_by_text(re.compile(re.escape(meaning))).first
    expect(line).to_be_visible()
    box = line.bounding_box()
    assert box is not None and box["x"] + box["width"] <= WIDTH, (box, line.inner_text())
    if run == "undelivered":
        ui.screenshot(path=str(shots / "failed-task-log.png"))


def bars(frame: Any) -> dict[str, int]:
    chart = frame.get_by_test_id("status-chart")
    found = {}
    for bar in chart.locator("g.bar").all():
        label = bar.locator("text").first.text_content()
        count = int(bar.locator("text.count").text_content().replace(",", ""))
        assert int(bar.get_attribute("data-count")) == count
        found[label] = count
    return found


def test_batch_run(e2e: E2E, message_runs: MessageRuns, ui: Any, shots: Path):
    from playwright.sync_api import expect

    summary = message_runs.batch_summary
    frame = open_tab(ui, e2e, BATCH_DAG, message_runs.batch)
    expect(frame.get_by_test_id("banner")).to_contain_text(
        f"1,000 rows: {summary['delivered']:,} delivered, {summary['failed']:,} failed"
    )
    assert bars(frame) == summary["by_outcome"] and sum(summary["by_outcome"].values()) == 1000
    for code, count in summary["error_codes"].items():
        row = frame.locator(f'[data-testid="failures-by-code"] tr[data-code="{code}"]')
        expect(row).to_have_text(re.compile(rf"^\s*{code}\s+{count}\s"))
    info = frame.get_by_test_id("page-info")
    expect(info).to_have_text(re.compile(r"Rows 1–50 of 1,000 · page 1 of 20"))
    ui.screenshot(path=str(shots / "messages-batch.png"), full_page=True)

    frame.get_by_test_id("pager").get_by_role("link", name="Next ›").click()
    expect(info).to_have_text(re.compile(r"Rows 51–100 of 1,000 · page 2 of 20"))
    assert cells(frame.get_by_test_id("recipients").locator("tbody tr td:first-child"))[0] == "51"

    failed = summary["by_outcome"]["failed"]
    frame.get_by_label("Outcome").select_option("failed")
    frame.get_by_role("button", name="Apply").click()
    expect(info).to_have_text(re.compile(rf"Rows 1–{min(50, failed)} of {failed} · page 1 of"))
    outcomes = cells(frame.get_by_test_id("recipients").locator("tbody tr td:nth-child(3)"))
    assert outcomes == ["failed"] * min(50, failed)
    codes = set(cells(frame.get_by_test_id("recipients").locator("tbody tr td:nth-child(5)")))
    assert codes <= {"30003", "30008"} and codes, codes

    frame.get_by_test_id("recipients").get_by_role("link", name="Error").click()  # sort by error code
    expect(frame.get_by_test_id("recipients").locator("th").filter(has_text="Error ▲")).to_be_visible()
    codes = cells(frame.get_by_test_id("recipients").locator("tbody tr td:nth-child(5)"))
    assert codes == sorted(codes), codes

    with ui.expect_download() as download:
        frame.get_by_test_id("download").click()
    lines = Path(download.value.path()).read_text().splitlines()
    assert len(lines) == 1001 and lines[0].startswith("row,to,outcome")


def test_the_tab_follows_airflows_dark_mode(e2e: E2E, message_runs: MessageRuns, ui: Any, shots: Path):
    from playwright.sync_api import expect

    ui.goto(e2e.base_url)
    ui.evaluate("localStorage.setItem('theme', 'dark')")  # what Airflow's own theme switch stores
    try:
        frame = open_tab(ui, e2e, BATCH_DAG, message_runs.batch)
        expect(ui.locator("html")).to_have_class(re.compile(r"\bdark\b"))
        expect(frame.locator("html")).to_have_attribute("data-theme", "dark")
        # Light text on Airflow's own dark page, which shows through the tab's transparent background.
        text = frame.locator("body").evaluate("el => getComputedStyle(el).color")
        assert text.startswith("oklch(0.985"), text
        assert (
            frame.locator("body").evaluate("el => getComputedStyle(el).backgroundColor") == "rgba(0, 0, 0, 0)"
        )
        ui.wait_for_timeout(300)
        ui.screenshot(path=str(shots / "messages-batch-dark.png"))
    finally:
        ui.evaluate("localStorage.setItem('theme', 'light')")
    open_tab(ui, e2e, BATCH_DAG, message_runs.batch)
    expect(ui.frame_locator('iframe[title="Messages"]').locator("html")).to_have_attribute(
        "data-theme", "light"
    )


def test_nav_page_lists_recent_messages(e2e: E2E, message_runs: MessageRuns, ui: Any, shots: Path):
    from playwright.sync_api import expect

    ui.goto(e2e.base_url)
    ui.get_by_role("button", name="Browse").click()
    ui.get_by_role("menuitem", name="Twilio messages").click()
    # Airflow 3.3 mirrors a nav page's iframe path into its own URL once the iframe has loaded (a deep link).
    expect(ui).to_have_url(re.compile(r"/plugin/twilio-messages(/twilio-messages/)?$"))
    frame = ui.frame_locator('iframe[title="Twilio messages"]')
    row = frame.get_by_test_id("recent").get_by_role("row").filter(has_text=message_runs.undelivered)
    expect(row).to_contain_text("+15•••••3003")
    expect(row).to_contain_text("30003 Unreachable destination handset")
    expect(
        frame.get_by_test_id("recent").get_by_role("row").filter(has_text=message_runs.batch)
    ).to_contain_text("1,000 rows")
    failed = frame.get_by_test_id("recent").get_by_role("row").filter(has_text=message_runs.prepare_failed)
    expect(failed.locator(".state.failed")).to_have_text("failed")  # the run state, in Airflow's red
    expect(failed.locator("td.reason")).to_contain_text("prepare failed: Invalid input for 'recipients_path'")
    state = failed.locator(".state.failed")
    assert "/dags/twilio_batch_notifications/runs/" in state.evaluate("el => el.href")
    ui.screenshot(path=str(shots / "messages-recent.png"))
    row.get_by_role("link", name=message_runs.undelivered).click()  # Airflow's run page, on its Messages tab
    expect(ui).to_have_url(
        re.compile(
            rf"/dags/{DAG_ID}/runs/{re.escape(quote(message_runs.undelivered, safe=''))}/plugin/messages$"
        )
    )
    tab = ui.frame_locator('iframe[title="Messages"]')
    expect(tab.get_by_test_id("run-head")).to_contain_text(message_runs.undelivered)
    expect(tab.get_by_test_id("banner")).to_contain_text("error 30003")
    tab.get_by_test_id("run-link").click()  # and from the tab to Airflow's own page of the run
    expect(ui).to_have_url(re.compile(rf"/dags/{DAG_ID}/runs/[^/]+$"))

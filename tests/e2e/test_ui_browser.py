"""The Airflow UI in headless Chromium: log in, trigger from the form, read the run's graph and outputs.

Needs Debian's Chromium at /usr/bin/chromium (`apt-get install -y chromium`); Playwright drives it, no
browser download. Screenshots go to the session's artifacts dir (or $TEST_ARTIFACTS_DIR); with
UPDATE_DOCS_SCREENSHOTS=1 they are also copied to docs/ for the README.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import DAG_ID, DEFAULT_FROM, E2E

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TIMEOUT_MS = 30_000
DOCS_SHOTS = {
    "trigger-form.png": "screenshot-trigger-form.png",
    "run-graph.png": "screenshot-run-graph.png",
    "run-outputs.png": "screenshot-run-outputs.png",
}


@contextmanager
def chromium_page(width: int, **page_options: Any) -> Iterator[Any]:
    """A headless Chromium page (Debian's /usr/bin/chromium, driven by Playwright), closed on exit."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found; install Debian's Chromium with: apt-get install -y chromium")
    from playwright.sync_api import expect, sync_playwright

    # The UI loads each XCom value and graph node lazily; a busy 2-core CI box needs more than 5 s.
    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": 1000}, **page_options)
            page.set_default_timeout(TIMEOUT_MS)
            yield page
        finally:
            browser.close()


@pytest.fixture(scope="module")
def page(e2e: E2E) -> Iterator[Any]:
    with chromium_page(1600) as page:
        yield page


def log_in(page: Any, base_url: str, user: str, password: str) -> None:
    page.goto(f"{base_url}/auth/login")
    page.get_by_label("Username").fill(user)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"^(?!.*/auth/login).*$"))


def submit_trigger(page: Any, dialog: Any) -> str:
    """Click the trigger dialog's Trigger button; the new run's id from the REST answer."""
    with page.expect_response(
        lambda r: r.url.endswith(f"/dags/{DAG_ID}/dagRuns") and r.request.method == "POST"
    ) as resp:
        dialog.get_by_role("button", name="Trigger").click()
    assert resp.value.status == 200, resp.value.text()
    page.set_viewport_size({"width": 1600, "height": 1000})
    return str(resp.value.json()["dag_run_id"])


def trigger_from_form(
    page: Any, base_url: str, params: dict[str, Any], conf: dict[str, str], shots: Path
) -> str:
    """Open the trigger form, check each param's label and description, fill ``conf``, trigger it.

    Returns the new run's id.
    """
    from playwright.sync_api import expect

    page.set_viewport_size({"width": 1600, "height": 2000})  # the whole form fits in one screenshot
    page.goto(f"{base_url}/dags/{DAG_ID}")
    page.get_by_role("button", name="Trigger").first.click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_text("Run Parameters")).to_be_visible()
    for name, spec in params.items():
        field = dialog.locator(f"#element_{name}")
        expect(field, f"param {name} has no field in the trigger form").to_be_visible()
        row = dialog.get_by_role("group").filter(has=page.locator(f"#element_{name}"))
        expect(row).to_contain_text(spec["schema"].get("title") or name)
        expect(row, f"param {name}: description missing").to_contain_text(spec["description"])
    for name, value in conf.items():
        dialog.locator(f"#element_{name}").fill(value)
    dialog.screenshot(path=str(shots / "trigger-form.png"))
    return submit_trigger(page, dialog)


def check_graph(page: Any, base_url: str, run_id: str, expected: dict[str, str], shots: Path) -> None:
    """The run's graph shows each task with its final state."""
    from playwright.sync_api import expect

    page.goto(f"{base_url}/dags/{DAG_ID}/runs/{run_id}")
    page.get_by_role("button", name=re.compile(r"^Show Graph")).click()
    for task_id, state in expected.items():
        node = page.locator(f'.react-flow__node[data-id="{task_id}"]')
        expect(node).to_contain_text(task_id)
        expect(node, f"graph node {task_id} should show {state}").to_contain_text(state)
    page.wait_for_timeout(500)  # let the layout settle for the screenshot
    page.screenshot(path=str(shots / "run-graph.png"))


def check_outputs(page: Any, base_url: str, run_id: str, outputs: dict[str, str], shots: Path) -> None:
    """The end task's XCom tab lists the workflow outputs."""
    from playwright.sync_api import expect

    page.goto(f"{base_url}/dags/{DAG_ID}/runs/{run_id}/tasks/delivered/xcom")
    for key, value in outputs.items():
        row = page.get_by_role("row").filter(has_text=key)
        expect(row).to_contain_text(value)
    page.screenshot(path=str(shots / "run-outputs.png"))


def test_trigger_form_run_graph_and_outputs(e2e: E2E, page: Any) -> None:
    shots = e2e.artifacts / "browser"
    shots.mkdir(parents=True, exist_ok=True)
    params = e2e.client.dag_details(DAG_ID)["params"]
    assert params, "the DAG has no params"
    conf = {
        "to": "+15551235555",
        "from": "+15005550006",
        "body": f"Hello from the Airflow UI {time.time():.0f}",
    }

    log_in(page, e2e.base_url, e2e.stack.admin_user, e2e.stack.admin_password)
    run_id = trigger_from_form(page, e2e.base_url, params, conf, shots)
    result = e2e.wait(run_id)
    assert result.state == "success", e2e.task_log_hint(run_id)
    outputs = e2e.outputs(run_id, "delivered")
    assert outputs["finalStatus"] == "delivered"
    message = [m for m in e2e.sandbox.messages() if m["sid"] == outputs["messageSid"]]
    assert [(m["to"], m["body"]) for m in message] == [(conf["to"], conf["body"])]

    states = {t: result.task_state(t) or "" for t in result.tasks}
    assert states["delivered"] == "success" and states["failed"] == "skipped", states
    check_graph(page, e2e.base_url, run_id, states, shots)
    check_outputs(
        page,
        e2e.base_url,
        run_id,
        {"messageSid": outputs["messageSid"], "finalStatus": "delivered"},
        shots,
    )

    print(f"\nscreenshots: {shots}")
    if os.environ.get("UPDATE_DOCS_SCREENSHOTS") == "1":
        for name, target in DOCS_SHOTS.items():
            shutil.copyfile(shots / name, REPO / "docs" / target)
        print(f"copied to {REPO / 'docs'}")


def test_trigger_form_offers_the_deployment_sender(e2e: E2E, page: Any) -> None:
    """issue 14 point 5: `from` is filled with $TWILIO_DEFAULT_FROM, and its description says which rule
    Airflow cannot check at trigger time; triggering the form as offered (only To and Body) delivers."""
    from playwright.sync_api import expect

    log_in(page, e2e.base_url, e2e.stack.admin_user, e2e.stack.admin_password)
    page.set_viewport_size({"width": 1600, "height": 2000})
    page.goto(f"{e2e.base_url}/dags/{DAG_ID}")
    page.get_by_role("button", name="Trigger").first.click()
    dialog = page.get_by_role("dialog")
    expect(dialog.locator("#element_from")).to_have_value(DEFAULT_FROM)
    row = dialog.get_by_role("group").filter(has=page.locator("#element_from"))
    expect(row).to_contain_text("TWILIO_DEFAULT_FROM")
    expect(row).to_contain_text("Airflow cannot check this rule when the run is triggered")
    body = f"default sender {time.time():.0f}"
    dialog.locator("#element_to").fill("+15551235556")
    dialog.locator("#element_body").fill(body)
    shots = e2e.artifacts / "browser"
    shots.mkdir(parents=True, exist_ok=True)
    dialog.screenshot(path=str(shots / "trigger-form-default-from.png"))
    run_id = submit_trigger(page, dialog)
    assert e2e.wait(run_id).state == "success", e2e.task_log_hint(run_id)
    assert [m["from"] for m in e2e.sandbox.messages() if m["body"] == body] == [DEFAULT_FROM]
    # issue 14 point 6: the poke logs of checkStatus carry no DeprecatedImportWarning any more.
    logs = list((e2e.stack.home / "logs").glob(f"dag_id={DAG_ID}/run_id={run_id}/task_id=checkStatus/*"))
    text = "".join(p.read_text(errors="replace") for p in logs if p.is_file())
    assert "Poking:" in text, f"no checkStatus log found in {logs}"
    assert "determine_kwargs" not in text and "DeprecatedImportWarning" not in text


def test_connection_form_offers_twilio_with_relabelled_fields(e2e: E2E, page: Any) -> None:
    """The provider's connection type: Admin > Connections > Add offers "Twilio", whose login and password
    fields carry Twilio's names."""
    from playwright.sync_api import expect

    log_in(page, e2e.base_url, e2e.stack.admin_user, e2e.stack.admin_password)
    shots = e2e.artifacts / "browser"
    shots.mkdir(parents=True, exist_ok=True)
    page.goto(f"{e2e.base_url}/connections")
    page.get_by_role("button", name=re.compile("Add Connection")).click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("combobox").first.click()
    page.get_by_role("option", name="Twilio", exact=True).click()
    try:
        expect(dialog.get_by_text("Account SID or API key SID")).to_be_visible()
        expect(dialog.get_by_text("Auth token or API key secret")).to_be_visible()
        expect(dialog.get_by_role("textbox", name="Host")).to_have_attribute(
            "placeholder", "api.twilio.com (the default)"
        )
    finally:
        dialog.screenshot(path=str(shots / "connection-form-twilio.png"))

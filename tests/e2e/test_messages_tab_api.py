"""The Messages tab's endpoints on a real api-server: Airflow's auth on every one, escaping, masking."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.e2e.conftest import DAG_ID, E2E, NO_ACCESS_USER
from tests.e2e.messages_runs import (
    BATCH_DAG,
    DELIVERED_TO,
    HOSTILE_BODY,
    INVALID_TO,
    OUTSIDE_PATH,
    SENDER,
    UNDELIVERED_TO,
    MessageRuns,
)

pytestmark = pytest.mark.e2e


def tab(e2e: E2E, dag_id: str, run_id: str, leaf: str = "") -> str:
    return f"{e2e.base_url}/twilio-messages/dags/{dag_id}/runs/{quote(run_id, safe='')}/{leaf}"


def endpoints(e2e: E2E, runs: MessageRuns) -> list[str]:
    return [
        tab(e2e, DAG_ID, runs.undelivered),
        tab(e2e, DAG_ID, runs.undelivered, "facts"),
        tab(e2e, BATCH_DAG, runs.batch),
        tab(e2e, BATCH_DAG, runs.batch, "rows"),
        tab(e2e, BATCH_DAG, runs.batch, "report"),
        f"{e2e.base_url}/twilio-messages/",
    ]


@pytest.fixture(scope="module")
def http() -> Any:
    with httpx.Client(trust_env=False, timeout=30) as client:
        yield client


def test_plugin_is_registered_with_the_run_tab_and_the_nav_page(e2e: E2E):
    plugins = e2e.client.request("GET", "/api/v2/plugins").json()["plugins"]
    ours = [p for p in plugins if p["name"] == "twilio_messages"]
    assert len(ours) == 1, [p["name"] for p in plugins]
    views = {v["destination"]: v for v in ours[0]["external_views"]}
    assert views["dag_run"]["name"] == "Messages"
    assert views["dag_run"]["href"] == "twilio-messages/dags/{DAG_ID}/runs/{RUN_ID}/"
    assert views["nav"]["href"] == "twilio-messages/"
    assert [a["url_prefix"] for a in ours[0]["fastapi_apps"]] == ["/twilio-messages"]


def test_anonymous_and_bad_tokens_get_no_data(e2e: E2E, message_runs: MessageRuns, http: httpx.Client):
    secrets = [message_runs.undelivered, UNDELIVERED_TO, "Unreachable", "SM"]
    for url in endpoints(e2e, message_runs):
        anonymous = http.get(url)
        assert anonymous.status_code == 401, (url, anonymous.status_code)
        forged = http.get(url, headers={"Authorization": "Bearer not-a-jwt"})
        assert forged.status_code == 403, (url, forged.status_code)
        cookie = http.get(url, cookies={"_token": "not-a-jwt"})
        assert cookie.status_code == 403, (url, cookie.status_code)
        for response in (anonymous, forged, cookie):
            assert not any(s in response.text for s in secrets), (url, response.text)


def test_a_user_without_dag_access_is_refused_by_the_auth_manager(
    e2e: E2E, message_runs: MessageRuns, http: httpx.Client
):
    passwords = json.loads(e2e.stack.passwords_file.read_text())
    token = http.post(
        f"{e2e.base_url}/auth/token", json={"username": NO_ACCESS_USER, "password": passwords[NO_ACCESS_USER]}
    ).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    for url in endpoints(e2e, message_runs)[:-1]:
        response = http.get(url, headers=headers)
        assert response.status_code == 403, (url, response.status_code)
        assert message_runs.undelivered not in response.text
    listing = http.get(f"{e2e.base_url}/twilio-messages/", headers=headers)
    assert listing.status_code == 200
    assert message_runs.undelivered not in listing.text and "No runs yet." in listing.text


def authed(e2e: E2E) -> dict[str, str]:
    return {"Authorization": f"Bearer {e2e.client.token()}"}


def test_workflow_facts(e2e: E2E, message_runs: MessageRuns, http: httpx.Client):
    facts = {
        name: http.get(tab(e2e, DAG_ID, run_id, "facts"), headers=authed(e2e)).json()
        for name, run_id in (
            ("delivered", message_runs.delivered),
            ("undelivered", message_runs.undelivered),
            ("invalid", message_runs.invalid),
        )
    }
    assert facts["delivered"]["banner"]["headline"] == "Delivered to +15•••••0001: status delivered"
    undelivered = facts["undelivered"]
    assert undelivered["banner"]["headline"] == (
        "Not delivered to +15•••••3003: status undelivered, error 30003: "
        "Unreachable destination handset (often temporary: phone off or out of coverage)"
    )
    assert undelivered["banner"]["error"]["docs_url"] == "https://www.twilio.com/docs/errors/30003"
    outputs = e2e.outputs(message_runs.undelivered, "failed")
    assert undelivered["message_sid"] == outputs["messageSid"]  # the same facts as the REST API's XComs
    assert [row["status"] for row in undelivered["timeline"]][-1] == "undelivered"
    assert [step["task_id"] for step in undelivered["path"] if step["taken"]] == [
        "sendMessage",
        "checkStatus",
        "routeByStatus",
        "failed",
    ]
    invalid = facts["invalid"]
    assert invalid["banner"]["headline"] == "Nothing was sent: Twilio error 21211, Invalid 'To' phone number"
    assert invalid["banner"]["detail"] == "The 'To' number +15•••••0001 is not a valid phone number."
    everything = json.dumps(facts, ensure_ascii=False)
    for number in (DELIVERED_TO, UNDELIVERED_TO, INVALID_TO):
        assert number not in everything


def test_page_escapes_the_body_and_shows_no_secret(e2e: E2E, message_runs: MessageRuns, http: httpx.Client):
    html = http.get(tab(e2e, DAG_ID, message_runs.delivered), headers=authed(e2e)).text
    assert "&lt;script&gt;alert(1)&lt;/script&gt; {{ 7*7 }}" in html
    assert HOSTILE_BODY not in html and "<script>alert" not in html and html.count("<script") == 1
    conn = json.loads(e2e.sandbox.conn_json())
    for page in [html] + [
        http.get(url, headers=authed(e2e)).text for url in endpoints(e2e, message_runs) if "report" not in url
    ]:
        assert conn["password"] not in page
        assert DELIVERED_TO not in page and UNDELIVERED_TO not in page


def test_batch_facts_rows_and_download(e2e: E2E, message_runs: MessageRuns, http: httpx.Client):
    summary = message_runs.batch_summary
    facts = http.get(tab(e2e, BATCH_DAG, message_runs.batch, "facts"), headers=authed(e2e)).json()
    assert dict(map(tuple, facts["counts"])) == summary["by_outcome"]
    assert sum(n for _, n in facts["counts"]) == summary["rows"] == 1000
    assert {g["code"]: g["count"] for g in facts["groups"]} == summary["error_codes"]

    # A filter asked for while the report's index is still being built answers page one with
    # `building` set (the tab reloads itself); a client asks again, as the tab does.
    deadline = time.monotonic() + 120
    while True:
        rows = http.get(
            tab(e2e, BATCH_DAG, message_runs.batch, "rows"),
            params={"outcome": "failed", "size": 25, "page": 2},
            headers=authed(e2e),
        ).json()
        if not rows.get("building") or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert not rows.get("building"), "the report's index was not built within 120 s"
    assert rows["total"] == summary["by_outcome"]["failed"] and rows["page"] == 2
    assert {r["outcome"] for r in rows["rows"]} == {"failed"} and len(rows["rows"]) == 25

    with http.stream("GET", tab(e2e, BATCH_DAG, message_runs.batch, "report"), headers=authed(e2e)) as resp:
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/csv")
        assert "attachment" in resp.headers["content-disposition"]
        lines = [line for line in resp.iter_lines() if line]
    assert len(lines) == 1 + 1000 and lines[0].startswith("row,to,outcome,status,sid")


def test_a_prepare_failure_shows_the_tasks_own_error(e2e: E2E, message_runs: MessageRuns, http: httpx.Client):
    facts = http.get(tab(e2e, BATCH_DAG, message_runs.prepare_failed, "facts"), headers=authed(e2e)).json()
    assert facts["kind"] == "batch" and facts["has_summary"] is False and facts["banner_kind"] == "failed"
    assert facts["headline"] == "The run ended failed: task prepare failed"
    failure = facts["failure"]
    assert failure["task_id"] == "prepare" and failure["try_number"] >= 1
    # The sentence prepare raised, as the task log records it (not a generic "see the logs").
    assert "recipients_path" in failure["message"] and "must be a file inside" in failure["message"]
    assert failure["log_href"].startswith(
        f"dags/{BATCH_DAG}/runs/{quote(message_runs.prepare_failed, safe='')}/tasks/prepare"
    )


def test_a_summary_xcom_cannot_make_the_tab_read_a_file_outside_the_run(e2e: E2E, http: httpx.Client):
    """The issue's reproduction: an XCom written through the REST API names a file next to the storage."""
    from twilio_messaging.storage import safe_name

    run_id = e2e.run_id("escape")
    e2e.client.trigger(BATCH_DAG, {"recipients_path": OUTSIDE_PATH, "from": SENDER}, run_id=run_id)
    assert e2e.client.wait_for_run(BATCH_DAG, run_id, timeout=300, interval=1.0).state == "failed"
    marker = "MARKER-" + run_id
    (e2e.stack.home / "marker-outside.csv").write_text(f"row,to,outcome\n1,{marker},x\n")
    folder = e2e.stack.home / "twilio_messaging" / BATCH_DAG / safe_name(run_id)
    assert folder.parent.is_dir(), "the e2e stack keeps run data under $AIRFLOW_HOME/twilio_messaging"
    xcoms = f"/api/v2/dags/{BATCH_DAG}/dagRuns/{quote(run_id, safe='')}/taskInstances/summary/xcomEntries"
    paths = (
        f"file://{folder}/../../../marker-outside.csv",
        f"file://{folder}/%2e%2e/%2e%2e/%2e%2e/marker-outside.csv",
        str(e2e.stack.home / "marker-outside.csv"),
    )
    for i, path in enumerate(paths):
        value = {"report_path": path, "rows": 1}
        if i == 0:
            body = {"key": "return_value", "value": value, "map_index": -1}
            e2e.client.request("POST", xcoms, json=body, ok=(200, 201))
        else:
            e2e.client.request("PATCH", f"{xcoms}/return_value", json={"value": value, "map_index": -1})
        assert e2e.client.xcom(BATCH_DAG, run_id, "summary")["report_path"] == path
        for leaf in ("report", "rows"):
            response = http.get(tab(e2e, BATCH_DAG, run_id, leaf), headers=authed(e2e))
            assert response.status_code == 404, (path, leaf, response.status_code)
            assert marker not in response.text
        assert marker not in http.get(tab(e2e, BATCH_DAG, run_id), headers=authed(e2e)).text
    assert "refused to read" in (e2e.stack.log_dir / "api-server.log").read_text()


HUGE = "99999999999999999999"


def test_numeric_query_parameters_never_give_a_500(e2e: E2E, message_runs: MessageRuns, http: httpx.Client):
    for params in (
        {"page": HUGE},
        {"page": HUGE, "sort": "status"},
        {"page": "-1", "size": HUGE},
        {"error_code": HUGE, "page": HUGE},
        {"page": "1e9", "size": "abc"},
    ):
        rows = http.get(tab(e2e, BATCH_DAG, message_runs.batch, "rows"), params=params, headers=authed(e2e))
        assert rows.status_code in (200, 400), (params, rows.status_code, rows.text[:300])
        if rows.status_code == 200 and rows.json()["pages"]:
            assert rows.json()["page"] <= rows.json()["pages"], params
        page = http.get(tab(e2e, BATCH_DAG, message_runs.batch), params=params, headers=authed(e2e))
        assert page.status_code in (200, 400), (params, page.status_code)
    last = http.get(
        tab(e2e, BATCH_DAG, message_runs.batch, "rows"), params={"page": HUGE}, headers=authed(e2e)
    ).json()
    assert last["page"] == last["pages"] == 20 and len(last["rows"]) == 50


def test_concurrent_unpause_and_trigger_never_answer_500(e2e: E2E, message_runs: MessageRuns):
    """The trigger dialog's "unpause" and its trigger, and other clicks, at once, several times, on SQLite."""
    import sqlite3
    from concurrent.futures import ThreadPoolExecutor

    db = e2e.stack.sqlite_file
    assert db is not None, "the e2e stack runs on SQLite"
    with sqlite3.connect(db, timeout=60) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    token = e2e.client.token()
    headers = {"Authorization": f"Bearer {token}"}
    api = f"{e2e.base_url}/api/v2/dags"

    def click(action: tuple[str, str, dict[str, Any] | None]) -> tuple[str, int, str]:
        method, url, body = action
        with httpx.Client(trust_env=False, timeout=120) as client:
            response = client.request(method, url, json=body, headers=headers)
        return f"{method} {url}", response.status_code, response.text[:300]

    statuses = []
    for round_ in range(4):
        e2e.client.request("PATCH", f"/api/v2/dags/{BATCH_DAG}", json={"is_paused": True})
        actions: list[tuple[str, str, dict[str, Any] | None]] = []
        for dag in (BATCH_DAG, DAG_ID):
            actions.append(("PATCH", f"{api}/{dag}", {"is_paused": False}))
        for i in range(3):
            conf = {"recipients_path": OUTSIDE_PATH, "from": SENDER}
            body = {"logical_date": None, "conf": conf, "dag_run_id": e2e.run_id(f"busy{round_}_{i}")}
            actions.append(("POST", f"{api}/{BATCH_DAG}/dagRuns", body))
        actions.append(("GET", f"{e2e.base_url}/twilio-messages/", None))
        with ThreadPoolExecutor(len(actions)) as pool:
            statuses += list(pool.map(click, actions))
    failures = [s for s in statuses if s[1] >= 500]
    assert not failures, failures
    assert all(s[1] in (200, 201) for s in statuses), [s for s in statuses if s[1] not in (200, 201)]


def test_starting_the_stack_logs_no_pool_traceback(e2e: E2E):
    """A restart finds the pool: it is looked up first, so no 409 (and its 90-line traceback) in the log."""
    for slots in (50, 50, 40, 50):  # what each start of `make up` on the same home does
        e2e.stack.ensure_pool("twilio_api", slots, "Twilio API calls (see README)")
        assert e2e.client.request("GET", "/api/v2/pools/twilio_api").json()["slots"] == slots
    log = (e2e.stack.log_dir / "api-server.log").read_text(errors="replace")
    assert "slot_pool" not in log and "IntegrityError" not in log, log[-3000:]

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
    assert dict(map(tuple, facts["counts"])) == summary["by_status"]
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

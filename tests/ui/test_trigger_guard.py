"""The api-server's guard: a trigger of the project's DAGs with a lone surrogate in its conf gets a 400
naming the field; everything else reaches Airflow unchanged, body included."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI, Request

from twilio_messaging.plugin import TwilioMessagesPlugin
from twilio_messaging.ui.trigger_guard import TriggerConfGuard, lone_surrogate_field

TRIGGER = "/api/v2/dags/twilio_send_message_track_status/dagRuns"


def guarded_app() -> tuple[FastAPI, list[bytes]]:
    seen: list[bytes] = []
    app = FastAPI()

    @app.post("/api/v2/dags/{dag_id}/dagRuns")
    async def trigger(dag_id: str, request: Request) -> dict[str, str]:
        seen.append(await request.body())
        return {"dag_id": dag_id}

    app.add_middleware(TriggerConfGuard)
    return app, seen


async def post(app: FastAPI, path: str, raw: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.post(path, content=raw.encode(), headers={"content-type": "application/json"})


@pytest.mark.anyio
async def test_a_lone_surrogate_in_the_conf_is_refused_naming_the_field():
    app, seen = guarded_app()
    raw = '{"logical_date": null, "conf": {"to": "+15553400002", "body": "a\\ud800b"}}'
    response = await post(app, TRIGGER, raw)
    assert response.status_code == 400
    assert response.json()["detail"] == (
        "Invalid input for 'conf.body': must be valid Unicode text; it contains a lone surrogate"
    )
    assert seen == []  # Airflow never saw it


@pytest.mark.anyio
async def test_valid_text_and_other_dags_pass_with_their_body_intact():
    app, seen = guarded_app()
    pair = '{"logical_date": null, "conf": {"body": "emoji \\ud83d\\ude00 and \\u00e9"}}'
    assert (await post(app, TRIGGER, pair)).status_code == 200
    other = '{"conf": {"body": "a\\ud800b"}}'
    assert (await post(app, "/api/v2/dags/someone_elses_dag/dagRuns", other)).status_code == 200
    not_json = '{"conf": "\\ud800'
    assert (await post(app, TRIGGER, not_json)).status_code == 200  # Airflow answers it (422)
    assert seen == [pair.encode(), other.encode(), not_json.encode()]


def test_the_field_is_found_in_lists_and_keys():
    assert lone_surrogate_field({"conf": {"recipients": [{"to": "+1"}, {"name": "x\udfff"}]}}) == (
        "conf.recipients[1].name"
    )
    assert lone_surrogate_field({"conf": {"k\ud800": 1}}) == "conf.'k\\ud800'"
    assert lone_surrogate_field({"conf": {"body": "\U0001f600"}}) is None


def test_the_plugin_installs_the_guard_on_the_api_server():
    assert [m["middleware"] for m in TwilioMessagesPlugin.fastapi_root_middlewares] == [TriggerConfGuard]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"

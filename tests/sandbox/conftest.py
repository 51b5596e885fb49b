"""Fixtures and helpers for the sandbox tests: an authenticated client and the OpenAPI schema checks."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import pytest
from openapi_schema_validator import OAS30Validator

from sandbox.testing import REPO, Sandbox, run_sandbox

SPEC_PATH = REPO / "sandbox" / "openapi" / "twilio_api_v2010.json"
MESSAGES_PATH = "/2010-04-01/Accounts/{AccountSid}/Messages.json"
GOOD_FROM = "+15005550006"
SLOW_STEP = 0.5  # long enough that a poll on a busy machine still sees every step
SLOW_NUMBER = "+15551234444"  # 10x the step delay per step: safely cancelable for 5 s


@functools.cache
def _spec() -> dict[str, Any]:
    return json.loads(SPEC_PATH.read_text())


@functools.cache
def _validator(which: str) -> OAS30Validator:
    spec = _spec()
    if which == "message":
        schema: dict[str, Any] = {"$ref": "#/components/schemas/api.v2010.account.message"}
    else:
        schema = dict(
            spec["paths"][MESSAGES_PATH]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        )
    # Refs are "#/components/...": resolve them against a root that carries the spec's components.
    return OAS30Validator({**schema, "components": spec["components"]})


def message_properties() -> set[str]:
    return set(_spec()["components"]["schemas"]["api.v2010.account.message"]["properties"])


def assert_message(body: dict[str, Any]) -> dict[str, Any]:
    """Valid against api.v2010.account.message, with every field present and real RFC 2822 dates."""
    _validator("message").validate(body)
    assert set(body) == message_properties()
    for field in ("date_created", "date_updated", "date_sent"):
        if body[field] is not None:
            assert parsedate_to_datetime(body[field]).utcoffset().total_seconds() == 0, body[field]
            assert body[field].endswith(" +0000"), body[field]
    return body


def assert_page(body: dict[str, Any]) -> dict[str, Any]:
    """Valid against ListMessageResponse (messages too), with exactly one non-meta key, as the SDK needs."""
    _validator("list").validate(body)
    assert set(body) == {
        "messages",
        "end",
        "first_page_uri",
        "next_page_uri",
        "page",
        "page_size",
        "previous_page_uri",
        "start",
        "uri",
    }
    for message in body["messages"]:
        assert_message(message)
    return body


def assert_error(response: httpx.Response, status: int, code: int) -> dict[str, Any]:
    """Twilio's legacy error shape, never with type/title (which would make the SDK raise another class)."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code, body
    assert body["status"] == status
    assert body["more_info"] == f"https://www.twilio.com/docs/errors/{code}"
    assert isinstance(body["message"], str) and body["message"]
    assert not {"type", "title"} & set(body)
    return body


class Api:
    """An authenticated client for one sandbox's Messages API."""

    def __init__(self, sb: Sandbox, auth: tuple[str, str] | None = None) -> None:
        self.sb = sb
        self.base = f"/2010-04-01/Accounts/{sb.account_sid}/Messages"
        self.client = httpx.Client(
            base_url=sb.base_url, auth=auth or (sb.account_sid, sb.auth_token), timeout=10, trust_env=False
        )

    def create(self, **form: Any) -> httpx.Response:
        form.setdefault("From", GOOD_FROM)
        form = {k: v for k, v in form.items() if v is not None}
        return self.client.post(f"{self.base}.json", data=form)

    def send(self, to: str = "+15551230000", **form: Any) -> dict[str, Any]:
        """Create a message that must succeed; returns the validated resource."""
        form.setdefault("Body", "hello")
        response = self.create(To=to, **form)
        assert response.status_code == 201, response.text
        return assert_message(response.json())

    def fetch(self, sid: str) -> httpx.Response:
        return self.client.get(f"{self.base}/{sid}.json")

    def get(self, sid: str) -> dict[str, Any]:
        response = self.fetch(sid)
        assert response.status_code == 200, response.text
        return assert_message(response.json())

    def list(self, **params: Any) -> httpx.Response:
        return self.client.get(f"{self.base}.json", params=params)

    def update(self, sid: str, **form: Any) -> httpx.Response:
        return self.client.post(f"{self.base}/{sid}.json", data=form)

    def close(self) -> None:
        self.client.close()


@pytest.fixture
def api(clean_sandbox: Sandbox) -> Iterator[Api]:
    client = Api(clean_sandbox)
    yield client
    client.close()


@pytest.fixture(scope="session")
def slow_sandbox() -> Iterator[Sandbox]:
    """A sandbox with 0.5 s per status step (5 s for the slow number), to watch progress."""
    with run_sandbox("--step-delay", str(SLOW_STEP)) as sb:
        yield sb


@pytest.fixture
def slow_api(slow_sandbox: Sandbox) -> Iterator[Api]:
    slow_sandbox.reset()
    client = Api(slow_sandbox)
    yield client
    client.close()

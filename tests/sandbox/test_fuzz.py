"""Fuzzing the Messages endpoints with requests drawn from the shipped OpenAPI schemas, over real HTTP.

Whatever the input, the sandbox answers below 500 (no fault is injected here), with a JSON body of Twilio's
error shape on 4xx, a message or a page that validates against the spec on 2xx, an ``Allow`` header on 405
and no content headers on 204. Hypothesis builds the requests from the spec's request-body and parameter
schemas (formats, patterns, enums, ranges), mixed with arbitrary text and the URL and date shapes that once
crashed the sandbox; examples are bounded and derandomized so ``make test`` stays quick and reproducible.
The URLs include ``https://example.com``: the callback allowlist (loopback only) keeps the sandbox from
calling it.

Why Hypothesis rather than schemathesis: schemathesis 4.32.5 installs here, but it adds seven packages
(werkzeug, graphql-core, jsonschema-rs, ...) and a pytest plugin that loads in every session of the whole
suite; Hypothesis is already pinned, and the strategies below read the same OpenAPI document.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from datetime import UTC, timedelta, timezone
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.sandbox.conftest import MESSAGES_PATH, Api, _spec, assert_message, assert_page

INSTANCE_PATH = "/2010-04-01/Accounts/{AccountSid}/Messages/{Sid}.json"
FORM = "application/x-www-form-urlencoded"
FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# Shapes a generator rarely finds on its own; each one once made the sandbox answer 500, or is a trap.
TRICKY_URLS = [
    "https://example.com",
    "https://example.com/status",
    "http://[::1",
    "http://[abc]/cb",
    "http://127.0.0.1:99999/cb",
    "http://127.0.0.1:1/cb",
    "http://under_score.example.com/cb",
    "ftp://example.com/x",
    "//no-scheme",
]
TRICKY_DATES = [
    "1 Jan 99999999999999999999 00:00 +0000",
    "0001-01-01T00:00:00+05:00",
    "9999-12-31T23:59:59-05:00",
    "0001-01-01",
    "2026-02-30",
    "notadate",
    "2026-12-02T10:00:00",
]
TEXT = st.text(max_size=30)
OFFSETS = [None, UTC, timezone(timedelta(hours=5)), timezone(-timedelta(hours=14))]


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref is None:
        return schema
    node: Any = _spec()
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def value_strategy(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values for one form field or query parameter, as strings (what travels on the wire)."""
    schema = _resolve(schema)
    kind, fmt = schema.get("type"), schema.get("format")
    if kind == "array":
        return st.lists(value_strategy(schema["items"]), max_size=12)
    if "enum" in schema:
        return st.one_of(st.sampled_from(schema["enum"]), TEXT)
    if kind == "integer":
        low, high = schema.get("minimum", -(10**6)), schema.get("maximum", 10**6)
        return st.one_of(st.integers(low, high).map(str), st.integers().map(str), TEXT)
    if kind == "number":
        return st.one_of(st.floats(allow_nan=True).map(str), TEXT)
    if kind == "boolean":
        return st.one_of(st.sampled_from(["true", "false"]), TEXT)
    if fmt == "phone-number":
        return st.one_of(
            st.from_regex(r"\A\+1[2-9][0-9]{9}\Z"),
            st.sampled_from(["+15005550006", "+15005550001", "+15005550008", "+15551233003", "whatsapp:+1"]),
            TEXT,
        )
    if fmt == "uri":
        return st.one_of(st.sampled_from(TRICKY_URLS), TEXT)
    if fmt == "date-time":
        return st.one_of(
            st.datetimes(timezones=st.sampled_from(OFFSETS)).map(lambda d: d.isoformat()),
            st.sampled_from(TRICKY_DATES),
            TEXT,
        )
    if "pattern" in schema:
        return st.one_of(st.from_regex(schema["pattern"], fullmatch=True), TEXT)
    return TEXT


@functools.cache
def _form_schema(path: str, method: str) -> dict[str, Any]:
    return _spec()["paths"][path][method]["requestBody"]["content"][FORM]["schema"]


def form_strategy(path: str, method: str) -> st.SearchStrategy[dict[str, Any]]:
    schema = _form_schema(path, method)
    required = set(schema.get("required", []))
    fields = {name: value_strategy(prop) for name, prop in schema["properties"].items()}
    return st.fixed_dictionaries(
        {k: v for k, v in fields.items() if k in required},
        optional={k: v for k, v in fields.items() if k not in required},
    )


def query_strategy() -> st.SearchStrategy[dict[str, Any]]:
    params = [p for p in _spec()["paths"][MESSAGES_PATH]["get"]["parameters"] if p["in"] == "query"]
    return st.fixed_dictionaries({}, optional={p["name"]: value_strategy(p["schema"]) for p in params})


def check(response: httpx.Response) -> Any:
    """The guarantees that hold for every answer; returns the parsed body (None for 204)."""
    assert response.status_code < 500, (response.request.method, response.request.url, response.text)
    if response.status_code == 204:
        assert "content-length" not in response.headers and response.content == b""
        return None
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    if response.status_code >= 400:
        assert isinstance(body["code"], int) and body["code"] > 0, body
        assert isinstance(body["message"], str) and body["message"], body
        assert body["more_info"] == f"https://www.twilio.com/docs/errors/{body['code']}"
        assert body["status"] == response.status_code
        assert not {"type", "title"} & set(body)
    if response.status_code == 405:
        assert response.headers["allow"], response.headers
    return body


@pytest.fixture
def fuzz_api(clean_sandbox) -> Iterator[Api]:
    client = Api(clean_sandbox)
    yield client
    client.close()


def test_create_never_fails_with_a_5xx(fuzz_api: Api) -> None:
    @FUZZ
    @given(form_strategy(MESSAGES_PATH, "post"))
    def create(form: dict[str, Any]) -> None:
        response = fuzz_api.client.post(f"{fuzz_api.base}.json", data=form)
        body = check(response)
        if response.status_code == 201:
            assert_message(body)

    create()
    stats = fuzz_api.sb.stats()
    assert stats["requests"]["create"] >= 150
    assert stats["callbacks"]["sent"] == 0  # nothing reached example.com: the allowlist held


def test_list_never_fails_with_a_5xx(fuzz_api: Api) -> None:
    fuzz_api.send(Body="one message, so that the filters have something to compare against")

    @FUZZ
    @given(query_strategy())
    def list_messages(params: dict[str, Any]) -> None:
        response = fuzz_api.client.get(f"{fuzz_api.base}.json", params=params)
        body = check(response)
        if response.status_code == 200:
            assert_page(body)

    list_messages()


def test_message_instance_never_fails_with_a_5xx(fuzz_api: Api) -> None:
    sids = [fuzz_api.send(Body="x")["sid"] for _ in range(3)]
    sid_schema = next(
        p["schema"] for p in _spec()["paths"][INSTANCE_PATH]["get"]["parameters"] if p["name"] == "Sid"
    )
    sid = st.one_of(st.sampled_from(sids), value_strategy(sid_schema))

    @FUZZ
    @given(
        st.sampled_from(["GET", "POST", "DELETE", "PUT", "PATCH"]),
        sid,
        form_strategy(INSTANCE_PATH, "post"),
    )
    def instance(method: str, message_sid: str, form: dict[str, Any]) -> None:
        url = f"{fuzz_api.base}/{quote(message_sid, safe='')}.json"
        if method in ("POST", "PUT", "PATCH"):
            response = fuzz_api.client.request(method, url, data=form)
        else:
            response = fuzz_api.client.request(method, url)
        body = check(response)
        if response.status_code == 200:
            assert_message(body)

    instance()

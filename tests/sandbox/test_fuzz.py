"""Fuzzing every route of the sandbox process, the Messages API and the ``/_sandbox/`` control API, over real
HTTP on loopback.

Whatever the input, the sandbox answers below 500 (no fault is injected by the API tests), with a JSON body of
Twilio's error shape on 4xx, a message or a page that validates against the spec on 2xx, an ``Allow`` header
on 405 and no content headers on 204. Hypothesis builds the requests from the spec's request-body and
parameter schemas (formats, patterns, enums, ranges), mixed with arbitrary text and the URL and date shapes
that once crashed the sandbox; the control API gets fault settings of every type, deep JSON and raw bytes,
and a fault setting it accepts must not poison the calls after it. Examples are bounded and derandomized so
``make test`` stays quick and reproducible.

The URLs include ``https://example.com`` and host names that two URL parsers read differently: the callback
allowlist (loopback only) keeps the sandbox from calling any of them, which
``test_fuzzed_callback_urls_never_leave_loopback`` checks host by host.

Why Hypothesis rather than schemathesis: schemathesis 4.32.5 installs here, but it adds seven packages
(werkzeug, graphql-core, jsonschema-rs, ...) and a pytest plugin that loads in every session of the whole
suite; Hypothesis is already pinned, and the strategies below read the same OpenAPI document.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import time
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


# ---- the control API ------------------------------------------------------------------------------------

CONTROL_ROUTES = ["health", "messages", "faults", "stats", "config", "senders", "callbacks"]
METHODS = ["GET", "PUT", "POST", "DELETE", "PATCH"]
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


def fault_settings() -> st.SearchStrategy[Any]:
    """``PUT /_sandbox/faults`` bodies: known keys with values of every type, unknown keys, non-objects."""
    from sandbox.faults import FaultConfig

    names = list(FaultConfig.__dataclass_fields__)
    value = st.one_of(
        st.integers(min_value=-(10**30), max_value=10**30),
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from([None, True, "500", "drop", 0, 1, 0.5, 60_000, 60_001, 600_000, 10**20, 10**30]),
        JSON_VALUES,
    )
    known = st.dictionaries(st.sampled_from(names), value, max_size=4)
    return st.one_of(known, st.dictionaries(st.text(max_size=12), value, max_size=3), JSON_VALUES)


def raw_bodies() -> st.SearchStrategy[bytes]:
    deep = st.integers(1, 30_000).map(lambda n: b"[" * n + b"]" * n)
    return st.one_of(
        fault_settings().map(lambda v: json.dumps(v).encode()),
        st.binary(max_size=64),
        deep,
        st.sampled_from([b"", b"{", b"NaN", b'{"seed": ' + b"9" * 5000 + b"}", b"\xff\xfe{}"]),
    )


def check_control(response: httpx.Response) -> Any:
    assert response.status_code < 500, (response.request.method, response.request.url, response.text)
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    if response.status_code >= 400:
        assert isinstance(body["error"], str) and body["error"], body
    if response.status_code == 405:
        assert response.headers["allow"], response.headers
    return body


def test_control_api_never_fails_with_a_5xx_nor_poisons_later_calls(fuzz_api: Api) -> None:
    sb = fuzz_api.sb
    control = httpx.Client(base_url=sb.base_url, timeout=10, trust_env=False)
    fuzz_api.send(Body="something to list")

    @FUZZ
    @given(
        st.sampled_from(METHODS),
        st.one_of(st.sampled_from(CONTROL_ROUTES), TEXT.map(lambda t: quote(t, safe="/"))),
        raw_bodies(),
    )
    def call(method: str, route: str, body: bytes) -> None:
        response = control.request(method, f"/_sandbox/{route}", content=body)
        check_control(response)
        if response.status_code == 200 and method == "PUT":
            # Accepted settings apply: an API call may be slow, refused or answered with an injected 5xx,
            # but never crash (a crash is uvicorn's plain-text 500, never Twilio's JSON 20500 / 20503).
            try:
                answer = fuzz_api.client.get(f"{fuzz_api.base}.json", timeout=0.3)
            except (httpx.TimeoutException, httpx.RemoteProtocolError, httpx.ReadError):
                pass  # latency, or a dropped answer
            else:
                if answer.status_code >= 500:
                    assert answer.json()["code"] in (20500, 20503), answer.text
        # Faults are cleared before the next call, as a test would; nothing it set may linger as a 5xx.
        assert control.delete("/_sandbox/faults").status_code == 200
        assert control.get("/_sandbox/health").json() == {"status": "ok"}
        check(fuzz_api.list(PageSize="5"))

    try:
        call()
    finally:
        control.close()
    assert sb.faults()["latency_ms"] == 0


def test_any_method_and_path_never_fails_with_a_5xx(fuzz_api: Api) -> None:
    """Paths outside the two APIs, odd methods and odd account SIDs: 404 / 405 / 401, never a 5xx."""
    account = st.one_of(st.just(fuzz_api.sb.account_sid), st.from_regex(r"\AAC[0-9a-f]{32}\Z"), TEXT)

    @FUZZ
    @given(
        st.one_of(st.sampled_from([*METHODS, "HEAD", "OPTIONS", "TRACE"]), st.from_regex(r"\A[A-Z]{1,10}\Z")),
        account,
        st.one_of(st.sampled_from(["Messages.json", "Messages/.json", "Calls.json", ".json", ""]), TEXT),
    )
    def call(method: str, account_sid: str, tail: str) -> None:
        path = f"/2010-04-01/Accounts/{quote(account_sid, safe='')}/{quote(tail, safe='/.')}"
        response = fuzz_api.client.request(method, path)
        assert response.status_code < 500, (method, path, response.text)
        if response.status_code == 400 and "code" not in response.json():
            # A method llhttp does not know never reaches a route: the server's own JSON answer.
            assert response.json()["status"] == 400 and response.headers["connection"] == "close"
        elif method != "HEAD" and response.content:
            check(response)

    call()


# ---- callback URLs never leave loopback -----------------------------------------------------------------

# Hosts that are loopback, hosts that are not, and URLs whose host two parsers (urllib, httpx) may read apart.
CALLBACK_URLS = [
    "https://example.com/status",
    "http://example.com#@127.0.0.1/cb",
    "http://127.0.0.1@example.com/cb",
    "http://127.0.0.1:80@example.com/cb",
    "http://example.com\\@127.0.0.1/cb",
    "http://example.com%2f@127.0.0.1/cb",
    "http://127.0.0.1.nip.io/cb",
    "http://localhost.example.com/cb",
    "http://0x7f000001/cb",
    "http://2130706433/cb",
    "http://127.1/cb",
    "http://[::ffff:127.0.0.1]/cb",
    "http://[::1]:9/cb",
    "http://localhost:9/cb",
    "http://127.0.0.1:9/cb#rc=5&ct=100",
    "http://10.0.0.1/cb",
    "http://169.254.169.254/latest/meta-data",
]


def callback_urls(sandbox_url: str) -> st.SearchStrategy[str]:
    ip = st.ip_addresses().map(lambda a: f"[{a}]" if a.version == 6 else str(a))
    name = st.from_regex(r"\A[a-z0-9]([a-z0-9.-]{0,20}[a-z0-9])?\Z")
    userinfo = st.sampled_from(["", "user@", "127.0.0.1@", "localhost:1@"])
    fragment = st.sampled_from(["", "#rc=0", "#rc=5&rp=all&ct=100&rt=100&tt=300", "#rt=100", "#junk"])
    port = st.sampled_from(["", ":9", ":1"])
    built = st.builds(
        lambda scheme, user, host, port, frag: f"{scheme}://{user}{host}{port}/cb{frag}",
        st.sampled_from(["http", "https"]),
        userinfo,
        st.one_of(ip, name, st.sampled_from(["localhost", "127.0.0.1", "[::1]"])),
        port,
        fragment,
    )
    return st.one_of(st.sampled_from([*CALLBACK_URLS, f"{sandbox_url}/cb"]), built)


def is_loopback(host: str) -> bool:
    host = host.strip("[]").lower().rstrip(".")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def test_fuzzed_callback_urls_never_leave_loopback(fuzz_api: Api) -> None:
    sb = fuzz_api.sb

    @FUZZ
    @given(callback_urls(sb.base_url))
    def create(url: str) -> None:
        check(fuzz_api.create(To="+15551230000", Body="x", StatusCallback=url))

    create()
    deadline = time.monotonic() + 30
    while (snapshot := httpx.get(f"{sb.base_url}/_sandbox/callbacks", trust_env=False).json())["pending"]:
        assert time.monotonic() < deadline, snapshot["pending"]
        time.sleep(0.1)
    attempted = [d for d in snapshot["deliveries"] if d["attempts"] > 0]
    assert attempted, "no callback was attempted at all: the test would prove nothing"
    assert all(is_loopback(d["host"]) for d in attempted), {d["host"] for d in attempted}
    assert sb.stats()["callbacks"]["blocked"] > 0  # the non-loopback ones were refused, not merely failed

"""Inputs that once made the sandbox answer 500 or hang (issues 13 and 20), its limits, and HTTP hygiene."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from sandbox.testing import Sandbox, run_sandbox
from tests.sandbox.conftest import Api, assert_error, assert_page

READ_TIMEOUT = 0.5

TO = "+15551234567"


def test_an_unterminated_ipv6_media_url_is_21620(api: Api) -> None:
    assert_error(api.create(To=TO, MediaUrl="http://[::1"), 400, 21620)  # was: ValueError in _is_http_url


def test_a_bracketed_non_ip_status_callback_is_21609(api: Api) -> None:
    response = api.create(To=TO, Body="x", StatusCallback="http://[abc]/cb")
    assert_error(response, 400, 21609)
    assert_error(api.create(To=TO, Body="x", StatusCallback="http://127.0.0.1:99999/cb"), 400, 21609)


def test_a_date_sent_with_a_year_too_large_is_a_400(api: Api) -> None:
    response = api.list(DateSent="1 Jan 99999999999999999999 00:00 +0000")  # was: OverflowError in parse_date
    body = assert_error(response, 400, 20001)
    assert "DateSent" in body["message"]


def test_a_date_sent_before_year_one_in_utc_matches_nothing(api: Api) -> None:
    api.send()  # the crash needed a stored message to compare with (OverflowError in listing._matches)
    for name in ("DateSent", "DateSent<"):
        response = api.list(**{name: "0001-01-01T00:00:00+05:00"})
        assert response.status_code == 200, response.text
        assert assert_page(response.json())["messages"] == []
    after = api.list(**{"DateSent>": "0001-01-01T00:00:00+05:00"})
    assert len(assert_page(after.json())["messages"]) == 1
    late = api.list(**{"DateSent<": "9999-12-31T23:59:59-05:00"})  # past year 9999 in UTC
    assert len(assert_page(late.json())["messages"]) == 1


def test_non_ascii_basic_credentials_are_a_401_not_a_500(api: Api) -> None:
    client = httpx.Client(base_url=api.sb.base_url, auth=("ACé", "tökén"), trust_env=False)
    with client:
        assert_error(client.get(f"{api.base}.json"), 401, 20003)


def test_delete_answers_204_without_content_headers(api: Api) -> None:
    sid = api.send()["sid"]
    response = api.client.delete(f"{api.base}/{sid}.json")
    assert response.status_code == 204
    assert response.content == b""
    # RFC 9110 §8.6: a server must not send Content-Length in a 204.
    assert "content-length" not in response.headers and "content-type" not in response.headers
    assert "transfer-encoding" not in response.headers


def test_405_carries_allow(api: Api) -> None:
    listing = api.client.put(f"{api.base}.json")
    assert_error(listing, 405, 20004)
    assert listing.headers["allow"] == "POST, GET"
    sid = api.send()["sid"]
    instance = api.client.patch(f"{api.base}/{sid}.json")
    assert_error(instance, 405, 20004)
    assert instance.headers["allow"] == "GET, POST, DELETE"
    control = api.client.post("/_sandbox/stats")
    assert control.status_code == 405 and control.headers["allow"] == "GET"


# ---- issue 20: a hidden probe's findings ----------------------------------------------------------------


def test_a_page_past_the_end_is_empty_however_far(api: Api) -> None:
    api.send()
    for page in ("1", "1000000000000000000", "9" * 19):  # was: 500, islice's start above sys.maxsize
        body = assert_page(api.list(Page=page).json())
        assert body["messages"] == [] and body["next_page_uri"] is None and str(body["page"]) == page
    assert_error(api.list(Page="9" * 20), 400, 20001)  # int() must never meet its 4,300-digit limit


@pytest.mark.parametrize("value", [" 7 ", "7 ", "1_0", "\u0667", "\uff17", "+7", "7.0", "0x7", "-1"])
def test_numbers_are_ascii_digits_only(api: Api, value: str) -> None:
    body = assert_error(api.list(PageSize=value), 400, 20001)
    assert "PageSize" in body["message"]
    assert_error(api.list(Page=value), 400, 20001)
    assert_error(api.create(To=TO, Body="x", ValidityPeriod=value), 400, 21624)
    assert assert_page(api.list(PageSize="7").json())["page_size"] == 7


def control(sb: Sandbox, method: str, path: str, **kwargs: object) -> httpx.Response:
    return httpx.request(method, f"{sb.base_url}/_sandbox/{path}", trust_env=False, timeout=10, **kwargs)


@pytest.mark.parametrize(
    "body",
    [
        json.dumps({"latency_ms": 10**30}),  # was: 500, and every later API call a 500 too
        json.dumps({"latency_ms": 60_001}),
        json.dumps({"latency_ms": 1e400}),
        "[" * 30_000 + "]" * 30_000,  # was: 500 (RecursionError)
        '{"seed": ' + "9" * 5000 + "}",  # past int()'s digit limit
        '{"rate_429": NaN}',
        "\xff\xfe",
    ],
)
def test_bad_fault_settings_are_a_400_and_poison_nothing(api: Api, body: str) -> None:
    response = control(api.sb, "PUT", "faults", content=body.encode("utf-8", "surrogateescape"))
    assert response.status_code == 400, response.text
    assert response.json()["error"]
    assert api.sb.faults()["latency_ms"] == 0
    started = time.monotonic()
    assert api.list().status_code == 200
    assert time.monotonic() - started < 2


def test_the_latency_bound_is_accepted(api: Api) -> None:
    assert api.sb.set_faults(latency_ms=60_000)["latency_ms"] == 60_000
    api.sb.clear_faults()
    assert api.list().status_code == 200


def raw_request(sb: Sandbox, payload: bytes, wait: float = 10.0) -> bytes:
    """Send ``payload`` on a fresh connection and read until the server closes it (or ``wait`` passes)."""
    with socket.create_connection(("127.0.0.1", sb.port), timeout=wait) as conn:
        conn.sendall(payload)
        chunks = []
        while True:
            try:
                chunk = conn.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def messages_head(sb: Sandbox, method: str = "POST", extra: str = "") -> bytes:
    auth = httpx.BasicAuth(sb.account_sid, sb.auth_token)._auth_header  # type: ignore[attr-defined]
    return (
        f"{method} /2010-04-01/Accounts/{sb.account_sid}/Messages.json HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: {auth}\r\n{extra}"
    ).encode()


def test_a_body_over_the_limit_is_a_413_before_it_is_read(api: Api) -> None:
    """Content-Length of 1 GB and not a byte of body: the answer comes at once, and the connection closes."""
    started = time.monotonic()
    head = messages_head(api.sb, extra="Content-Type: application/x-www-form-urlencoded\r\n")
    answer = raw_request(api.sb, head + b"Content-Length: 1000000000\r\n\r\n")
    assert time.monotonic() - started < 2
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 413 Request Entity Too Large", answer[:200]
    assert b"connection: close" in rest.lower()
    body = json.loads(rest.partition(b"\r\n\r\n")[2])
    assert body["code"] == 20001 and body["status"] == 413 and "262144 bytes" in body["message"]
    assert api.sb.messages() == []


def test_a_chunked_body_over_the_limit_is_a_413(api: Api) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(40):
            yield b"Body=" + b"x" * 10_000 + b"&"

    response = api.client.post(
        f"{api.base}.json",
        content=chunks(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert_error(response, 413, 20001)
    control_answer = control(api.sb, "PUT", "faults", content=b" " * 70_000)
    assert control_answer.status_code == 413 and "65536" in control_answer.json()["error"]


def test_a_form_with_too_many_fields_is_a_400(api: Api) -> None:
    response = api.client.post(f"{api.base}.json", content=b"a&" * 5000, headers={"Content-Type": "x"})
    body = assert_error(response, 400, 20001)
    assert "1000 fields" in body["message"]


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("To", "whatsapp:" + "1" * 200_000, 21211),  # was: accepted, then as long a row on every list page
        ("To", "+1" + "5" * 20, 21211),
        ("From", "whatsapp:" + "1" * 100_000, 21212),
        ("StatusCallback", "http://127.0.0.1/" + "a" * 4000, 21609),  # errors/21609: 4,000 characters
        ("MediaUrl", "https://127.0.0.1/" + "a" * 4000, 21620),
    ],
)
def test_twilio_length_limits(api: Api, field: str, value: str, code: int) -> None:
    form = {"To": TO, "Body": "x", field: value}
    body = assert_error(api.create(**form), 400, code)
    assert len(body["message"]) < 400  # names the value, never echoes all of it
    assert api.sb.messages() == []


def test_a_5_mib_to_is_refused_before_it_is_read(api: Api) -> None:
    assert_error(api.create(To="whatsapp:" + "1" * (5 * 1024 * 1024), Body="x"), 413, 20001)
    assert api.sb.messages() == []


def test_the_longest_valid_values_pass(api: Api) -> None:
    api.send(to="whatsapp:+" + "1" * 14, StatusCallback="http://127.0.0.1/" + "a" * (4000 - 17))


@pytest.fixture(scope="module")
def impatient() -> Iterator[Sandbox]:
    with run_sandbox("--step-delay", "0", "--read-timeout", str(READ_TIMEOUT)) as sb:
        yield sb


@pytest.mark.parametrize(
    "payload",
    [
        b"",  # connected, and silent
        b"GET /_sandbox/health HTTP/1.1\r\nHost: x\r\nX-Slow: abc",  # a head that never ends
        b'PUT /_sandbox/faults HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"seed": 1',  # short body
    ],
    ids=["idle", "dribbled-head", "truncated-body"],
)
def test_a_request_that_never_arrives_whole_is_a_408(impatient: Sandbox, payload: bytes) -> None:
    started = time.monotonic()
    answer = raw_request(impatient, payload)
    elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), answer[:200]
    assert READ_TIMEOUT - 0.05 <= elapsed < READ_TIMEOUT + 2  # it waited, and then gave up
    assert b"connection: close" in answer
    assert impatient.faults()["seed"] is None  # the truncated PUT changed nothing
    assert impatient.health() == {"status": "ok"}


def test_a_truncated_create_is_never_stored(impatient: Sandbox) -> None:
    impatient.reset()
    form = b"To=%2B15551234567&From=%2B15005550006&Body=hello"
    head = messages_head(impatient, extra="Content-Type: application/x-www-form-urlencoded\r\n")
    answer = raw_request(impatient, head + f"Content-Length: {len(form)}\r\n\r\n".encode() + form[:-3])
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert impatient.messages() == []


def test_a_dribbled_head_is_cut_off_at_the_head_limit(impatient: Sandbox) -> None:
    with socket.create_connection(("127.0.0.1", impatient.port), timeout=5) as conn:
        conn.sendall(b"GET /_sandbox/health HTTP/1.1\r\nX-Big: ")
        try:
            for _ in range(100):
                conn.sendall(b"a" * 1000)
        except (BrokenPipeError, ConnectionResetError):
            pass  # closed after the answer below
        answer = conn.recv(200)
    assert answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large"), answer


def test_a_large_head_in_one_piece_is_a_431(api: Api) -> None:
    answer = raw_request(api.sb, b"GET /_sandbox/health?" + b"q" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
    ok = raw_request(
        api.sb, b"GET /_sandbox/health HTTP/1.1\r\nX: " + b"a" * 8000 + b"\r\nConnection: close\r\n\r\n"
    )
    assert ok.startswith(b"HTTP/1.1 200"), ok[:200]

"""Inputs that once made the sandbox answer 500 with a plain-text body (issue 13), and HTTP hygiene."""

from __future__ import annotations

import httpx

from tests.sandbox.conftest import Api, assert_error, assert_page

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

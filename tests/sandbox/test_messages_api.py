"""create / fetch / update / delete over HTTP, every body checked against Twilio's OpenAPI spec."""

from __future__ import annotations

import re

import pytest

from tests.sandbox.conftest import GOOD_FROM, assert_error, assert_message

SERVICE = "MG" + "ab" * 16


def test_create_answers_201_with_the_full_queued_resource(api):
    response = api.create(To="+15551230000", Body="hello", StatusCallback="http://127.0.0.1:9/cb")
    assert response.status_code == 201
    body = assert_message(response.json())
    assert re.fullmatch(r"SM[0-9a-f]{32}", body["sid"])
    assert body["status"] == "queued"
    assert body["account_sid"] == api.sb.account_sid
    assert (body["to"], body["from"], body["body"]) == ("+15551230000", GOOD_FROM, "hello")
    assert body["direction"] == "outbound-api"
    assert body["num_segments"] == "1" and body["num_media"] == "0"
    assert body["date_sent"] is None and body["price"] is None and body["error_code"] is None
    assert body["uri"] == f"/2010-04-01/Accounts/{api.sb.account_sid}/Messages/{body['sid']}.json"
    assert body["subresource_uris"]["media"] == body["uri"][: -len(".json")] + "/Media.json"


def test_fetch_returns_the_stored_message_and_unknown_sids_404(api):
    created = api.send()
    fetched = api.get(created["sid"])
    assert fetched["sid"] == created["sid"]
    assert fetched["date_created"] == created["date_created"]
    assert_error(api.fetch("SM" + "0" * 32), 404, 20404)
    assert_error(api.fetch("not-a-sid"), 404, 20404)


def test_media_makes_an_mms_with_an_mm_sid(api):
    response = api.client.post(
        f"{api.base}.json",
        data={
            "To": "+15551230000",
            "From": GOOD_FROM,
            "MediaUrl": ["https://example.com/a.png", "https://example.com/b.png"],
        },
    )
    body = assert_message(response.json())
    assert response.status_code == 201
    assert re.fullmatch(r"MM[0-9a-f]{32}", body["sid"])
    assert body["num_media"] == "2"


def test_messaging_service_starts_accepted_with_zero_segments(api):
    body = api.send(From=None, MessagingServiceSid=SERVICE)
    assert body["status"] == "accepted"
    assert body["messaging_service_sid"] == SERVICE
    assert body["num_segments"] == "0"
    fetched = api.get(body["sid"])  # step delay 0: terminal on the first fetch, a sender assigned
    assert fetched["status"] == "delivered"
    assert fetched["num_segments"] == "1" and fetched["from"] == GOOD_FROM


@pytest.mark.parametrize(
    ("form", "status", "code"),
    [
        ({"From": GOOD_FROM, "Body": "x"}, 400, 21604),
        ({"To": "+15551230000", "From": None, "Body": "x"}, 400, 21603),
        ({"To": "+15551230000"}, 400, 21602),
        ({"To": "+15551230000", "Body": "x" * 1601}, 400, 21617),
        ({"To": "not-a-number", "Body": "x"}, 400, 21211),
        ({"To": "+15551230000", "From": "bad sender!", "Body": "x"}, 400, 21212),
        ({"To": "+15551230000", "Body": "x", "MessagingServiceSid": "MG123"}, 400, 21701),
        ({"To": "+15551230000", "Body": "x", "StatusCallback": "http://bad_host/cb"}, 400, 21609),
        ({"To": "+15551230000", "MediaUrl": "ftp://example.com/a.png"}, 400, 21620),
    ],
    ids=[
        "no-to",
        "no-from",
        "no-body",
        "body-1601",
        "bad-to",
        "bad-from",
        "bad-service",
        "bad-callback",
        "bad-media",
    ],
)
def test_validation_errors_use_twilio_codes_and_store_nothing(api, form, status, code):
    assert_error(api.create(**form), status, code)
    assert api.sb.messages() == []


def test_more_than_ten_media_urls_are_refused(api):
    urls = [f"https://example.com/{i}.png" for i in range(11)]
    response = api.client.post(
        f"{api.base}.json", data={"To": "+15551230000", "From": GOOD_FROM, "MediaUrl": urls}
    )
    assert_error(response, 400, 21623)


def test_body_of_exactly_1600_chars_is_accepted(api):
    assert api.send(Body="a" * 1600)["num_segments"] == "11"


@pytest.mark.parametrize(
    ("params", "status", "code", "text"),
    [
        ({"To": "+15005550001"}, 400, 21211, "The 'To' number +15005550001 is not a valid phone number."),
        ({"To": "+15005550002"}, 400, 21612, "is not currently reachable using the 'From' phone number"),
        ({"To": "+15005550003"}, 400, 21408, "Permission to send an SMS has not been enabled"),
        ({"To": "+15005550004"}, 400, 21610, "The message From/To pair violates a blacklist rule."),
        ({"To": "+15005550009"}, 400, 21614, "To number: +15005550009, is not a mobile number"),
        ({"From": "+15005550001"}, 400, 21212, "The 'From' number +15005550001 is not a valid phone number"),
        ({"From": "+15005550007"}, 400, 21606, "is not a valid, SMS-capable inbound phone number"),
        ({"From": "+15005550008"}, 429, 21611, "SMS queue is full."),
    ],
)
def test_magic_numbers(api, params, status, code, text):
    form = {"To": "+15551230000", "From": GOOD_FROM, "Body": "x", **params}
    body = assert_error(api.create(**form), status, code)
    assert text in body["message"]
    assert api.sb.messages() == []


def test_magic_21612_names_mms_when_media_is_present(api):
    response = api.create(To="+15005550002", MediaUrl="https://example.com/a.png")
    assert "via MMS." in assert_error(response, 400, 21612)["message"]


def test_magic_from_passes(api):
    assert api.send(From="+15005550006")["status"] == "queued"


def test_redact_empties_the_body(api):
    sid = api.send(Body="secret code 1234")["sid"]
    response = api.update(sid, Body="")
    assert response.status_code == 200
    assert assert_message(response.json())["body"] == ""
    assert api.get(sid)["body"] == ""
    assert_error(api.update(sid, Body="new text"), 400, 20001)


def test_update_needs_a_known_sid_and_a_field(api):
    sid = api.send()["sid"]
    assert_error(api.update(sid), 400, 20001)
    assert_error(api.update(sid, Status="sent"), 400, 20001)
    assert_error(api.update("SM" + "1" * 32, Body=""), 404, 20404)


def test_delete_answers_204_then_the_message_is_gone(api):
    sid = api.send()["sid"]
    response = api.client.delete(f"{api.base}/{sid}.json")
    assert response.status_code == 204 and response.content == b""
    assert_error(api.fetch(sid), 404, 20404)
    assert api.sb.messages() == []


def test_other_resources_are_404_and_wrong_methods_405(api):
    assert_error(api.client.get(f"/2010-04-01/Accounts/{api.sb.account_sid}/Calls.json"), 404, 20404)
    assert_error(api.client.delete(f"{api.base}.json"), 405, 20004)


def test_control_api_lists_oldest_first_and_resets(clean_sandbox, api):
    first, second = api.send(to="+15551110001"), api.send(to="+15551110002")
    listed = clean_sandbox.messages()
    assert [m["sid"] for m in listed] == [first["sid"], second["sid"]]
    for message in listed:
        assert_message(message)
    assert clean_sandbox.stats()["requests"]["create"] == 2
    clean_sandbox.reset()
    assert clean_sandbox.messages() == []
    assert clean_sandbox.stats()["requests"]["create"] == 0
    assert clean_sandbox.health() == {"status": "ok"}

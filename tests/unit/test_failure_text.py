"""What the ``failed`` end task says: the whole reason on its first line, each fact once."""

from __future__ import annotations

import pytest

from twilio_messaging import workflow
from twilio_messaging.errors import ERROR_MEANINGS, TwilioAPIError

SID = "SM" + "2" * 32
SEND = {"messageSid": SID, "accountSid": "AC" + "0" * 32}
DOCS_21211 = "https://www.twilio.com/docs/errors/21211"


def nothing_sent(exc: Exception, code: int | None = None) -> dict:
    return workflow.decide_outcome({}, None, None, {"errorCode": code, "errorMessage": str(exc)})


def test_twilio_rejection_is_said_once_with_its_meaning_on_the_first_line():
    exc = TwilioAPIError(400, 21211, "The 'To' number +15005550001 is not a valid phone number.")
    text = workflow.failure_text(nothing_sent(exc, 21211))
    first, *rest = text.splitlines()
    assert first == (
        "No message was sent: Twilio error 21211 (Invalid 'To' phone number): "
        "The 'To' number +15005550001 is not a valid phone number."
    )
    assert rest == [f"Twilio docs: {DOCS_21211}"]
    # The repetition this replaces: "(error 21211: …). no message was created: Twilio error 21211: …"
    assert text.count("21211") == 2  # the code once, the docs link once
    assert text.count("is not a valid phone number") == 1
    assert "no message was created" not in text


def test_hint_of_the_api_error_stays_on_the_first_line():
    exc = TwilioAPIError(401, 20003, "Authenticate", hint="Check the password of connection 'x'.")
    first = workflow.failure_text(nothing_sent(exc, 20003)).splitlines()[0]
    assert first.startswith("No message was sent: Twilio error 20003 (Authentication failed")
    assert first.endswith("Authenticate Check the password of connection 'x'.")


def test_invalid_input_names_the_field_without_a_code():
    outcome = nothing_sent(ValueError("Invalid input 'to': must be E.164"))
    assert workflow.failure_text(outcome) == "No message was sent: Invalid input 'to': must be E.164"


def test_undelivered_has_sid_status_code_and_meaning_on_the_first_line():
    outcome = workflow.decide_outcome(SEND, {"status": "undelivered", "errorCode": 30003})
    first, docs = workflow.failure_text(outcome).splitlines()
    assert first == f"Message {SID} ended with status 'undelivered': error 30003, {ERROR_MEANINGS[30003]}"
    assert docs == "Twilio docs: https://www.twilio.com/docs/errors/30003"


def test_unknown_code_points_at_the_docs():
    outcome = workflow.decide_outcome(SEND, {"status": "failed", "errorCode": 39999})
    first, docs = workflow.failure_text(outcome).splitlines()
    assert first.endswith("error 39999, see Twilio's documentation")
    assert docs.endswith("/errors/39999")


@pytest.mark.parametrize(
    ("report", "expected"),
    [
        ({"status": "canceled"}, "ended with status 'canceled' (no error code)"),
        (
            {"status": "sent"},
            "ended with status 'sent (delivery unconfirmed)': Twilio handed the message to the carrier",
        ),
    ],
)
def test_without_code(report: dict, expected: str):
    text = workflow.failure_text(workflow.decide_outcome(SEND, report))
    assert "\n" not in text
    assert text.startswith(f"Message {SID} {expected}")


def test_create_may_have_happened_says_so_once():
    error = {"errorCode": None, "errorMessage": "Twilio API was unreachable", "maybeCreated": True}
    text = workflow.failure_text(workflow.decide_outcome({}, None, None, error))
    assert text == "Not known whether the message was sent (unknown (delivery unconfirmed)): " + (
        "Twilio API was unreachable"
    )

"""What the ``failed`` end task says: the reason on its first line, each fact once, in short lines."""

from __future__ import annotations

import pytest

from twilio_messaging.errors import ERROR_MEANINGS, TwilioAPIError
from twilio_messaging.operators.twilio import send_error
from twilio_messaging.workflow import outcome as decide

SID = "SM" + "2" * 32
SEND = {"messageSid": SID, "accountSid": "AC" + "0" * 32}
DOCS_21211 = "https://www.twilio.com/docs/errors/21211"


def nothing_sent(exc: Exception, code: int | None = None) -> dict:
    # What sendMessage publishes as sendError for this exception.
    error = send_error(exc)
    assert error["errorCode"] == code
    return decide.decide_outcome({}, None, None, error)


def test_twilio_rejection_is_said_once_with_its_meaning_on_the_first_line():
    exc = TwilioAPIError(400, 21211, "The 'To' number +15005550001 is not a valid phone number.")
    text = decide.failure_text(nothing_sent(exc, 21211))
    assert text.splitlines() == [
        "No message was sent: Twilio error 21211, Invalid 'To' phone number",
        "The 'To' number +15005550001 is not a valid phone number.",
        f"Twilio docs: {DOCS_21211}",
    ]
    # The repetition this replaces: "(error 21211: …). no message was created: Twilio error 21211: …"
    assert "no message was created" not in text


def test_hint_of_the_api_error_follows_the_first_line():
    exc = TwilioAPIError(401, 20003, "Authenticate", hint="Check the password of connection 'x'.")
    lines = decide.failure_text(nothing_sent(exc, 20003)).splitlines()
    assert lines[0] == "No message was sent: Twilio error 20003, Authentication failed: the"
    assert lines[1:] == [
        "Account SID / API key or its secret is wrong",
        "Authenticate Check the password of connection 'x'.",
        "Twilio docs: https://www.twilio.com/docs/errors/20003",
    ]


def test_invalid_input_names_the_field_without_a_code():
    outcome = nothing_sent(ValueError("Invalid input 'to': must be E.164"))
    assert decide.failure_text(outcome) == "No message was sent: Invalid input 'to': must be E.164"


def test_undelivered_has_status_code_and_meaning_on_the_first_line_then_sid_and_docs():
    outcome = decide.decide_outcome(SEND, {"status": "undelivered", "errorCode": 30003})
    assert decide.failure_text(outcome).splitlines() == [
        "Message undelivered: error 30003, Unreachable destination handset",
        "(often temporary: phone off or out of coverage)",
        f"Message SID: {SID}",
        "Twilio docs: https://www.twilio.com/docs/errors/30003",
    ]


@pytest.mark.parametrize("code", sorted(ERROR_MEANINGS))
def test_every_line_fits_the_log_view(code: int):
    for outcome in (
        decide.decide_outcome(SEND, {"status": "undelivered", "errorCode": code}),
        nothing_sent(TwilioAPIError(400, code, "Twilio's own words " * 8), code),
    ):
        lines = decide.failure_text(outcome).splitlines()
        assert all(len(line) <= decide.FAILURE_LINE_WIDTH for line in lines), lines
        assert f"error {code}, " in lines[0]
        meaning = " ".join(lines).replace("  ", " ")
        assert ERROR_MEANINGS[code] in meaning, lines


def test_unknown_code_points_at_the_docs():
    outcome = decide.decide_outcome(SEND, {"status": "failed", "errorCode": 39999})
    lines = decide.failure_text(outcome).splitlines()
    assert lines[0] == "Message failed: error 39999, see Twilio's documentation"
    assert lines[-1] == "Twilio docs: https://www.twilio.com/docs/errors/39999"


@pytest.mark.parametrize(
    ("report", "expected"),
    [
        ({"status": "canceled"}, ["Message canceled (no error code)"]),
        (
            {"status": "sent"},
            [
                "Message sent (delivery unconfirmed): Twilio handed the message to the",
                "carrier but received no delivery receipt before the status timeout",
            ],
        ),
    ],
)
def test_without_code(report: dict, expected: list[str]):
    text = decide.failure_text(decide.decide_outcome(SEND, report))
    assert text.splitlines() == [*expected, f"Message SID: {SID}"]


def test_create_may_have_happened_says_so_once():
    error = {"errorCode": None, "errorMessage": "Twilio API was unreachable", "maybeCreated": True}
    text = decide.failure_text(decide.decide_outcome({}, None, None, error))
    assert text.splitlines() == [
        "Not known whether the message was sent (unknown (delivery unconfirmed)):",
        "Twilio API was unreachable",
    ]

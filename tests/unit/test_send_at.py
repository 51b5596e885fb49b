"""The optional ``sendAt`` input: Twilio's scheduling rules checked before sending, and the create form."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from twilio_messaging.forms import create_form
from twilio_messaging.validation import InvalidInput, validate_inputs

SERVICE = "MG" + "a" * 32
BASE = {"to": "+15551234567", "messagingServiceSid": SERVICE, "body": "later"}


def ahead(**delta: float) -> str:
    return (datetime.now(UTC) + timedelta(**delta)).isoformat()


def test_send_at_becomes_schedule_type_fixed_and_a_utc_send_at() -> None:
    when = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0)
    local = when.astimezone(datetime.now().astimezone().tzinfo).isoformat()
    request = validate_inputs({**BASE, "sendAt": local})
    assert request.send_at == when.strftime("%Y-%m-%dT%H:%M:%SZ")
    form = create_form(request)
    assert form["ScheduleType"] == "fixed" and form["SendAt"] == request.send_at
    assert form["MessagingServiceSid"] == SERVICE


def test_without_send_at_nothing_is_scheduled() -> None:
    form = create_form(validate_inputs({**BASE, "sendAt": ""}))
    assert "ScheduleType" not in form and "SendAt" not in form


@pytest.mark.parametrize(
    ("value", "field"),
    [
        pytest.param("tomorrow", "sendAt", id="not-a-date"),
        pytest.param("2026-12-24T09:00:00", "sendAt", id="no-time-zone"),
        pytest.param(ahead(minutes=2), "sendAt", id="under-twilios-5-minutes"),
        pytest.param(ahead(days=36), "sendAt", id="over-35-days"),
        pytest.param(ahead(hours=-1), "sendAt", id="in-the-past"),
        pytest.param(12345, "sendAt", id="a-number"),
    ],
)  # fixed ids: the values depend on the clock, and every pytest-xdist worker must collect the same tests
def test_bad_send_at_is_refused_naming_the_field(value, field) -> None:
    with pytest.raises(InvalidInput) as info:
        validate_inputs({**BASE, "sendAt": value})
    assert info.value.field == field


def test_send_at_needs_a_messaging_service() -> None:
    with pytest.raises(InvalidInput, match="'sendAt/messagingServiceSid'"):
        validate_inputs({"to": "+15551234567", "from": "+15005550006", "body": "x", "sendAt": ahead(hours=1)})

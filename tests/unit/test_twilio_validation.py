"""Input rules: each field, the cross-field rules, and agreement between the Param schemas and the checks."""

from __future__ import annotations

import jsonschema
import pytest

from twilio_messaging.validation import (
    PARAM_SCHEMAS,
    InvalidInput,
    MessageRequest,
    unknown_inputs,
    validate_inputs,
)

BASE = {"to": "+15551234567", "from": "+15005550006", "body": "hello"}


def schema_accepts(name: str, value) -> bool:
    schema = {k: v for k, v in PARAM_SCHEMAS[name].items() if k not in ("title", "description")}
    try:
        jsonschema.validate(value, schema)
    except jsonschema.ValidationError:
        return False
    return True


@pytest.mark.parametrize(
    ("field", "value", "ok"),
    [
        ("to", "+15551234567", True),
        ("to", "whatsapp:+14155550100", True),
        ("to", "15551234567", False),
        ("to", "+0123", False),
        ("to", "+1555123456789012", False),
        ("from", "+15005550006", True),
        ("from", "12345", True),
        ("from", "MyBrand", True),
        ("from", "whatsapp:+14155550100", True),
        ("from", "123456789", False),
        ("from", "Brand name too long", False),
        ("from", "+1 555", False),
        ("body", "x" * 1600, True),
        ("body", "x" * 1601, False),
        ("statusCallback", "https://cb.example.com/status?x=1", True),
        ("statusCallback", "http://127.0.0.1:8100/cb", True),
        ("statusCallback", "https://bad_host.example.com/cb", False),
        ("statusCallback", "ftp://cb.example.com/", False),
        ("mediaUrl", ["https://e.example/a.png"] * 10, True),
        ("mediaUrl", ["https://e.example/a.png"] * 11, False),
        ("mediaUrl", ["file:///etc/passwd"], False),
        ("messagingServiceSid", "MG" + "a" * 32, True),
        ("messagingServiceSid", "MG123", False),
        ("accountSid", "AC" + "F" * 32, True),
        ("accountSid", "SK" + "f" * 32, False),
    ],
)
def test_field_rules_agree_with_the_param_schema(field, value, ok):
    inputs = {**BASE, field: value}
    if field == "messagingServiceSid":
        inputs.pop("from")
    if field == "accountSid":
        assert schema_accepts(field, value) is ok
        return
    if ok:
        assert isinstance(validate_inputs(inputs), MessageRequest)
    else:
        with pytest.raises(InvalidInput) as info:
            validate_inputs(inputs)
        assert info.value.field == field
        assert f"Invalid input for '{field}': " in str(info.value)
    assert schema_accepts(field, value) is ok


def test_optional_params_accept_null():
    for name in PARAM_SCHEMAS:
        if name != "to":
            assert schema_accepts(name, None), name
    assert not schema_accepts("to", None)


def test_cross_field_rules():
    with pytest.raises(InvalidInput, match=r"'from/messagingServiceSid': exactly one"):
        validate_inputs({"to": "+15551234567", "body": "x"})
    with pytest.raises(InvalidInput, match=r"'from/messagingServiceSid': exactly one"):
        validate_inputs({**BASE, "messagingServiceSid": "MG" + "a" * 32})
    with pytest.raises(InvalidInput, match=r"'body/mediaUrl': at least one"):
        validate_inputs({"to": "+15551234567", "from": "+15005550006"})
    with pytest.raises(InvalidInput, match=r"'to': is required"):
        validate_inputs({"from": "+15005550006", "body": "x"})
    mms = validate_inputs(
        {"to": "+15551234567", "from": "+15005550006", "mediaUrl": ["https://e.example/a.png"]}
    )
    assert mms.body is None and mms.media_urls == ("https://e.example/a.png",)


def test_empty_optional_fields_count_as_absent():
    request = validate_inputs({**BASE, "statusCallback": "", "mediaUrl": [], "messagingServiceSid": None})
    assert request == MessageRequest(to="+15551234567", from_="+15005550006", body="hello")


def test_unknown_inputs_are_reported():
    assert unknown_inputs({**BASE, "Body": "x", "media_url": []}) == ["Body", "media_url"]
    assert unknown_inputs(BASE) == []

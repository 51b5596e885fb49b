"""X-Twilio-Signature as twilio-python's RequestValidator computes and checks it."""

from __future__ import annotations

import pytest
from twilio.request_validator import RequestValidator

from tests.callbacks.conftest import TOKEN, callback_form, message_sid
from twilio_messaging.callbacks.signature import compute_signature, is_valid, url_variants

URLS = [
    "https://airflow.example.com/twilio-messages/status-callback",
    "https://airflow.example.com:443/twilio-messages/status-callback?run=a%20b&x=1",
    "http://127.0.0.1:8080/twilio-messages/status-callback",
]
FORMS = [
    callback_form(message_sid(1), "delivered"),
    callback_form(message_sid(2), "undelivered", ErrorCode="30003", Body="héllo + ünïcode & = ?"),
    {},
]


@pytest.mark.parametrize("url", URLS)
@pytest.mark.parametrize("form", FORMS)
def test_signature_matches_twilio(url, form):
    pairs = list(form.items())
    ours = compute_signature(url, pairs, TOKEN)
    assert ours == RequestValidator(TOKEN).compute_signature(url, form)
    assert RequestValidator(TOKEN).validate(url, form, ours)
    assert is_valid(url, pairs, ours, TOKEN)


class _MultiDict(dict):
    """A form with repeated names, as RequestValidator reads Flask's MultiDict."""

    def getall(self, name):
        return self[name] if isinstance(self[name], list) else [self[name]]


def test_repeated_parameter_values_sorted_like_twilio():
    pairs = [("MediaUrl", "https://b.example/2"), ("MediaUrl", "https://a.example/1"), ("To", "+1555")]
    expected = RequestValidator(TOKEN).compute_signature(
        URLS[0], _MultiDict({"MediaUrl": ["https://b.example/2", "https://a.example/1"], "To": "+1555"})
    )
    assert compute_signature(URLS[0], pairs, TOKEN) == expected


def test_default_port_either_way_like_twilio():
    form = callback_form(message_sid(3), "sent")
    signed_without = compute_signature("https://h.example/p", list(form.items()), TOKEN)
    assert is_valid("https://h.example:443/p", list(form.items()), signed_without, TOKEN)
    assert RequestValidator(TOKEN).validate("https://h.example:443/p", form, signed_without)
    assert url_variants("https://h.example:8443/p") == ("https://h.example:8443/p",)


@pytest.mark.parametrize(
    "change",
    [
        lambda url, form, token: (url + "x", form, token),
        lambda url, form, token: (url, {**form, "MessageStatus": "failed"}, token),
        lambda url, form, token: (url, form, token + "x"),
        lambda url, form, token: (url.replace("https", "http"), form, token),
    ],
    ids=["url", "param", "token", "scheme"],
)
def test_any_change_invalidates(change):
    form = callback_form(message_sid(4), "delivered")
    good = compute_signature(URLS[0], list(form.items()), TOKEN)
    url, changed, token = change(URLS[0], form, TOKEN)
    assert not is_valid(url, list(changed.items()), good, token)

"""Twilio-side validation of createMessage, in Twilio's order, and Twilio's magic test numbers."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

from sandbox.errors import TwilioError, invalid_parameter

E164 = re.compile(r"^\+[1-9]\d{1,14}$")
# Bounded, so that a 5 MiB "whatsapp:..." is an invalid To (21211) and not a 5 MB row on every list page.
CHANNEL_ADDRESS = re.compile(r"^(whatsapp|messenger|rcs|sms|mms):\S{1,64}$")
SHORT_CODE = re.compile(r"^\d{3,8}$")
ALPHANUMERIC_SENDER = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}$")
MESSAGING_SERVICE_SID = re.compile(r"^MG[0-9a-fA-F]{32}$")
CONTENT_SID = re.compile(r"^HX[0-9a-fA-F]{32}$")
HOSTNAME = re.compile(r"^[A-Za-z0-9.-]+$")  # Twilio rejects underscores in callback host names

MAX_BODY = 1600
# errors/21609: "Keep the URL at 4000 characters or fewer". Media URLs get the same bound (errors/21620
# names none; a longer one is no URL Twilio could fetch).
MAX_URL = 4000
MAX_MEDIA = 10
VALIDITY_PERIOD_RANGE = (1, 36000)  # seconds (errors/21624); the default is the maximum, 10 h
DEFAULT_VALIDITY_PERIOD = VALIDITY_PERIOD_RANGE[1]
# SendAt must be more than 5 minutes and at most 35 days after Twilio receives the request (errors/35114,
# errors/35115; sandbox/README.md "Scheduled messages").
SCHEDULE_WINDOW = (300, 35 * 24 * 3600)
SCHEDULE_TYPES = ("fixed",)

# Magic test numbers (twilio.com/docs/iam/test-credentials); README.md shows the same table.
MAGIC_FROM = "+15005550006"
MAGIC_FROM_ERRORS: dict[str, tuple[int, int, str]] = {
    "+15005550001": (
        400,
        21212,
        "The 'From' number {from_} is not a valid phone number, shortcode, or alphanumeric sender ID.",
    ),
    "+15005550007": (
        400,
        21606,
        "The From phone number {from_} is not a valid, SMS-capable inbound phone number or short code "
        "for your account.",
    ),
    "+15005550008": (429, 21611, "SMS queue is full."),
}
MAGIC_TO_ERRORS: dict[str, tuple[int, int, str]] = {
    "+15005550001": (400, 21211, "The 'To' number {to} is not a valid phone number."),
    "+15005550002": (
        400,
        21612,
        "The 'To' phone number: {to}, is not currently reachable using the 'From' phone number: "
        "{from_} via {channel}.",
    ),
    "+15005550003": (
        400,
        21408,
        "Permission to send an SMS has not been enabled for the region indicated by the 'To' number: {to}.",
    ),
    "+15005550004": (400, 21610, "The message From/To pair violates a blacklist rule."),
    "+15005550009": (400, 21614, "To number: {to}, is not a mobile number"),
}
MAGIC_PREFIX = "+1500555"


@dataclass(frozen=True)
class CreateRequest:
    """A createMessage request that passed validation."""

    to: str
    from_: str | None
    messaging_service_sid: str | None
    body: str
    media_urls: tuple[str, ...]
    content_sid: str | None
    status_callback: str | None
    validity_period: int = DEFAULT_VALIDITY_PERIOD
    send_at: float | None = None  # epoch seconds of SendAt when scheduled (ScheduleType=fixed)


def _first(form: dict[str, list[str]], name: str) -> str | None:
    values = form.get(name)
    return values[0] if values else None


def _is_http_url(value: str) -> bool:
    if len(value) > MAX_URL:
        return False
    try:
        parts = urlsplit(value)
        hostname = parts.hostname  # validates a bracketed IPv6 literal: may raise ValueError
        parts.port  # noqa: B018  (a port that is not a number in range raises ValueError)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(hostname) and bool(HOSTNAME.match(hostname or ""))


def _validity_period(raw: str | None) -> int:
    if raw is None or raw.strip() == "":
        return DEFAULT_VALIDITY_PERIOD
    low, high = VALIDITY_PERIOD_RANGE
    text = raw
    # ASCII digits only, nothing around them: int() would also take " 7 ", "1_0" and Arabic-Indic digits.
    if not re.fullmatch(r"[0-9]{1,6}", text) or not low <= int(text) <= high:
        raise TwilioError(
            400,
            21624,
            f"Invalid validity period value: {raw!r}; ValidityPeriod must be an integer "
            f"between {low} and {high} seconds",
        )
    return int(text)


def parse_send_at(raw: str) -> float | None:
    """Epoch seconds of an ISO 8601 date-time with an offset (``2026-12-02T10:00:00Z``), else None."""
    try:
        parsed = datetime.fromisoformat(raw.strip())
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None  # Twilio wants UTC; a naive time is ambiguous
    return (parsed - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds()


def _schedule(form: dict[str, list[str]], service: str | None, now: float) -> float | None:
    """SendAt as epoch seconds when the request schedules the message, else None (Twilio's codes)."""
    schedule_type = (_first(form, "ScheduleType") or "").strip() or None
    raw_send_at = (_first(form, "SendAt") or "").strip() or None
    if schedule_type is not None and schedule_type not in SCHEDULE_TYPES:
        raise TwilioError(
            400, 35126, f"The ScheduleType value {schedule_type!r} is not supported; it must be 'fixed'"
        )
    send_at = None
    if raw_send_at is not None:
        send_at = parse_send_at(raw_send_at)
        if send_at is None:
            raise TwilioError(
                400,
                35114,
                f"SendAt {raw_send_at!r} is not a date-time; use ISO 8601 in UTC: YYYY-MM-DDTHH:MM:SSZ",
            )
    if schedule_type is None:
        return None  # SendAt alone does not schedule anything (Twilio ignores it)
    if send_at is None:
        raise TwilioError(400, 35111, "SendAt timestamp is missing: ScheduleType 'fixed' needs SendAt")
    if service is None:
        raise TwilioError(400, 35118, "MessagingServiceSid is required to schedule a message")
    low, high = SCHEDULE_WINDOW
    ahead = send_at - now
    if not low < ahead <= high:
        raise TwilioError(
            400,
            35114,
            f"SendAt time must be between {low} seconds and 35 days ({high} seconds) in the future; "
            f"{raw_send_at} is {ahead:.0f} s from now",
        )
    return send_at


def _is_address(value: str) -> bool:
    return bool(E164.match(value) or CHANNEL_ADDRESS.match(value))


def _is_sender(value: str) -> bool:
    return bool(_is_address(value) or SHORT_CODE.match(value) or ALPHANUMERIC_SENDER.match(value))


def validate_create(form: dict[str, list[str]], now: float | None = None) -> CreateRequest:
    """Check a createMessage form as Twilio does; raise TwilioError with Twilio's code for the first issue.

    ``now``: the epoch time the request was received, against which SendAt's window is checked.
    """
    to = (_first(form, "To") or "").strip()
    from_ = (_first(form, "From") or "").strip() or None
    service = (_first(form, "MessagingServiceSid") or "").strip() or None
    body = _first(form, "Body") or ""
    media = tuple(v for v in form.get("MediaUrl", []) if v)
    content_sid = (_first(form, "ContentSid") or "").strip() or None
    callback = (_first(form, "StatusCallback") or "").strip() or None

    if not to:
        raise TwilioError(400, 21604, "A 'To' phone number is required.")
    if from_ is None and service is None:
        raise TwilioError(
            400, 21603, "A 'From' or 'MessagingServiceSid' parameter is required to send a message"
        )
    if not body and not media and content_sid is None:
        raise TwilioError(400, 21602, "Message body is required.")
    if len(body) > MAX_BODY:
        raise TwilioError(400, 21617, "The concatenated message body exceeds the 1600 character limit.")
    if len(media) > MAX_MEDIA:
        raise TwilioError(400, 21623, f"Number of media files exceeds allowed limit of {MAX_MEDIA}.")
    for url in media:
        if not _is_http_url(url):
            raise TwilioError(400, 21620, f"Invalid media URL(s): {url}")
    if service is not None and not MESSAGING_SERVICE_SID.match(service):
        raise TwilioError(400, 21701, f"The Messaging Service Sid {service} is invalid.")
    if content_sid is not None and not CONTENT_SID.match(content_sid):
        raise invalid_parameter(f"Invalid ContentSid: {content_sid}")
    if callback is not None and not _is_http_url(callback):
        raise TwilioError(400, 21609, f"The StatusCallback URL {callback} is not a valid URL.")
    validity_period = _validity_period(_first(form, "ValidityPeriod"))
    send_at = _schedule(form, service, time.time() if now is None else now)

    if from_ is not None:
        magic = MAGIC_FROM_ERRORS.get(from_)
        if magic is None and from_.startswith(MAGIC_PREFIX) and from_ != MAGIC_FROM:
            magic = MAGIC_FROM_ERRORS["+15005550007"]
        if magic is not None:
            status, code, text = magic
            raise TwilioError(status, code, text.format(from_=from_))
        if not _is_sender(from_):
            raise TwilioError(400, 21212, MAGIC_FROM_ERRORS["+15005550001"][2].format(from_=from_))
    magic = MAGIC_TO_ERRORS.get(to)
    if magic is not None:
        status, code, text = magic
        channel = "MMS" if media else "SMS"
        raise TwilioError(status, code, text.format(to=to, from_=from_ or service, channel=channel))
    if not _is_address(to):
        raise TwilioError(400, 21211, MAGIC_TO_ERRORS["+15005550001"][2].format(to=to))
    return CreateRequest(to, from_, service, body, media, content_sid, callback, validity_period, send_at)

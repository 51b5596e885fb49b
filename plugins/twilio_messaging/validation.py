"""Input rules for a message: the one place for patterns, limits and the Param JSON schemas."""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

E164 = r"\+[1-9][0-9]{1,14}"
# Twilio channels address a user as "<channel>:<address>", e.g. whatsapp:+14155550100.
CHANNEL_ADDRESS = r"(?:whatsapp|rcs|messenger|line|gbm|apple|wechat|kakao|viber|telegram):[^\s]{1,256}"
SHORT_CODE = r"[0-9]{3,8}"
# Alphanumeric sender IDs: 1-11 letters, digits, spaces or + - _ &, with at least one letter.
ALPHANUMERIC_SENDER = r"(?=[^A-Za-z]*[A-Za-z])[A-Za-z0-9 +\-_&]{1,11}"
HTTP_URL = r"https?://[A-Za-z0-9.\-]+(?::[0-9]{1,5})?(?:[/?#][^\s]*)?"

TO_PATTERN = rf"^(?:{E164}|{CHANNEL_ADDRESS})$"
FROM_PATTERN = rf"^(?:{E164}|{SHORT_CODE}|{ALPHANUMERIC_SENDER}|{CHANNEL_ADDRESS})$"
URL_PATTERN = rf"^{HTTP_URL}$"
ACCOUNT_SID_PATTERN = r"^AC[0-9a-fA-F]{32}$"
MESSAGING_SERVICE_SID_PATTERN = r"^MG[0-9a-fA-F]{32}$"
MESSAGE_SID_PATTERN = r"^(?:SM|MM)[0-9a-fA-F]{32}$"

BODY_MAX_CHARS = 1600
MEDIA_MAX_URLS = 10
URL_MAX_CHARS = 2048
# Twilio schedules a message more than 5 minutes and at most 35 days ahead (errors/35114, sandbox/README.md).
SEND_AT_WINDOW = (timedelta(minutes=5), timedelta(days=35))

ACCOUNT_SID_RE = re.compile(ACCOUNT_SID_PATTERN)
MESSAGE_SID_RE = re.compile(MESSAGE_SID_PATTERN)
_TO_RE = re.compile(TO_PATTERN)
_FROM_RE = re.compile(FROM_PATTERN)
_URL_RE = re.compile(URL_PATTERN)
_MG_RE = re.compile(MESSAGING_SERVICE_SID_PATTERN)

RULES: dict[str, str] = {
    "accountSid": "must match ^AC followed by 32 hex digits",
    "messageSid": "must match ^SM or ^MM followed by 32 hex digits",
    "to": "must be an E.164 number such as +14155550100, or a channel address such as whatsapp:+14155550100",
    "from": (
        "must be an E.164 number, a 3-8 digit short code, an alphanumeric sender ID of 1-11 characters "
        "with at least one letter, or a channel address such as whatsapp:+14155550100"
    ),
    "body": f"must be 1-{BODY_MAX_CHARS} characters",
    "mediaUrl": f"must be a list of at most {MEDIA_MAX_URLS} http(s) URLs",
    "statusCallback": "must be an http(s) URL whose host name has no underscore",
    "messagingServiceSid": "must match ^MG followed by 32 hex digits",
    "from/messagingServiceSid": "exactly one of 'from' and 'messagingServiceSid' is required",
    "body/mediaUrl": "at least one of 'body' and 'mediaUrl' is required",
    "sendAt": (
        "must be an ISO 8601 date-time with a time zone, e.g. 2026-12-24T09:00:00Z, more than 5 minutes "
        "and at most 35 days ahead"
    ),
    "sendAt/messagingServiceSid": "a scheduled message (sendAt) needs 'messagingServiceSid'",
}

# JSON Schema per workflow input, used for the DAG Params (the trigger form and trigger-time validation).
PARAM_SCHEMAS: dict[str, dict[str, Any]] = {
    "accountSid": {
        "type": ["null", "string"],
        "pattern": ACCOUNT_SID_PATTERN,
        "title": "Account SID",
        "description": (
            "The Twilio Account SID (AC...) that owns the message. Leave empty to use the login of the "
            "Airflow connection twilio_default."
        ),
    },
    "to": {
        "type": "string",
        "pattern": TO_PATTERN,
        "maxLength": 300,
        "title": "To",
        "description": (
            "Recipient in E.164 format (+14155550100) or a channel address (whatsapp:+14155550100)."
        ),
    },
    "from": {
        "type": ["null", "string"],
        "pattern": FROM_PATTERN,
        "maxLength": 300,
        "title": "From",
        "description": (
            "Your Twilio phone number (E.164), short code, alphanumeric sender ID or channel address. "
            "Give either this or Messaging Service SID."
        ),
    },
    "body": {
        "type": ["null", "string"],
        "minLength": 1,
        "maxLength": BODY_MAX_CHARS,
        "title": "Body",
        "description": (
            f"The text of the message, 1-{BODY_MAX_CHARS} characters. Required unless Media URLs are given."
        ),
    },
    "statusCallback": {
        "type": ["null", "string"],
        "pattern": URL_PATTERN,
        "maxLength": URL_MAX_CHARS,
        "title": "Status callback URL",
        "description": "Optional http(s) URL that Twilio calls on every status change.",
    },
    "mediaUrl": {
        "type": ["null", "array"],
        "items": {"type": "string", "pattern": URL_PATTERN, "maxLength": URL_MAX_CHARS},
        "maxItems": MEDIA_MAX_URLS,
        "title": "Media URLs (MMS)",
        "description": (
            f"Optional list of up to {MEDIA_MAX_URLS} public http(s) URLs of media to send as MMS."
        ),
    },
    "messagingServiceSid": {
        "type": ["null", "string"],
        "pattern": MESSAGING_SERVICE_SID_PATTERN,
        "title": "Messaging Service SID",
        "description": "Optional Messaging Service (MG...) that picks the sender; use it instead of From.",
    },
    "sendAt": {
        "type": ["null", "string"],
        "title": "Send at (scheduled)",
        "description": (
            "Optional: schedule the message for this time, ISO 8601 with a time zone "
            "(2026-12-24T09:00:00Z), more than 5 minutes and at most 35 days ahead. Needs Messaging Service "
            "SID (checked when the run starts). The status stays 'scheduled' until then; checkStatus keeps "
            "tracking it within TWILIO_STATUS_TIMEOUT, counted from the send."
        ),
    },
}
REQUIRED_PARAMS: tuple[str, ...] = ("to",)
WORKFLOW_INPUTS: frozenset[str] = frozenset(PARAM_SCHEMAS)


class InvalidInput(ValueError):
    """An input breaks a rule; raised before anything is sent."""

    def __init__(self, field: str, rule: str) -> None:
        self.field = field
        self.rule = rule
        super().__init__(f"Invalid input for '{field}': {rule}")


@dataclass(frozen=True)
class MessageRequest:
    """A validated createMessage request (field names as in the Twilio Python SDK)."""

    to: str
    from_: str | None = None
    body: str | None = None
    media_urls: tuple[str, ...] = ()
    status_callback: str | None = None
    messaging_service_sid: str | None = None
    send_at: str | None = None  # UTC, YYYY-MM-DDTHH:MM:SSZ; sent as ScheduleType=fixed + SendAt


def _blank(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == ()


def _encodable(field: str, value: str) -> None:
    """Reject text that cannot go on the wire: a lone surrogate (e.g. a JSON "\\ud800") is not UTF-8."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInput(
            field, f"must be valid Unicode text; it contains a lone surrogate (U+{ord(value[exc.start]):04X})"
        ) from None


def _check(field: str, value: Any, regex: re.Pattern[str]) -> None:
    if not isinstance(value, str) or not regex.fullmatch(value):
        raise InvalidInput(field, RULES[field])
    _encodable(field, value)


def validate_account_sid(value: Any, field: str = "accountSid") -> str:
    """Return the Account SID if it is well formed."""
    if not isinstance(value, str) or not ACCOUNT_SID_RE.fullmatch(value):
        raise InvalidInput(field, RULES["accountSid"])
    return value


def validate_message_sid(value: Any, field: str = "messageSid") -> str:
    """Return the message SID if it is well formed (it becomes part of a URL path)."""
    if not isinstance(value, str) or not MESSAGE_SID_RE.fullmatch(value):
        raise InvalidInput(field, RULES["messageSid"])
    return value


def validate_message(
    to: Any,
    from_: Any = None,
    body: Any = None,
    media_url: Any = None,
    status_callback: Any = None,
    messaging_service_sid: Any = None,
    send_at: Any = None,
) -> MessageRequest:
    """Check every field and the cross-field rules; empty optional values count as absent."""
    if _blank(to):
        raise InvalidInput("to", "is required; " + RULES["to"])
    _check("to", to, _TO_RE)
    from_ = None if _blank(from_) else from_
    messaging_service_sid = None if _blank(messaging_service_sid) else messaging_service_sid
    if (from_ is None) == (messaging_service_sid is None):
        raise InvalidInput("from/messagingServiceSid", RULES["from/messagingServiceSid"])
    if from_ is not None:
        _check("from", from_, _FROM_RE)
    if messaging_service_sid is not None:
        _check("messagingServiceSid", messaging_service_sid, _MG_RE)

    body = None if _blank(body) else body
    if body is not None and (not isinstance(body, str) or not 1 <= len(body) <= BODY_MAX_CHARS):
        raise InvalidInput("body", RULES["body"])
    if body is not None:
        _encodable("body", body)
    media = _media_urls(media_url)
    if body is None and not media:
        raise InvalidInput("body/mediaUrl", RULES["body/mediaUrl"])

    status_callback = None if _blank(status_callback) else status_callback
    if status_callback is not None:
        _check("statusCallback", status_callback, _URL_RE)
        if len(status_callback) > URL_MAX_CHARS:
            raise InvalidInput("statusCallback", RULES["statusCallback"])
    send_at = None if _blank(send_at) else _send_at(send_at, messaging_service_sid)
    return MessageRequest(
        to=to,
        from_=from_,
        body=body,
        media_urls=media,
        status_callback=status_callback,
        messaging_service_sid=messaging_service_sid,
        send_at=send_at,
    )


def _send_at(value: Any, messaging_service_sid: str | None, now: datetime | None = None) -> str:
    """SendAt in the UTC form Twilio documents, after Twilio's own checks (service, window)."""
    try:
        when = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise InvalidInput("sendAt", RULES["sendAt"])
    if messaging_service_sid is None:
        raise InvalidInput("sendAt/messagingServiceSid", RULES["sendAt/messagingServiceSid"])
    ahead = when - (now or datetime.now(UTC))
    if not SEND_AT_WINDOW[0] < ahead <= SEND_AT_WINDOW[1]:
        raise InvalidInput("sendAt", f"{RULES['sendAt']}; {value} is {ahead.total_seconds():.0f} s from now")
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _media_urls(value: Any) -> tuple[str, ...]:
    if _blank(value):
        return ()
    # A single URL is a common shorthand in conf; accept it as a one-item list.
    items: Iterable[Any] = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise InvalidInput("mediaUrl", RULES["mediaUrl"])
    urls = tuple(items)
    if len(urls) > MEDIA_MAX_URLS:
        raise InvalidInput("mediaUrl", RULES["mediaUrl"])
    for url in urls:
        if not isinstance(url, str) or len(url) > URL_MAX_CHARS or not _URL_RE.fullmatch(url):
            raise InvalidInput("mediaUrl", RULES["mediaUrl"])
        _encodable("mediaUrl", url)
    return urls


def unknown_inputs(conf: Mapping[str, Any], accepted: Collection[str] = WORKFLOW_INPUTS) -> list[str]:
    """Conf keys that are not accepted inputs (Airflow accepts them silently; they are usually typos)."""
    return sorted(key for key in conf if key not in accepted)


def validate_inputs(inputs: Mapping[str, Any]) -> MessageRequest:
    """Validate workflow inputs given with their Arazzo names (to, from, body, mediaUrl, ...)."""
    return validate_message(
        to=inputs.get("to"),
        from_=inputs.get("from"),
        body=inputs.get("body"),
        media_url=inputs.get("mediaUrl"),
        status_callback=inputs.get("statusCallback"),
        messaging_service_sid=inputs.get("messagingServiceSid"),
        send_at=inputs.get("sendAt"),
    )

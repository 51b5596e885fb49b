"""Pure request building and response parsing for the Twilio Messages API (no I/O)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from twilio_messaging.connection import DEFAULT_CONN_ID
from twilio_messaging.errors import TwilioAPIError, error_code
from twilio_messaging.validation import MessageRequest

API_VERSION = "2010-04-01"
LOOKUP_PAGE_SIZE = 100


def messages_path(account_sid: str) -> str:
    return f"/{API_VERSION}/Accounts/{account_sid}/Messages.json"


def message_path(account_sid: str, sid: str) -> str:
    return f"/{API_VERSION}/Accounts/{account_sid}/Messages/{sid}.json"


def create_form(request: MessageRequest) -> dict[str, str | list[str]]:
    """The createMessage form in Twilio's PascalCase; empty optional fields are left out."""
    form: dict[str, str | list[str]] = {"To": request.to}
    if request.from_:
        form["From"] = request.from_
    if request.messaging_service_sid:
        form["MessagingServiceSid"] = request.messaging_service_sid
    if request.body:
        form["Body"] = request.body
    if request.media_urls:
        form["MediaUrl"] = list(request.media_urls)
    if request.status_callback:
        form["StatusCallback"] = request.status_callback
    if request.send_at:
        form["ScheduleType"] = "fixed"
        form["SendAt"] = request.send_at
    return form


# Pythonic names accepted by list_messages(**filters); anything else is passed to Twilio as given.
LIST_FILTER_NAMES = {
    "to": "To",
    "from_": "From",
    "date_sent": "DateSent",
    "date_sent_before": "DateSent<",
    "date_sent_after": "DateSent>",
    "page_size": "PageSize",
}


def list_query(filters: dict[str, Any]) -> list[tuple[str, str]]:
    """Query parameters for listMessage; dates become YYYY-MM-DD, None values are dropped."""
    query: list[tuple[str, str]] = []
    for name, value in filters.items():
        if value is None:
            continue
        if isinstance(value, datetime):
            value = value.date().isoformat()
        elif hasattr(value, "isoformat"):
            value = value.isoformat()
        query.append((LIST_FILTER_NAMES.get(name, name), str(value)))
    return query


def lookup_query(request: MessageRequest, cutoff: datetime) -> list[tuple[str, str]]:
    """Query that finds messages this request may already have created.

    Twilio's ``DateSent>`` filter only has day granularity, so the exact cutoff is applied locally.
    """
    filters: dict[str, Any] = {"to": request.to, "date_sent_after": cutoff, "page_size": LOOKUP_PAGE_SIZE}
    if request.from_:
        filters["from_"] = request.from_
    return list_query(filters)


def parse_twilio_date(value: Any) -> datetime | None:
    """Parse Twilio's RFC 2822 dates; None when missing or malformed."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None


def matches_request(message: dict[str, Any], request: MessageRequest, cutoff: datetime) -> bool:
    """True if ``message`` is what ``request`` would have created at or after ``cutoff``."""
    created = parse_twilio_date(message.get("date_created"))
    if created is None or created < cutoff:
        return False
    if not str(message.get("direction") or "outbound-api").startswith("outbound"):
        return False
    if message.get("to") != request.to:
        return False
    if request.from_ and message.get("from") != request.from_:
        return False
    if (
        request.messaging_service_sid
        and message.get("messaging_service_sid") != request.messaging_service_sid
    ):
        return False
    body = message.get("body") or ""
    # Trial accounts prefix the body with "Sent from your Twilio trial account - ".
    if request.body and not (body == request.body or body.endswith(request.body)):
        return False
    if not request.body and body:
        return False
    try:
        num_media = int(message.get("num_media") or 0)
    except (TypeError, ValueError):
        num_media = 0
    return num_media == len(request.media_urls)


def find_match(
    messages: list[dict[str, Any]], request: MessageRequest, cutoff: datetime
) -> dict[str, Any] | None:
    """The earliest message matching ``request`` (the one the first lost attempt created)."""
    found = [m for m in messages if matches_request(m, request, cutoff)]
    if not found:
        return None
    return min(found, key=lambda m: parse_twilio_date(m.get("date_created")) or cutoff)


def page_is_older_than(page: list[dict[str, Any]], cutoff: datetime) -> bool:
    """Twilio lists newest first: once a page ends before the cutoff, later pages cannot match."""
    if not page:
        return True
    last = parse_twilio_date(page[-1].get("date_created"))
    return last is not None and last < cutoff


def lookup_cutoff(started: datetime, clock_skew: timedelta) -> datetime:
    return started - clock_skew


def _json_body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
        return None


def parse_json(response: httpx.Response) -> dict[str, Any]:
    """The JSON object of a 2xx reply; a non-object body is an API error."""
    body = _json_body(response)
    if not isinstance(body, dict):
        raise TwilioAPIError(response.status_code, None, "Twilio returned a body that is not a JSON object")
    return body


def error_from_response(response: httpx.Response, conn_id: str = DEFAULT_CONN_ID) -> TwilioAPIError:
    """Map an error reply (Twilio's ``{code, message, more_info, status}`` body) to ``TwilioAPIError``."""
    body = _json_body(response)
    body = body if isinstance(body, dict) else {}
    code = error_code(body.get("code"))
    message = str(body.get("message") or response.reason_phrase or "error").strip()
    detail = body.get("detail")
    if isinstance(detail, str) and detail and detail not in message:
        message = f"{message}: {detail}"
    hint = None
    if response.status_code == 401:
        hint = f"Check the login and password of the Airflow connection '{conn_id}'."
    elif code == 20404 or response.status_code == 404:
        hint = "Check the Account SID (accountSid or the connection login) and the message SID."
    more_info = body.get("more_info") if isinstance(body.get("more_info"), str) else None
    return TwilioAPIError(response.status_code, code, message, more_info, hint)


def short_reason(reply: httpx.Response | BaseException) -> str:
    """A one-line reason for logs and errors; never includes headers or credentials."""
    if isinstance(reply, httpx.Response):
        body = _json_body(reply)
        text = f"HTTP {reply.status_code} {reply.reason_phrase}".strip()
        if isinstance(body, dict) and body.get("code"):
            text += f" (Twilio error {body.get('code')}: {body.get('message')})"
        return text
    detail = str(reply).strip()
    text = f"{type(reply).__name__}: {detail}" if detail else type(reply).__name__
    return text[:200]

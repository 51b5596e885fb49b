"""Rendering of message resources and list pages exactly as Twilio shapes them (snake_case, RFC 2822)."""

from __future__ import annotations

import functools
import time
from email.utils import formatdate
from typing import Any
from urllib.parse import quote

from sandbox import API_VERSION
from sandbox.lifecycle import ERROR_MESSAGES
from sandbox.store import MessageRecord

PRICE_PER_SEGMENT = 0.0079
# Sender a Messaging Service picks when the request gave only MessagingServiceSid.
SERVICE_SENDER = "+15005550006"


def rfc2822(epoch: float) -> str:
    """``Thu, 24 Aug 2023 05:01:45 +0000``, the form twilio-python parses with email.utils.parsedate."""
    return _rfc2822_second(int(epoch))


@functools.lru_cache(maxsize=4096)  # most dates in a burst share a second; formatting is the costly part
def _rfc2822_second(second: int) -> str:
    return formatdate(second, usegmt=False).replace("-0000", "+0000")


def message_uri(account_sid: str, sid: str) -> str:
    return f"/{API_VERSION}/Accounts/{account_sid}/Messages/{sid}.json"


def render_message(
    record: MessageRecord, now_mono: float | None = None, *, initial: bool = False
) -> dict[str, Any]:
    """The ``api.v2010.account.message`` resource as of now, or as created (``initial``)."""
    if initial:
        # The create response always shows the initial status, even when the step delay is 0.
        (changed_at, status), sent_at = record.timeline[0], None
    else:
        elapsed = record.elapsed(now_mono if now_mono is not None else time.monotonic())
        status, changed_at = record.state_at(elapsed)
        sent_at = record.sent_offset(elapsed)
    error_code = record.outcome.error_code if status in ("failed", "undelivered") else None
    # Before a Messaging Service has picked a sender (accepted, scheduled), there is no From and no segments.
    accepted = status in ("accepted", "scheduled")
    segments = "0" if accepted else str(record.num_segments)
    from_ = record.from_ if record.from_ is not None or accepted else SERVICE_SENDER
    price = None
    if sent_at is not None and status != "failed":
        price = f"-{PRICE_PER_SEGMENT * record.num_segments:.5f}"
    base = message_uri(record.account_sid, record.sid)[: -len(".json")]
    return {
        "account_sid": record.account_sid,
        "api_version": API_VERSION,
        "body": record.body,
        "date_created": rfc2822(record.created_wall),
        "date_sent": rfc2822(record.created_wall + sent_at) if sent_at is not None else None,
        "date_updated": rfc2822(record.created_wall + max(changed_at, record.updated_at)),
        "direction": "outbound-api",
        "error_code": error_code,
        "error_message": ERROR_MESSAGES.get(error_code) if error_code else None,
        "from": from_,
        "messaging_service_sid": record.messaging_service_sid,
        "num_media": str(len(record.media_urls)),
        "num_segments": segments,
        "price": price,
        "price_unit": "USD",
        "sid": record.sid,
        "status": status,
        "subresource_uris": {"media": f"{base}/Media.json", "feedback": f"{base}/Feedback.json"},
        "to": record.to,
        "uri": f"{base}.json",
    }


def query_string(pairs: list[tuple[str, str]]) -> str:
    """Twilio's page URIs quote every key and value (``DateSent%3E=...``, ``To=%2B1...``)."""
    return "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pairs)

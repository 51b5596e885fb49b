"""Partly hide phone numbers and secrets in URLs, so a page can be shared as a screenshot."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

MASK = "•"
KEEP_HEAD = 3  # "+15": the country code stays readable
KEEP_TAIL = 4  # the last four digits tell the recipients apart
_NUMBER = re.compile(r"\+[0-9]{7,15}")
_SID = re.compile(r"\b(AC|MG)([0-9a-fA-F]{32})\b")


def mask_number(value: str | None) -> str:
    """``+15551233003`` -> ``+15•••••3003``; channel addresses keep their prefix (``whatsapp:+15•••…``)."""
    if not value:
        return ""
    prefix, sep, address = value.rpartition(":")
    if not sep:
        prefix, address = "", value
    else:
        prefix += sep
    if len(address) <= KEEP_HEAD + KEEP_TAIL:
        return prefix + MASK * len(address)
    hidden = len(address) - KEEP_HEAD - KEEP_TAIL
    return prefix + address[:KEEP_HEAD] + MASK * hidden + address[-KEEP_TAIL:]


def mask_text(text: str | None) -> str:
    """Every E.164 number inside free text (Twilio's error messages repeat the To) masked."""
    if not text:
        return ""
    return _NUMBER.sub(lambda m: mask_number(m.group(0)), text)


def mask_sid(value: str | None) -> str:
    """Account / Messaging Service SIDs: the type and the last four digits (``AC…cdef``)."""
    if not value:
        return ""
    match = _SID.fullmatch(value)
    return f"{match.group(1)}…{match.group(2)[-4:]}" if match else value


def safe_url(value: str | None) -> str:
    """A URL without user info or query (``https://user:pass@host/cb?t=x`` -> ``https://host/cb?…``)."""
    if not value:
        return ""
    try:
        parts = urlsplit(value)
    except ValueError:
        return ""
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", "")) + ("?…" if parts.query else "")

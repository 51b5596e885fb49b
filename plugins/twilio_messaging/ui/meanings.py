"""Error codes as people read them: the meaning from ``errors.describe`` and the Twilio docs link apart."""

from __future__ import annotations

from dataclasses import dataclass

from twilio_messaging.errors import ERROR_DOCS_URL, describe


@dataclass(frozen=True)
class ErrorInfo:
    code: int
    meaning: str
    docs_url: str


def error_info(code: int | str | None) -> ErrorInfo | None:
    """The code, its meaning and its docs page; None without a (numeric) code."""
    if code is None or code == "":
        return None
    try:
        number = int(code)
    except (TypeError, ValueError):
        return None
    url = ERROR_DOCS_URL.format(code=number)
    return ErrorInfo(number, describe(number).removesuffix(f" ({url})"), url)

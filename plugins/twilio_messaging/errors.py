"""Twilio error codes and the exceptions raised by the client: the one place for error meanings.

An error code is given as its parts (``error_info``: the code, its meaning, its docs page), never as one
string to be taken apart again; ``describe`` joins them for a log line or a report cell.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ERROR_DOCS_URL = "https://www.twilio.com/docs/errors/{code}"
# HTTP statuses that say "this account or connection cannot send", not "this message is wrong": bad
# credentials (401) or a refused account (403) on any request; on a create, also 404 (the Account SID's
# Messages resource does not exist). A 404 on fetching one message only concerns that message.
ACCOUNT_WIDE_STATUSES = frozenset({401, 403})
ACCOUNT_WIDE_ON_CREATE = ACCOUNT_WIDE_STATUSES | {404}

ERROR_MEANINGS: dict[int, str] = {
    20003: "Authentication failed: the Account SID / API key or its secret is wrong",
    20008: "Resource not accessible with test credentials",
    20404: "The requested resource was not found (wrong message SID or Account SID)",
    20429: "Too many concurrent requests to the Twilio REST API",
    21211: "Invalid 'To' phone number",
    21212: "Invalid 'From' number (not a phone number, short code or alphanumeric sender ID)",
    21408: "Permission to send an SMS has not been enabled for the region of the 'To' number",
    21602: "Message body is required",
    21603: "A 'From' or 'MessagingServiceSid' parameter is required",
    21604: "A 'To' phone number is required",
    21606: "The 'From' number is not a valid, message-capable Twilio number for this account",
    21608: "Trial accounts can only send to verified numbers",
    21610: "The recipient has opted out (replied STOP); never retry",
    21611: "The 'From' number's queue is full (more than 10 hours of backlog)",
    21612: "The 'To' number is not reachable from this 'From' number",
    21614: "The 'To' number is not a mobile number",
    21617: "The message body exceeds 1600 characters",
    21635: "The 'To' number is a landline",
    30001: "Queue overflow: the message waited longer than its validity period",
    30002: "Account suspended",
    30003: "Unreachable destination handset (often temporary: phone off or out of coverage)",
    30004: "Message blocked (by the recipient, the carrier or an opt-out)",
    30005: "Unknown destination handset (the number does not exist)",
    30006: "Landline or unreachable carrier",
    30007: "Message filtered by the carrier",
    30008: "Unknown error from the carrier",
}


def error_code(value: Any) -> int | None:
    """A Twilio error code as a number; None when absent or not numeric (reports store it as text)."""
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def docs_url(code: int) -> str:
    return ERROR_DOCS_URL.format(code=code)


def meaning(code: int) -> str:
    """What ``code`` means, in one line; Twilio's docs page for codes this table does not hold."""
    return ERROR_MEANINGS.get(code, "see Twilio's documentation")


@dataclass(frozen=True)
class ErrorInfo:
    """An error code as people read it: the code, its meaning and its docs page, apart."""

    code: int
    meaning: str
    docs_url: str


def error_info(code: Any) -> ErrorInfo | None:
    """The code, its meaning and its docs page; None without a (numeric) code."""
    number = error_code(code)
    if number is None:
        return None
    return ErrorInfo(number, meaning(number), docs_url(number))


def describe(code: int | str | None) -> str:
    """A one-line meaning for a Twilio error code, with its documentation link."""
    if code is None or code == "":
        return "no error code"
    info = error_info(code)
    if info is None:
        return f"unrecognised error code {code!r}"
    return f"{info.meaning} ({info.docs_url})"


class TwilioError(Exception):
    """Base class of everything the Twilio client raises."""


class TwilioConfigError(TwilioError):
    """The Airflow connection or the inputs cannot be used to reach Twilio (nothing was sent)."""


class TwilioAPIError(TwilioError):
    """Twilio answered with an error; final, retrying the same request gives the same answer."""

    def __init__(
        self,
        status_code: int,
        code: int | None,
        message: str,
        more_info: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.status_code = status_code
        self.code = code
        self.message = message
        self.more_info = more_info or (docs_url(code) if code else None)
        self.hint = hint
        super().__init__(str(self))

    @property
    def detail(self) -> str:
        """Twilio's own words and the hint, without the code and the docs link (given apart)."""
        return f"{self.message} {self.hint}" if self.hint else self.message

    def __str__(self) -> str:
        head = f"Twilio error {self.code}" if self.code else f"Twilio API HTTP {self.status_code}"
        text = f"{head}: {self.message}"
        if self.more_info:
            text += f" ({self.more_info})"
        if self.hint:
            text += f" {self.hint}"
        return text


class TwilioUnreachableError(TwilioError):
    """Twilio could not be reached (or kept refusing) within the retry budget.

    ``maybe_created``: a create may have reached Twilio before the connection failed (timeout, 5xx, dropped
    connection), so whether the message exists is unknown; a retry looks for it before sending again.
    """

    def __init__(self, message: str, *, maybe_created: bool = False) -> None:
        self.maybe_created = maybe_created
        super().__init__(message)

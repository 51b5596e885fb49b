"""Twilio-shaped API errors: ``{code, message, more_info, status}`` (the legacy 2010 format)."""

from __future__ import annotations

import re
from typing import Any

LONG_RUN = re.compile(r"\S{121,}")


def clip(text: str) -> str:
    """``text`` with every run of over 120 non-space characters cut short: an error names the value it
    refuses, but never echoes a 5 MiB one back."""
    return LONG_RUN.sub(lambda m: f"{m.group()[:80]}...({len(m.group())} characters)", text)


class TwilioError(Exception):
    """An error the sandbox answers with, in the body shape twilio-python parses into TwilioRestException."""

    def __init__(
        self, status: int, code: int, message: str, detail: str | None = None, *, allow: str | None = None
    ) -> None:
        message = clip(message)
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.detail = detail
        self.allow = allow  # the Allow header of a 405

    def body(self) -> dict[str, Any]:
        # Never add "type"/"title": twilio-python would then raise TwilioServiceException instead.
        body: dict[str, Any] = {
            "code": self.code,
            "message": self.message,
            "more_info": f"https://www.twilio.com/docs/errors/{self.code}",
            "status": self.status,
        }
        if self.detail is not None:
            body["detail"] = self.detail
        return body


def authenticate_error() -> TwilioError:
    return TwilioError(401, 20003, "Authenticate", detail="Your AccountSid or AuthToken was incorrect.")


def not_found(path: str) -> TwilioError:
    return TwilioError(404, 20404, f"The requested resource {path} was not found")


def too_many_requests() -> TwilioError:
    return TwilioError(429, 20429, "Too Many Requests")


def server_error(status: int) -> TwilioError:
    if status == 503:
        return TwilioError(503, 20503, "Service Unavailable")
    return TwilioError(500, 20500, "Internal Server Error")


def invalid_parameter(message: str) -> TwilioError:
    return TwilioError(400, 20001, message)

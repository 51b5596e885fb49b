"""Which errors fail a batch task at once: those a task retry cannot fix."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from twilio_messaging.errors import ACCOUNT_WIDE_ON_CREATE, TwilioAPIError, TwilioConfigError
from twilio_messaging.validation import InvalidInput


def is_final_error(exc: BaseException) -> bool:
    """Errors a task retry cannot fix: bad input or connection, credentials or account refused."""
    if isinstance(exc, InvalidInput | TwilioConfigError):
        return True
    return isinstance(exc, TwilioAPIError) and exc.status_code in ACCOUNT_WIDE_ON_CREATE


@contextmanager
def final_errors() -> Iterator[None]:
    """Fail at once, without retries, on errors a retry cannot fix (bad input, credentials, account)."""
    from airflow.sdk.exceptions import AirflowFailException

    try:
        yield
    except Exception as exc:
        if is_final_error(exc):
            raise AirflowFailException(str(exc)) from None
        raise

"""Send SMS/MMS through Twilio and track them to their final status: reusable code for the DAGs."""

# The package's version, in its one home (plugins/pyproject.toml and the provider info read it from here).
__version__ = "0.1.0"

# First, so that an Airflow too old for the imports below fails with the reason, not an ImportError.
from twilio_messaging import version_compat  # noqa: F401
from twilio_messaging.client import DEFAULT_TIMEOUT, AsyncTwilioClient, TwilioClient
from twilio_messaging.connection import DEFAULT_CONN_ID, TwilioConnection
from twilio_messaging.errors import (
    ERROR_MEANINGS,
    TwilioAPIError,
    TwilioConfigError,
    TwilioError,
    TwilioUnreachableError,
    describe,
)
from twilio_messaging.retry import RetryPolicy
from twilio_messaging.statuses import (
    DELIVERED_STATUSES,
    FAILED_STATUSES,
    TERMINAL_STATUSES,
    end_state,
    is_terminal,
    unconfirmed,
)
from twilio_messaging.validation import InvalidInput, MessageRequest, validate_inputs, validate_message

__all__ = [
    "DEFAULT_CONN_ID",
    "DEFAULT_TIMEOUT",
    "DELIVERED_STATUSES",
    "ERROR_MEANINGS",
    "FAILED_STATUSES",
    "TERMINAL_STATUSES",
    "AsyncTwilioClient",
    "InvalidInput",
    "MessageRequest",
    "RetryPolicy",
    "TwilioAPIError",
    "TwilioClient",
    "TwilioConfigError",
    "TwilioConnection",
    "TwilioError",
    "TwilioUnreachableError",
    "describe",
    "end_state",
    "is_terminal",
    "unconfirmed",
    "validate_inputs",
    "validate_message",
]

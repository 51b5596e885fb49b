"""Send SMS/MMS through Twilio and track each message to its final status: an Airflow provider, and the
application this project builds on it.

Two layers; the lower never imports the upper (``lint-imports`` checks it, and ``make test`` runs it):

**The provider** (what a team installs into its own Airflow and uses in its own DAGs):

- ``hooks.twilio.TwilioHook``: the Airflow connection; the one rule from a connection to base URL and auth;
- ``operators.twilio.TwilioSendMessageOperator``, ``sensors.twilio.TwilioMessageStatusSensor``,
  ``notifications.twilio.TwilioNotifier``: the building blocks, configured by their arguments only;
- ``client`` (httpx clients) running ``flows`` (request sequences, retries, duplicate lookups) over
  ``forms`` (requests and replies), ``retry`` (the one rule for transient replies), ``connection``;
- ``validation`` (input rules), ``statuses``, ``errors`` (codes, meanings, exceptions), ``outputs`` (what
  the operator and sensor publish), ``timeline``, ``storage``, ``settings`` (every environment variable
  and its default; the building blocks read none, the DAG files read them and pass them down),
  ``get_provider_info``.

**The application** (this project's DAGs and Messages tab, the provider's first user):

- ``contract``: the names the DAGs and the tab share (DAG, task and XCom names, outcomes, report columns);
- ``workflow``: the send-and-track DAG's inputs, outcome and task callables;
- ``batch``: the batch notification DAG's engine and tasks;
- ``ui``: the Messages tab, and ``plugin``, the Airflow plugin that mounts it (the ``airflow.plugins``
  entry point).

Importing the building blocks (or this package) imports nothing of the application.
"""

# The package's version, in its one home (plugins/pyproject.toml and the provider info read it from here).
__version__ = "0.1.0"

# First, so that an Airflow too old for the imports below fails with the reason, not an ImportError.
from twilio_messaging import version_compat  # noqa: F401
from twilio_messaging.client import DEFAULT_TIMEOUT, AsyncTwilioClient, TwilioClient
from twilio_messaging.connection import TwilioConnection
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

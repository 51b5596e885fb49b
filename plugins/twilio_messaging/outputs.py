"""What the provider's operator and sensor publish (their XComs), as types: the names other tasks read.

``TwilioSendMessageOperator`` returns ``SendOutputs`` (each key also its own XCom) and, when nothing or
possibly something was sent, pushes ``SendError`` as the XCom ``sendError``. ``TwilioMessageStatusSensor``
returns ``StatusReport``; its per-poke timeline is ``twilio_messaging.timeline``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypedDict

SEND_ERROR_XCOM = "sendError"
# The status sensor's timeline: the XCom it pushes the whole list under when it finishes, and its default
# file name in the run's storage folder (``timeline``), where each poke appends to it.
TIMELINE_XCOM = "statusTimeline"
TIMELINE_FILE = "status-timeline.json"


class SendOutputs(TypedDict):
    """What the operator returns: the message's SID and first status, the account, and when it was sent."""

    messageSid: str | None
    initialStatus: str | None
    accountSid: str
    sentAt: str  # ISO-8601 UTC; a status sensor's deadline counts from it


SEND_OUTPUTS: tuple[str, ...] = tuple(SendOutputs.__annotations__)


class SendError(TypedDict, total=False):
    """The ``sendError`` XCom: why nothing (or possibly something) was sent, its parts apart.

    ``errorMessage`` is Twilio's own words (and a hint) for an API error, without the code and the docs
    link, which ``twilio_messaging.errors.error_info(errorCode)`` gives.
    """

    errorCode: int | None
    errorMessage: str
    maybeCreated: bool


class StatusReport(TypedDict):
    """What the status sensor returns (its ``return_value`` XCom), from one message resource."""

    status: str | None
    errorCode: int | None
    errorMessage: str | None


def status_report(message: Mapping[str, Any]) -> StatusReport:
    """The status report of one message resource (Twilio's snake_case fields)."""
    return {
        "status": message.get("status"),
        "errorCode": message.get("error_code"),
        "errorMessage": message.get("error_message"),
    }

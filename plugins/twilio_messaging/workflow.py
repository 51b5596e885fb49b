"""The send-and-track workflow as plain functions: what each DAG task decides, without Airflow.

The DAG (dags/twilio_send_message_track_status.py) only wires these to operators (twilio_messaging.dag_tasks).
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypedDict

from twilio_messaging import envvars
from twilio_messaging.client import TwilioClient
from twilio_messaging.connection import TwilioConnection
from twilio_messaging.errors import ERROR_DOCS_URL, ERROR_MEANINGS
from twilio_messaging.statuses import UNCONFIRMED_REASON, EndState, end_state, is_terminal, unconfirmed
from twilio_messaging.validation import (
    PARAM_SCHEMAS,
    REQUIRED_PARAMS,
    WORKFLOW_INPUTS,
    InvalidInput,
    MessageRequest,
    unknown_inputs,
    validate_inputs,
    validate_message,
)

# Production defaults of the status polling, overridable at parse time (tests, demos).
POKE_INTERVAL_ENV = "TWILIO_POKE_INTERVAL"
STATUS_TIMEOUT_ENV = "TWILIO_STATUS_TIMEOUT"
MAX_WAIT_ENV = "TWILIO_MAX_WAIT"
DEFAULT_POKE_INTERVAL = 60.0  # most messages are final within a minute; a poke is one GET
DEFAULT_STATUS_TIMEOUT = 24 * 3600.0  # carriers may retry for hours; after a day "sent" is not going to move
DEFAULT_MAX_WAIT = 15 * 60.0  # backoff cap: a late receipt is noticed within 15 minutes
SENSOR_RETRIES = 3  # survives apache/airflow#71172 (a reschedule sensor failed by a scheduler race)


@dataclass(frozen=True)
class TrackingSettings:
    """How ``checkStatus`` polls: intervals and the total time, in seconds."""

    poke_interval: float = DEFAULT_POKE_INTERVAL
    timeout: float = DEFAULT_STATUS_TIMEOUT
    max_wait: float = DEFAULT_MAX_WAIT
    exponential_backoff: bool = True
    retries: int = SENSOR_RETRIES

    @property
    def retry_delay(self) -> timedelta:
        # A retry after the scheduler race should resume polling at the normal pace, not later.
        return timedelta(seconds=min(self.poke_interval, 60.0))


def tracking_settings(environ: Mapping[str, str] | None = None) -> TrackingSettings:
    """Settings from TWILIO_POKE_INTERVAL / TWILIO_STATUS_TIMEOUT / TWILIO_MAX_WAIT, else the defaults."""
    env = os.environ if environ is None else environ
    poke = envvars.seconds(POKE_INTERVAL_ENV, DEFAULT_POKE_INTERVAL, env)
    return TrackingSettings(
        poke_interval=poke,
        timeout=envvars.seconds(STATUS_TIMEOUT_ENV, DEFAULT_STATUS_TIMEOUT, env),
        max_wait=max(poke, envvars.seconds(MAX_WAIT_ENV, DEFAULT_MAX_WAIT, env)),
    )


# ---- the trigger form ------------------------------------------------------------------------------

DEFAULT_FROM_ENV = "TWILIO_DEFAULT_FROM"
# JSON Schema applies to one field at a time, so Airflow's trigger-time validation cannot see these rules.
NOT_CHECKED_AT_TRIGGER = (
    "Airflow cannot check this rule when the run is triggered; sendMessage refuses a run that breaks it "
    "before anything is sent."
)


def default_from(environ: Mapping[str, str] | None = None) -> str | None:
    """The deployment's sender ($TWILIO_DEFAULT_FROM), checked now so a typo fails the DAG's parse."""
    env = os.environ if environ is None else environ
    value = env.get(DEFAULT_FROM_ENV, "").strip()
    if not value:
        return None
    try:
        return validate_message("+15005550006", value, "x").from_  # the rules of a real send's From
    except InvalidInput as exc:
        raise ValueError(f"{DEFAULT_FROM_ENV}={value!r}: {exc.rule}") from None


def trigger_params(environ: Mapping[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """Keyword arguments of the DAG's ``Param``s: the input schemas, ``from``'s deployment default, and the
    cross-field rules said in the descriptions where Airflow cannot check them."""
    sender = default_from(environ)
    specs: dict[str, dict[str, Any]] = {}
    for name, schema in PARAM_SCHEMAS.items():
        spec = dict(schema)
        if name not in REQUIRED_PARAMS:
            spec["default"] = None
        specs[name] = spec
    specs["from"]["default"] = sender
    specs["from"]["description"] = (
        "Your Twilio phone number (E.164), short code, alphanumeric sender ID or channel address"
        + (f"; the deployment's default ({DEFAULT_FROM_ENV}) is filled in" if sender else "")
        + ". Give either this or Messaging Service SID, not both"
        + (" (a Messaging Service SID replaces the default)" if sender else "")
        + ". "
        + NOT_CHECKED_AT_TRIGGER
    )
    specs["messagingServiceSid"]["description"] += " " + NOT_CHECKED_AT_TRIGGER
    specs["body"]["description"] += " " + NOT_CHECKED_AT_TRIGGER
    return specs


def yield_default_sender(inputs: Mapping[str, Any], default_sender: str | None) -> Mapping[str, Any]:
    """A Messaging Service given with the form's default ``from`` replaces it (exactly one may be sent).

    The default comes from $TWILIO_DEFAULT_FROM, not from the Param: Airflow stores each run's value in the
    Param objects (``Param.resolve``), so by the time a task runs they no longer hold the default.
    """
    sender = inputs.get("from")
    if default_sender and sender == default_sender and inputs.get("messagingServiceSid"):
        return {**inputs, "from": None}
    return inputs


# ---- sendMessage -------------------------------------------------------------------------------------


def resolve_account_sid(inputs: Mapping[str, Any], connection: TwilioConnection) -> str:
    """``accountSid`` from the inputs, else the connection's Account SID login."""
    sid = inputs.get("accountSid") or connection.account_sid
    if not sid:
        raise InvalidInput(
            "accountSid",
            f"is required when the login of the Airflow connection '{connection.conn_id}' "
            "is not an Account SID (AC...), e.g. when it is an API key (SK...)",
        )
    return sid


def prepare_send(
    inputs: Mapping[str, Any],
    connection: TwilioConnection,
    conf: Mapping[str, Any] | None = None,
    accepted: Collection[str] = WORKFLOW_INPUTS,
    default_sender: str | None = None,
) -> tuple[str, MessageRequest]:
    """Validate everything before any request: unknown conf keys, each field, the cross-field rules.

    Airflow accepts conf keys that are not params silently; they are usually typos (``Body``), so a conf key
    not in ``accepted`` (the workflow's inputs, or a DAG's params) is refused.
    """
    unknown = unknown_inputs(conf or {}, accepted)
    if unknown:
        raise InvalidInput(
            ", ".join(unknown), "unknown input; accepted inputs are " + ", ".join(sorted(accepted))
        )
    inputs = yield_default_sender(inputs, default_sender)
    request = validate_inputs(inputs)
    return resolve_account_sid(inputs, connection), request


class SendOutputs(TypedDict):
    """What sendMessage publishes: the Arazzo step outputs, the account, and when it was sent."""

    messageSid: str | None
    initialStatus: str | None
    accountSid: str
    sentAt: str  # ISO-8601 UTC; the status deadline counts from it


def send_message(
    inputs: Mapping[str, Any],
    connection: TwilioConnection,
    *,
    conf: Mapping[str, Any] | None = None,
    accepted: Collection[str] = WORKFLOW_INPUTS,
    default_sender: str | None = None,
    sent_since: datetime | None = None,
    client_factory: Callable[..., TwilioClient] = TwilioClient,
) -> SendOutputs:
    """Create the message; returns the step outputs ``messageSid``, ``initialStatus`` plus ``accountSid``."""
    account_sid, request = prepare_send(inputs, connection, conf, accepted, default_sender)
    with client_factory(connection, account_sid=account_sid) as client:
        message = client.create_message(request, sent_since=sent_since)
    return {
        "messageSid": message.get("sid"),
        "initialStatus": message.get("status"),
        "accountSid": account_sid,
        "sentAt": datetime.now(UTC).isoformat(),
    }


# ---- checkStatus ------------------------------------------------------------------------------------


class StatusReport(TypedDict):
    """checkStatus' outputs (its return_value XCom), from one message resource."""

    status: str | None
    errorCode: int | None
    errorMessage: str | None


class SendError(TypedDict, total=False):
    """sendMessage's ``sendError`` XCom: why nothing (or possibly something) was sent."""

    errorCode: int | None
    errorMessage: str
    maybeCreated: bool


class Outcome(TypedDict):
    """routeByStatus' ``outcome`` XCom: the end task, the workflow outputs and the reason."""

    end: EndState
    messageSid: str | None
    finalStatus: str | None
    errorCode: int | None
    errorMessage: str | None
    reason: str | None


def status_report(message: Mapping[str, Any]) -> StatusReport:
    """The checkStatus outputs of one message resource."""
    return {
        "status": message.get("status"),
        "errorCode": message.get("error_code"),
        "errorMessage": message.get("error_message"),
    }


def poke(message: Mapping[str, Any]) -> tuple[bool, StatusReport]:
    """Whether polling is over, and the status report to publish."""
    report = status_report(message)
    return is_terminal(report["status"]), report


def past_deadline(sent_at: str | None, timeout: float, now: datetime | None = None) -> bool:
    """True once ``timeout`` seconds have passed since the message was sent (a fixed point across retries)."""
    if not sent_at:
        return False
    try:
        started = datetime.fromisoformat(sent_at)
    except ValueError:
        return False
    return ((now or datetime.now(UTC)) - started).total_seconds() > timeout


# ---- branch and end tasks ------------------------------------------------------------------------


def decide_outcome(
    send: Mapping[str, Any] | None,
    report: Mapping[str, Any] | None,
    fetch: Callable[[str, str], Mapping[str, Any]] | None = None,
    send_error: Mapping[str, Any] | None = None,
) -> Outcome:
    """The end state and workflow outputs, from sendMessage's and checkStatus' outputs.

    Without a terminal status from checkStatus (it timed out or failed), the message is fetched once more
    with ``fetch(account_sid, message_sid)`` so the outputs say where it got stuck.
    """
    send = send or {}
    sid = send.get("messageSid")
    if not sid:
        error = send_error or {}
        detail = error.get("errorMessage") or "sendMessage did not succeed"
        if error.get("maybeCreated"):
            # Twilio went silent after a create may have reached it: do not claim that nothing was sent.
            return {
                "end": "failed",
                "messageSid": None,
                "finalStatus": unconfirmed(None),
                "errorCode": None,
                "errorMessage": detail,
                "reason": f"whether the message was created is unknown: {detail}",
            }
        return {
            "end": "failed",
            "messageSid": None,
            "finalStatus": None,
            "errorCode": error.get("errorCode"),
            "errorMessage": error.get("errorMessage"),
            "reason": "no message was created: " + detail,
        }
    reason = None
    if not report or not is_terminal(report.get("status")):
        last: Mapping[str, Any] = dict(report or {})
        if fetch is not None:
            try:
                last = status_report(fetch(send["accountSid"], sid))
            except Exception as exc:  # reporting must go on; the failure is the reason
                reason = f"the last status check failed: {exc}"
        report = last
    status = report.get("status")
    end = end_state(status)
    if end is None:
        return {
            "end": "failed",
            "messageSid": sid,
            "finalStatus": unconfirmed(status),
            "errorCode": report.get("errorCode"),
            "errorMessage": report.get("errorMessage"),
            "reason": reason
            or (UNCONFIRMED_REASON if status == "sent" else "no final status before the timeout"),
        }
    return {
        "end": end,
        "messageSid": sid,
        "finalStatus": status,
        "errorCode": report.get("errorCode"),
        "errorMessage": report.get("errorMessage"),
        "reason": None,
    }


WORKFLOW_OUTPUTS = ("messageSid", "finalStatus", "errorCode")


def workflow_outputs(outcome: Mapping[str, Any]) -> dict[str, Any]:
    """What the end tasks publish: the Arazzo outputs plus the error code."""
    return {key: outcome.get(key) for key in WORKFLOW_OUTPUTS}


# The task log view starts the exception line about 600 px in at 1440 px: ~74 characters stay visible.
FAILURE_LINE_WIDTH = 72


def failure_text(outcome: Mapping[str, Any]) -> str:
    """The error the ``failed`` end task raises: the reason first, each fact once, in short lines.

    The first line says what happened with the error code and its meaning; Twilio's own words, the SID
    and the docs link follow on lines of their own. No line is wider than ``FAILURE_LINE_WIDTH`` (URLs
    aside), so the log view shows all of it without horizontal scrolling.
    """
    sid = outcome.get("messageSid")
    code = outcome.get("errorCode")
    status = outcome.get("finalStatus")
    reason = outcome.get("reason")
    detail = outcome.get("errorMessage") or ""
    number = int(code) if isinstance(code, int) or (isinstance(code, str) and code.isdigit()) else None
    docs = ERROR_DOCS_URL.format(code=number) if number is not None else None
    meaning = ERROR_MEANINGS.get(number, "see Twilio's documentation") if number is not None else None
    note = ""
    if meaning and " (" in meaning:
        # "Unreachable destination handset (often temporary: …)": the note may go on the next line.
        meaning, note = meaning.split(" (", 1)
        note = "(" + note
    if docs:
        # Twilio's own message already ends with the docs link; it gets its own line below.
        detail = detail.replace(f" ({docs})", "").removeprefix(f"Twilio error {number}: ").strip()
    more: list[str] = []
    if not sid and status:
        head = f"Not known whether the message was sent ({status}): {detail or reason or 'no detail'}"
    elif not sid:
        if number is not None:
            head = f"No message was sent: Twilio error {number}, {meaning}"
            more.append(detail)
        else:
            head = f"No message was sent: {detail or reason or 'sendMessage did not succeed'}"
    else:
        head = f"Message {status}"
        if number is not None:
            head += f": error {number}, {meaning}"
        if reason:
            head += f"; {reason}" if number is not None else f": {reason}"
        if number is None and not reason:
            head += " (no error code)"
        more.append(f"Message SID: {sid}")
    if note:
        if len(head) + 1 + len(note) <= FAILURE_LINE_WIDTH:
            head = head.replace(f", {meaning}", f", {meaning} {note}", 1)
        else:
            more.insert(0, note)
    if docs:
        more.append(f"Twilio docs: {docs}")
    return "\n".join(
        line
        for text in (head, *more)
        for line in textwrap.wrap(text, FAILURE_LINE_WIDTH, break_long_words=False, break_on_hyphens=False)
    )

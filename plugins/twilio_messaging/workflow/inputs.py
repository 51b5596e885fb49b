"""The workflow's inputs: the trigger form (Params) and sendMessage taking the message from it.

The Arazzo inputs are named as Twilio names them (``to``, ``from``, ``mediaUrl``, ``messagingServiceSid``,
...); the provider's operator takes plain keyword arguments. ``SendMessageFromParams`` is the operator the DAG
runs: it reads the run's params under their workflow names, as data (never rendered as templates), and
refuses conf keys that are not params (usually typos such as ``Body``) before anything is sent.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any

from twilio_messaging.operators.twilio import TwilioSendMessageOperator
from twilio_messaging.settings import DEFAULT_FROM_ENV
from twilio_messaging.validation import (
    PARAM_SCHEMAS,
    REQUIRED_PARAMS,
    WORKFLOW_INPUTS,
    InvalidInput,
    MessageRequest,
    unknown_inputs,
    validate_inputs,
)

if TYPE_CHECKING:
    from airflow.sdk import Context

# Operator argument -> workflow input (the Arazzo / trigger-form name, as in the DAG's params).
INPUT_NAMES: dict[str, str] = {
    "to": "to",
    "from_": "from",
    "messaging_service_sid": "messagingServiceSid",
    "body": "body",
    "media_url": "mediaUrl",
    "status_callback": "statusCallback",
    "account_sid": "accountSid",
    "send_at": "sendAt",
}

# JSON Schema applies to one field at a time, so Airflow's trigger-time validation cannot see these rules.
NOT_CHECKED_AT_TRIGGER = (
    "Airflow cannot check this rule when the run is triggered; sendMessage refuses a run that breaks it "
    "before anything is sent."
)


def trigger_params(default_sender: str | None) -> dict[str, dict[str, Any]]:
    """Keyword arguments of the DAG's ``Param``s: the input schemas, ``from``'s deployment default
    (``settings.default_from()``), and the cross-field rules said in the descriptions where Airflow cannot
    check them."""
    specs: dict[str, dict[str, Any]] = {}
    for name, schema in PARAM_SCHEMAS.items():
        spec = dict(schema)
        if name not in REQUIRED_PARAMS:
            spec["default"] = None
        specs[name] = spec
    specs["from"]["default"] = default_sender
    specs["from"]["description"] = (
        "Your Twilio phone number (E.164), short code, alphanumeric sender ID or channel address"
        + (f"; the deployment's default ({DEFAULT_FROM_ENV}) is filled in" if default_sender else "")
        + ". Give either this or Messaging Service SID, not both"
        + (" (a Messaging Service SID replaces the default)" if default_sender else "")
        + ". "
        + NOT_CHECKED_AT_TRIGGER
    )
    specs["messagingServiceSid"]["description"] += " " + NOT_CHECKED_AT_TRIGGER
    specs["body"]["description"] += " " + NOT_CHECKED_AT_TRIGGER
    return specs


def yield_default_sender(inputs: Mapping[str, Any], default_sender: str | None) -> Mapping[str, Any]:
    """A Messaging Service given with the form's default ``from`` replaces it (exactly one may be sent).

    The default is the DAG's (from $TWILIO_DEFAULT_FROM), not the Param's: Airflow stores each run's value
    in the Param objects (``Param.resolve``), so by the time a task runs they no longer hold the default.
    """
    sender = inputs.get("from")
    if default_sender and sender == default_sender and inputs.get("messagingServiceSid"):
        return {**inputs, "from": None}
    return inputs


def check_inputs(
    inputs: Mapping[str, Any],
    conf: Mapping[str, Any] | None = None,
    accepted: Collection[str] = WORKFLOW_INPUTS,
    default_sender: str | None = None,
) -> tuple[MessageRequest, str | None]:
    """Validate everything before any request: unknown conf keys, each field, the cross-field rules.

    Airflow accepts conf keys that are not params silently; they are usually typos (``Body``), so a conf key
    not in ``accepted`` (the workflow's inputs, or a DAG's params) is refused. Returns the request and the
    ``accountSid`` input.
    """
    unknown = unknown_inputs(conf or {}, accepted)
    if unknown:
        raise InvalidInput(
            ", ".join(unknown), "unknown input; accepted inputs are " + ", ".join(sorted(accepted))
        )
    inputs = yield_default_sender(inputs, default_sender)
    return validate_inputs(inputs), inputs.get("accountSid") or None


class SendMessageFromParams(TwilioSendMessageOperator):
    """sendMessage of the workflow DAG: every argument left as None comes from the run's params.

    The params are read under their workflow names (to, from, body, mediaUrl, statusCallback, accountSid,
    messagingServiceSid, sendAt) and used as data: they are never rendered as templates. Conf keys that are
    not params are refused; a ``from`` equal to ``default_sender`` (the form's default) yields to a given
    messagingServiceSid.

    :param default_sender: the trigger form's default ``from`` (the DAG reads $TWILIO_DEFAULT_FROM).
    :param default_status_callback: the ``statusCallback`` when the run gives none: the status-callback
        receiver when callbacks are on (the DAG reads $TWILIO_CALLBACK_BASE_URL).
    """

    def __init__(
        self, *, default_sender: str | None = None, default_status_callback: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.default_sender = default_sender
        self.default_status_callback = default_status_callback

    def message_inputs(self, context: Context) -> dict[str, Any]:
        """The message's fields under their workflow names: the arguments, else the params."""
        params = context.get("params") or {}
        inputs: dict[str, Any] = {}
        for attribute, name in INPUT_NAMES.items():
            value = getattr(self, attribute)
            inputs[name] = params.get(name) if value is None else value
        if not inputs.get("statusCallback") and self.default_status_callback:
            inputs["statusCallback"] = self.default_status_callback
        return inputs

    def _declared_params(self, context: Context) -> set[str]:
        # context["params"] also holds conf keys that are not params (Airflow merges the whole conf in),
        # so the accepted names come from what the DAG and the task declare.
        return set(self.params) if self.has_dag() else set(context.get("params") or {})

    def message_request(self, context: Context) -> tuple[MessageRequest, str | None]:
        return check_inputs(
            self.message_inputs(context),
            conf=context["dag_run"].conf or {},
            accepted=self._declared_params(context),
            default_sender=self.default_sender,
        )

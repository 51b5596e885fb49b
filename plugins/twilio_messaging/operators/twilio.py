"""``TwilioSendMessageOperator``: send one SMS/MMS through Twilio, never twice."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator, XComArg
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from twilio_messaging import workflow
from twilio_messaging.connection import DEFAULT_CONN_ID
from twilio_messaging.errors import TwilioAPIError, TwilioConfigError, TwilioUnreachableError
from twilio_messaging.hooks.twilio import TwilioHook
from twilio_messaging.validation import InvalidInput

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


class TwilioSendMessageOperator(BaseOperator):
    """Create a Twilio message (createMessage) once, and return its SID.

    Returns ``{"messageSid", "initialStatus", "accountSid", "sentAt"}``, each also pushed as its own XCom
    (``multiple_outputs``), so a ``TwilioMessageStatusSensor`` can take ``send.output["messageSid"]``.

    Duplicate-safe: Twilio has no idempotency key, so after a timeout, a 5xx or a dropped connection the
    message is looked up before any resend, and a retried try looks for what an earlier try created (since
    the run started) before sending. Bad input, bad credentials and Twilio 4xx fail at once without retries;
    an unreachable Twilio fails the try (Airflow's ``retries`` apply). Either way the error is pushed as the
    XCom ``sendError`` ({errorCode, errorMessage, maybeCreated}); it never holds the auth token.

    :param to: recipient, E.164 or a channel address (templated).
    :param from_: sender number, short code, alphanumeric ID or channel address (templated).
    :param messaging_service_sid: a Messaging Service (MG...) instead of ``from_`` (templated).
    :param body: the text, 1-1600 characters (templated).
    :param media_url: up to 10 media URLs for an MMS (templated).
    :param status_callback: URL Twilio calls on each status change (templated).
    :param account_sid: the account to send from; default: the connection's Account SID login (templated).
    :param send_at: schedule the message for this UTC time (ISO-8601), with a Messaging Service (templated).
    :param twilio_conn_id: the Twilio connection (templated).
    :param inputs_from_params: take every argument left as None from the run's params under its workflow
        name (to, from, body, mediaUrl, statusCallback, accountSid, messagingServiceSid, sendAt), and
        refuse conf keys that are not params (typos); a ``from`` equal to $TWILIO_DEFAULT_FROM (the form's
        default) yields to a given messagingServiceSid. The values are used as data: they are never
        rendered as templates.
    """

    template_fields: Sequence[str] = (*INPUT_NAMES, "twilio_conn_id")
    ui_color = "#f22f46"  # Twilio red

    def __init__(
        self,
        *,
        to: str | XComArg | None = None,
        from_: str | XComArg | None = None,
        messaging_service_sid: str | XComArg | None = None,
        body: str | XComArg | None = None,
        media_url: str | Sequence[str] | XComArg | None = None,
        status_callback: str | XComArg | None = None,
        account_sid: str | XComArg | None = None,
        send_at: str | XComArg | None = None,
        twilio_conn_id: str = DEFAULT_CONN_ID,
        inputs_from_params: bool = False,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("multiple_outputs", True)
        super().__init__(**kwargs)
        self.to = to
        self.from_ = from_
        self.messaging_service_sid = messaging_service_sid
        self.body = body
        self.media_url = media_url
        self.status_callback = status_callback
        self.account_sid = account_sid
        self.send_at = send_at
        self.twilio_conn_id = twilio_conn_id
        self.inputs_from_params = inputs_from_params

    def message_inputs(self, context: Context) -> dict[str, Any]:
        """The message's fields under their workflow names: the arguments, else (if asked) the params."""
        params = (context.get("params") or {}) if self.inputs_from_params else {}
        inputs: dict[str, Any] = {}
        for attribute, name in INPUT_NAMES.items():
            value = getattr(self, attribute)
            inputs[name] = params.get(name) if value is None else value
        return inputs

    def _declared_params(self, context: Context) -> set[str]:
        # context["params"] also holds conf keys that are not params (Airflow merges the whole conf in),
        # so the accepted names come from what the DAG and the task declare.
        return set(self.params) if self.has_dag() else set(context.get("params") or {})

    def execute(self, context: Context) -> workflow.SendOutputs:
        ti = context["ti"]
        dag_run = context["dag_run"]
        # A retried try may follow one whose message was created but whose result was lost: look first.
        sent_since = dag_run.start_date if ti.try_number > 1 else None
        conf = (dag_run.conf or {}) if self.inputs_from_params else None
        try:
            connection = TwilioHook(self.twilio_conn_id).connection_settings()
            outputs = workflow.send_message(
                self.message_inputs(context),
                connection,
                conf=conf,
                accepted=self._declared_params(context),
                # The trigger form's default `from` yields to a Messaging Service the user gave.
                default_sender=workflow.default_from() if self.inputs_from_params else None,
                sent_since=sent_since,
            )
        except (InvalidInput, TwilioConfigError, TwilioAPIError) as exc:
            # Published so a later task can say why nothing was sent; the text never holds the token.
            code = exc.code if isinstance(exc, TwilioAPIError) else None
            ti.xcom_push(key="sendError", value={"errorCode": code, "errorMessage": str(exc)})
            raise AirflowFailException(str(exc)) from None
        except TwilioUnreachableError as exc:
            # Published too, so that if this was the last try a later task says Twilio was unreachable.
            ti.xcom_push(
                key="sendError",
                value={"errorCode": None, "errorMessage": str(exc), "maybeCreated": exc.maybe_created},
            )
            raise AirflowException(str(exc)) from None  # retried by Airflow; the next try looks first
        self.log.info("Created message %s (status %s)", outputs["messageSid"], outputs["initialStatus"])
        return outputs

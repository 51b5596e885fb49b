"""``TwilioSendMessageOperator``: send one SMS/MMS through Twilio, never twice."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator, XComArg
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from twilio_messaging.connection import TwilioConnection
from twilio_messaging.errors import TwilioAPIError, TwilioConfigError, TwilioUnreachableError
from twilio_messaging.hooks.twilio import TwilioHook
from twilio_messaging.outputs import SEND_ERROR_XCOM, SendError, SendOutputs
from twilio_messaging.validation import InvalidInput, MessageRequest, validate_message

if TYPE_CHECKING:
    from airflow.sdk import Context


def resolve_account_sid(account_sid: str | None, connection: TwilioConnection) -> str:
    """``account_sid`` if given, else the connection's Account SID login."""
    sid = account_sid or connection.account_sid
    if not sid:
        raise InvalidInput(
            "accountSid",
            f"is required when the login of the Airflow connection '{connection.conn_id}' "
            "is not an Account SID (AC...), e.g. when it is an API key (SK...)",
        )
    return sid


def send_error(exc: Exception) -> SendError:
    """The ``sendError`` XCom of a failed send: the code and Twilio's own words apart; never the token."""
    if isinstance(exc, TwilioAPIError) and exc.code is not None:
        return {"errorCode": exc.code, "errorMessage": exc.detail}
    if isinstance(exc, TwilioUnreachableError):
        return {"errorCode": None, "errorMessage": str(exc), "maybeCreated": exc.maybe_created}
    return {"errorCode": None, "errorMessage": str(exc)}


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
    """

    template_fields: Sequence[str] = (
        "to",
        "from_",
        "messaging_service_sid",
        "body",
        "media_url",
        "status_callback",
        "account_sid",
        "send_at",
        "twilio_conn_id",
    )
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
        twilio_conn_id: str = TwilioHook.default_conn_name,
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

    def message_request(self, context: Context) -> tuple[MessageRequest, str | None]:
        """The message to send and the account to send it from, validated: from the (rendered) arguments.

        A subclass may take them from elsewhere (the run's params); raising ``InvalidInput`` refuses the
        send before any request.
        """
        request = validate_message(
            to=self.to,
            from_=self.from_,
            body=self.body,
            media_url=self.media_url,
            status_callback=self.status_callback,
            messaging_service_sid=self.messaging_service_sid,
            send_at=self.send_at,
        )
        return request, self.account_sid  # type: ignore[return-value]  # rendered: a str or None

    def execute(self, context: Context) -> SendOutputs:
        ti = context["ti"]
        # A retried try may follow one whose message was created but whose result was lost: look first.
        sent_since = context["dag_run"].start_date if ti.try_number > 1 else None
        try:
            hook = TwilioHook(self.twilio_conn_id)
            request, account_sid = self.message_request(context)
            account_sid = resolve_account_sid(account_sid, hook.connection_settings())
            with hook.get_client(account_sid=account_sid) as client:
                message = client.create_message(request, sent_since=sent_since)
        except (InvalidInput, TwilioConfigError, TwilioAPIError) as exc:
            # Published so a later task can say why nothing was sent; the text never holds the token.
            ti.xcom_push(key=SEND_ERROR_XCOM, value=send_error(exc))
            raise AirflowFailException(str(exc)) from None
        except TwilioUnreachableError as exc:
            # Published too, so that if this was the last try a later task says Twilio was unreachable.
            ti.xcom_push(key=SEND_ERROR_XCOM, value=send_error(exc))
            raise AirflowException(str(exc)) from None  # retried by Airflow; the next try looks first
        outputs: SendOutputs = {
            "messageSid": message.get("sid"),
            "initialStatus": message.get("status"),
            "accountSid": account_sid,
            "sentAt": datetime.now(UTC).isoformat(),
        }
        self.log.info("Created message %s (status %s)", outputs["messageSid"], outputs["initialStatus"])
        return outputs

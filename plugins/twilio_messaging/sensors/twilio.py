"""``TwilioMessageStatusSensor``: wait for a Twilio message to reach a final delivery status."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.http.sensors.http import HttpSensor
from airflow.sdk import PokeReturnValue, XComArg
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSensorTimeout

from twilio_messaging.callbacks.tracking import final_from_callbacks, needs_fetch, poll_due
from twilio_messaging.errors import TwilioConfigError
from twilio_messaging.forms import message_path, parse_twilio_date
from twilio_messaging.hooks.twilio import TwilioHook
from twilio_messaging.outputs import TIMELINE_FILE, TIMELINE_XCOM, StatusReport, status_report
from twilio_messaging.retry import TRANSIENT_STATUS_CODES
from twilio_messaging.settings import (
    DEFAULT_CALLBACK_GRACE,
    DEFAULT_MAX_WAIT,
    DEFAULT_POKE_INTERVAL,
    DEFAULT_STATUS_TIMEOUT,
)
from twilio_messaging.statuses import is_terminal
from twilio_messaging.timeline import StatusObservation, append_observation, observation, timeline_path
from twilio_messaging.triggers.twilio import TwilioMessageStatusTrigger
from twilio_messaging.validation import InvalidInput, validate_account_sid, validate_message_sid

if TYPE_CHECKING:
    import jinja2
    from airflow.sdk import Context

# What `endpoint` shows before rendering; the rendered value is the message's URL (see the rendered fields).
ENDPOINT_TEMPLATE = message_path("{accountSid}", "{messageSid}")


def past_deadline(sent_at: str | None, timeout: float, now: datetime | None = None) -> bool:
    """True once ``timeout`` seconds have passed since the message was sent (a fixed point across retries)."""
    if not sent_at:
        return False
    try:
        started = datetime.fromisoformat(sent_at)
    except ValueError:
        return False
    return ((now or datetime.now(UTC)) - started).total_seconds() > timeout


class TwilioMessageStatusSensor(HttpSensor):
    """Poll Twilio's fetchMessage until the message is final (delivered, undelivered, failed, ...).

    Returns (and pushes as ``return_value``) ``{"status", "errorCode", "errorMessage"}``. Every poke's
    status is appended to the run's status timeline (``twilio_messaging.timeline``), pushed as the XCom
    ``statusTimeline`` when the sensor finishes.

    :param message_sid: the SID (SM.../MM...) to track; templated, e.g. ``send.output["messageSid"]``.
    :param account_sid: the account that owns it (templated); default: the connection's Account SID login.
    :param sent_at: when the message was sent (ISO-8601, templated). ``timeout`` counts from it, so a sensor
        retry (which restarts Airflow's own timeout clock in 3.3) cannot extend the total wait. Default: the
        message's ``date_created`` as Twilio reports it.
    :param twilio_conn_id: the Twilio connection (type ``twilio`` or ``http``).
    :param transient_http_codes: replies that keep it polling (429 and 5xx by default); others fail the poke.
    :param timeline_file: the timeline's file name in the run's storage folder; give each sensor its own
        when one run tracks several messages, or None to keep no timeline.
    :param extra_options: HttpSensor's options for the request (``timeout``, ``verify``, ...).
    :param callbacks: read the status-callback store before asking Twilio (``twilio_messaging.callbacks``):
        a final status called back ends the wait without a request (a failure is fetched once for Twilio's
        error text, so the report is the same as polling's); none yet within ``callback_grace`` seconds of
        ``sent_at``, the poke asks nothing; after it, pokes fetch as without callbacks.
    :param callback_grace: see ``callbacks``.
    :param deferrable: wait in the triggerer instead (``TwilioMessageStatusTrigger``: woken by a callback,
        polling at ``poke_interval`` backing off to ``max_wait`` as the backup), holding no worker slot and
        not rescheduled, so apache/airflow#71172 cannot hit it. For thousands of waits at once.

    Defaults suit production: ``mode="reschedule"`` (no worker slot held between pokes), 60 s pokes
    (``poke_interval``) backing off exponentially to 15 min (``max_wait``), for at most 24 h (``timeout``)
    after sending. The sensor reads no environment: a DAG passes its own values (this project's DAG reads
    them from ``twilio_messaging.settings``).
    """

    template_fields: Sequence[str] = ("message_sid", "account_sid", "sent_at", "twilio_conn_id", "endpoint")
    ui_color = "#f22f46"  # Twilio red

    def __init__(
        self,
        *,
        message_sid: str | XComArg,
        account_sid: str | XComArg | None = None,
        sent_at: str | XComArg | None = None,
        twilio_conn_id: str = TwilioHook.default_conn_name,
        transient_http_codes: Sequence[int | str] = tuple(sorted(TRANSIENT_STATUS_CODES)),
        timeline_file: str | None = TIMELINE_FILE,
        mode: str = "reschedule",
        poke_interval: float = DEFAULT_POKE_INTERVAL,
        timeout: float = DEFAULT_STATUS_TIMEOUT,
        exponential_backoff: bool = True,
        max_wait: float | timedelta = DEFAULT_MAX_WAIT,
        extra_options: dict[str, Any] | None = None,
        callbacks: bool = False,
        callback_grace: float = DEFAULT_CALLBACK_GRACE,
        deferrable: bool = False,
        **kwargs: Any,
    ) -> None:
        if kwargs.get("response_check") is not None:
            # The message's status decides (check_status); a second check could only disagree with it.
            raise TypeError("TwilioMessageStatusSensor takes no response_check: it waits for a final status")
        super().__init__(
            endpoint=ENDPOINT_TEMPLATE,
            http_conn_id=twilio_conn_id,
            method="GET",
            response_error_codes_allowlist=[str(code) for code in transient_http_codes],
            extra_options=extra_options,
            # The HTTP trigger would read the connection with HttpHook's rules, not TwilioHook's.
            deferrable=False,
            mode=mode,
            poke_interval=poke_interval,
            timeout=timeout,
            exponential_backoff=exponential_backoff,
            max_wait=max_wait,
            **kwargs,
        )
        self.message_sid = message_sid
        self.account_sid = account_sid
        self.sent_at = sent_at
        self.twilio_conn_id = twilio_conn_id
        self.timeline_file = timeline_file
        self.callbacks = callbacks
        self.callback_grace = callback_grace
        # HttpSensor's own deferral (its HTTP trigger) stays off: this flag defers to the Twilio trigger.
        self.deferrable = deferrable
        self._unusable: Exception | None = None

    def render_template_fields(self, context: Context, jinja_env: jinja2.Environment | None = None) -> None:
        super().render_template_fields(context, jinja_env)
        self.http_conn_id = self.twilio_conn_id
        # The SIDs become a URL path: check them, and show the real URL in the rendered fields. A bad one
        # fails the first poke without retries (a retry renders the same value).
        try:
            sid = validate_message_sid(self.message_sid)
            account = self.account_sid or self.hook.connection_settings().account_sid
            self.endpoint = message_path(validate_account_sid(account), sid)
            self._unusable = None
        except (InvalidInput, TwilioConfigError) as exc:
            self._unusable = exc

    @cached_property
    def hook(self) -> TwilioHook:
        return TwilioHook(
            self.twilio_conn_id,
            method="GET",
            tcp_keep_alive=self.tcp_keep_alive,
            tcp_keep_alive_idle=self.tcp_keep_alive_idle,
            tcp_keep_alive_count=self.tcp_keep_alive_count,
            tcp_keep_alive_interval=self.tcp_keep_alive_interval,
        )

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        if self._unusable is not None:
            raise AirflowFailException(str(self._unusable))
        sent_at = self._sent_at()
        started = sent_at or datetime.now(UTC)
        max_wait = self.max_wait.total_seconds() if isinstance(self.max_wait, timedelta) else self.max_wait
        self.defer(
            trigger=TwilioMessageStatusTrigger(
                str(self.message_sid),
                account_sid=str(self.account_sid) if self.account_sid else None,
                twilio_conn_id=self.twilio_conn_id,
                deadline=started.timestamp() + self.timeout,
                poll_interval=self.poke_interval,
                max_poll_interval=max_wait or self.poke_interval,
            ),
            method_name="execute_complete",
        )

    def execute_complete(  # type: ignore[override]  # returns the report, as a poke's PokeReturnValue does
        self, context: Context, event: dict[str, Any] | None = None
    ) -> StatusReport:
        """The trigger's event: the report, as a poke would have published it."""
        event = event or {"status": "error", "error": "the trigger sent no event"}
        if event.get("status") == "error":
            raise AirflowException(f"Tracking message {self.message_sid} failed: {event.get('error')}")
        report = status_report(event["message"])
        timeline = self._record(context, report)
        context["ti"].xcom_push(key=TIMELINE_XCOM, value=timeline)
        self.log.info("Message %s status: %s (%s)", self.message_sid, report["status"], event.get("source"))
        if event.get("status") == "timeout":
            raise AirflowSensorTimeout(
                f"Message status is still '{report['status']}' {self.timeout:.0f} s after sending; giving up"
            )
        return report

    def _sent_at(self) -> datetime | None:
        # Rendered by now: a string (or None), no longer an XComArg.
        if not isinstance(self.sent_at, str) or not self.sent_at:
            return None
        try:
            return datetime.fromisoformat(self.sent_at)
        except ValueError:
            return None

    def poke(self, context: Context) -> bool | PokeReturnValue:
        # HttpSensor.poke's request and allowlist, with the TwilioHook it cannot be given: it builds a plain
        # HttpHook from the conn id, which knows nothing of the twilio connection type's defaults. It also
        # imports airflow.utils.operator_helpers.determine_kwargs on every poke (providers-http 6.3.0), whose
        # DeprecatedImportWarning filled each poke's log (issue 14 point 6); the response check below takes
        # the context as it is instead.
        if self._unusable is not None:
            raise AirflowFailException(str(self._unusable))
        if self.callbacks:
            sid = str(self.message_sid)
            called_back = final_from_callbacks([sid]).get(sid)
            if called_back is not None and not needs_fetch(called_back):
                self.log.info("Message %s: final status called back", sid)
                return self.check_message(called_back.as_message(), context)
            if called_back is None and not poll_due(self._sent_at(), self.callback_grace):
                self.log.info(
                    "Message %s: no final status called back yet; Twilio is asked from %.0f s after sending",
                    sid,
                    self.callback_grace,
                )
                return False
        self.log.info("Poking: %s", self.endpoint)
        try:
            response = self.hook.run(
                self.endpoint,
                data=self.request_params,
                headers=self.headers,
                extra_options=self.extra_options,
                **self.request_kwargs,
            )
        except AirflowException as exc:
            if str(exc).startswith(self.response_error_codes_allowlist):
                self.log.warning("Twilio answered %s; polling again at the next poke", exc)
                return False
            raise
        return self.check_status(response, context)

    def check_status(self, response: Any, context: Context) -> bool | PokeReturnValue:
        """The sensor's response check: done (with the status report) once the message's status is final.

        Every status is appended to the timeline; past the deadline (counted from the send) it gives up.
        """
        return self.check_message(response.json(), context)

    def check_message(self, message: dict[str, Any], context: Context) -> bool | PokeReturnValue:
        """Done (with the report) once the message resource's status is final; past the deadline, give up."""
        report = status_report(message)
        timeline = self._record(context, report)
        self.log.info("Message %s status: %s", self.message_sid, report["status"])
        if is_terminal(report["status"]):
            context["ti"].xcom_push(key=TIMELINE_XCOM, value=timeline)
            return PokeReturnValue(is_done=True, xcom_value=report)
        sent_at = _iso(self._sent_at() or parse_twilio_date(message.get("date_created")))
        if past_deadline(sent_at, self.timeout):
            context["ti"].xcom_push(key=TIMELINE_XCOM, value=timeline)
            raise AirflowSensorTimeout(
                f"Message status is still '{report['status']}' {self.timeout:.0f} s after sending; giving up"
            )
        return False

    def _record(self, context: Context, report: StatusReport) -> list[StatusObservation]:
        entry = observation(report)
        if not self.timeline_file:
            return [entry]
        ti = context["ti"]
        return append_observation(timeline_path(ti.dag_id, ti.run_id, self.timeline_file), entry)


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value else None

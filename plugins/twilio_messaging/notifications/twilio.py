"""``TwilioNotifier``: an SMS when a task or a DAG run fails, succeeds or is retried.

    DAG(..., on_failure_callback=TwilioNotifier(to="+15551234567", from_="+15005550006"))
    PythonOperator(..., on_retry_callback=TwilioNotifier(to=["+1555...", "+1555..."], from_="+1..."))

It sends at most once per event: Airflow may run a callback twice for the same event (a task's callback
run by the task and again by the scheduler after a lost heartbeat, a DAG callback re-queued), so each sent
notification leaves a marker under the run's storage folder, keyed on DAG, run, task, try, event and
recipient, and a marker that exists means "already sent". It never raises into the callback runner: a
notification that cannot be sent is logged (without the token) and the callback returns.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Generator, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from airflow.sdk import ObjectStoragePath
from airflow.sdk.bases.notifier import BaseNotifier

from twilio_messaging.hooks.twilio import TwilioHook
from twilio_messaging.storage import run_path, safe_name
from twilio_messaging.validation import BODY_MAX_CHARS, MessageRequest, validate_message

if TYPE_CHECKING:
    import jinja2
    from airflow.sdk import Context

NOTIFICATIONS_DIR = "notifications"
# Rendered with the callback's context plus `notification` (see TwilioNotifier.describe).
DEFAULT_BODY = (
    "Airflow: {{ notification.what }} {{ notification.state }}. "
    "DAG {{ notification.dag_id }}, run {{ notification.run_id }}"
    "{% if notification.task_id %}, task {{ notification.task_id }} (try {{ notification.try_number }})"
    "{% endif %}. {{ notification.url }}"
)


class TwilioNotifier(BaseNotifier):
    """Send an SMS for an Airflow callback (``on_failure_callback``, ``on_success_callback``,
    ``on_retry_callback``, on tasks and on DAGs).

    :param to: one recipient or a list (templated).
    :param from_: the sender (templated); or ``messaging_service_sid``.
    :param body: the text (templated). The default names the DAG, the run, the task and its try, the state
        and links to the run. Templates see the callback's context and ``notification`` (dag_id, run_id,
        task_id, try_number, state, event, url, what).
    :param twilio_conn_id: the Twilio connection.
    :param account_sid: default: the connection's Account SID login.
    :param event: the name of the event in the dedupe key; default: the state the task or run is in.
    """

    template_fields = ("to", "from_", "messaging_service_sid", "body", "twilio_conn_id", "account_sid")

    def __init__(
        self,
        *,
        to: str | Sequence[str],
        from_: str | None = None,
        messaging_service_sid: str | None = None,
        body: str = DEFAULT_BODY,
        twilio_conn_id: str = TwilioHook.default_conn_name,
        account_sid: str | None = None,
        event: str | None = None,
    ) -> None:
        super().__init__()
        self.to = to
        self.from_ = from_
        self.messaging_service_sid = messaging_service_sid
        self.body = body
        self.twilio_conn_id = twilio_conn_id
        self.account_sid = account_sid
        self.event = event

    @staticmethod
    def describe(context: Context) -> dict[str, Any]:
        """What happened, from a task callback's context (with ``ti``) or a DAG callback's (without)."""
        from airflow.sdk.configuration import conf

        ti = context.get("ti")
        dag_run = context.get("dag_run")
        dag = context.get("dag")
        dag_id = getattr(ti, "dag_id", None) or getattr(dag_run, "dag_id", None) or getattr(dag, "dag_id", "")
        run_id = getattr(ti, "run_id", None) or getattr(dag_run, "run_id", None) or context.get("run_id", "")
        state = getattr(ti, "state", None) if ti is not None else getattr(dag_run, "state", None)
        state_text = str(getattr(state, "value", state) or "unknown")
        base = conf.get("api", "base_url", fallback="http://localhost:8080/").rstrip("/")
        url = f"{base}/dags/{quote(str(dag_id))}/runs/{quote(str(run_id))}"
        task_id = getattr(ti, "task_id", None)
        if task_id:
            url += f"/tasks/{quote(task_id)}"
        return {
            "dag_id": dag_id,
            "run_id": run_id,
            "task_id": task_id,
            "try_number": getattr(ti, "try_number", None),
            "state": state_text,
            "what": f"task {task_id}" if task_id else "DAG run",
            "url": url,
            # A DAG run that is cleared and fails again is a new event; a task's try number covers that.
            "clear_number": getattr(dag_run, "clear_number", None),
        }

    def render_template_fields(self, context: Context, jinja_env: jinja2.Environment | None = None) -> None:
        facts = self.describe(context)
        facts["event"] = self.event or facts["state"]
        context["notification"] = facts  # type: ignore[typeddict-unknown-key]
        super().render_template_fields(context, jinja_env)

    def __call__(self, *args: Any) -> None:
        # BaseNotifier logs and re-raises; a notification must never fail the callback that sends it.
        try:
            super().__call__(*args)
        except Exception as exc:
            self.log.error("Twilio notification not sent: %s", exc)

    def __await__(self) -> Generator[Any, None, None]:
        try:
            return (yield from super().__await__())
        except Exception as exc:  # rendering failed before async_notify could catch it
            self.log.error("Twilio notification not sent: %s", exc)

    def _requests(self, context: Context) -> tuple[dict[str, Any], list[MessageRequest]]:
        facts: dict[str, Any] = context["notification"]  # type: ignore[typeddict-item]
        recipients = [self.to] if isinstance(self.to, str) else list(self.to)
        body = self.body[:BODY_MAX_CHARS]
        return facts, [
            validate_message(to, self.from_, body, None, None, self.messaging_service_sid)
            for to in recipients
        ]

    def _claimed(self, facts: dict[str, Any], request: MessageRequest) -> ObjectStoragePath | None:
        marker = self.marker_path(facts, request.to)
        if _claim(marker):
            return marker
        self.log.info(
            "Notification to %s for %s already sent; not sending it again", request.to, facts["event"]
        )
        return None

    def notify(self, context: Context) -> None:
        facts, requests = self._requests(context)
        with TwilioHook(self.twilio_conn_id).get_client(account_sid=self.account_sid) as client:
            for request in requests:
                if (marker := self._claimed(facts, request)) is None:
                    continue
                try:
                    message = client.create_message(request)
                except Exception:
                    marker.unlink(missing_ok=True)  # not sent: a later run of the callback may try again
                    raise
                _write_marker(marker, message.get("sid"), request)
                self.log.info("Sent notification %s to %s", message.get("sid"), request.to)

    async def async_notify(self, context: Context) -> None:
        """The same, with the async client (for the triggerer, e.g. deadline alerts); never raises either."""
        try:
            facts, requests = self._requests(context)
            async with TwilioHook(self.twilio_conn_id).get_async_client(
                account_sid=self.account_sid
            ) as client:
                for request in requests:
                    if (marker := self._claimed(facts, request)) is None:
                        continue
                    try:
                        message = await client.create_message(request)
                    except Exception:
                        marker.unlink(missing_ok=True)
                        raise
                    _write_marker(marker, message.get("sid"), request)
                    self.log.info("Sent notification %s to %s", message.get("sid"), request.to)
        except Exception as exc:
            self.log.error("Twilio notification not sent: %s", exc)

    @staticmethod
    def marker_path(facts: dict[str, Any], to: str) -> ObjectStoragePath:
        """Where the "already sent" marker of one notification lives."""
        key = "|".join(
            str(facts.get(part))
            for part in ("dag_id", "run_id", "task_id", "try_number", "event", "clear_number")
        )
        digest = hashlib.sha256(f"{key}|{to}".encode()).hexdigest()[:16]
        name = safe_name(f"{facts.get('task_id') or 'dag'}.{facts.get('try_number') or 0}.{facts['event']}")
        folder = run_path(str(facts["dag_id"]), str(facts["run_id"])) / NOTIFICATIONS_DIR
        return folder / f"{name}.{digest}.json"


def _claim(marker: ObjectStoragePath) -> bool:
    """Create the marker only if it does not exist; False when another run of the callback got there first.

    Exclusive creation is atomic on a local or shared POSIX file system; an object store without it falls
    back to check-then-write, which still stops every repeat that is not concurrent.
    """
    marker.parent.mkdir(parents=True, exist_ok=True)
    try:
        with marker.open("xb") as handle:
            handle.write(b"{}")
        return True
    except FileExistsError:
        return False
    except (ValueError, NotImplementedError):
        if marker.exists():
            return False
        marker.write_bytes(b"{}")
        return True


def _write_marker(marker: ObjectStoragePath, sid: str | None, request: MessageRequest) -> None:
    record = {"messageSid": sid, "to": request.to, "sentAt": datetime.now(UTC).isoformat()}
    marker.write_bytes(json.dumps(record).encode())

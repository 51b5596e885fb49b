"""The sentence a failed task died with, as Airflow recorded it: the error of its last try's log.

Airflow 3 keeps no error column on a task instance; the task runner logs ``Task failed with exception``
with the exception as structured ``error_detail`` (type, value, frames), and the api-server reads task
logs through its ``TaskLogReader`` (local files, the worker's log server, or remote logging alike). This
module picks the sentence out of those log messages; ``store.task_failure`` fetches them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from twilio_messaging.ui.masking import mask_text

FAILED_EVENT = "Task failed with exception"
ERROR_LEVELS = frozenset({"error", "critical", "fatal"})
MAX_SENTENCE = 600  # a page shows a sentence, not a dump; the log link has the rest


@dataclass(frozen=True)
class TaskFailure:
    """The failed task a run ended on: its id, try, the error sentence and where its log is."""

    task_id: str
    try_number: int
    map_index: int
    message: str  # the error sentence, numbers masked; "" when the log has none (or may not be read)
    error_type: str = ""
    log_href: str = ""  # relative to the Airflow UI's base URL: dags/<dag>/runs/<run>/tasks/<task>...

    def headline(self, run_state: str) -> str:
        where = self.task_id + (f"[{self.map_index}]" if self.map_index >= 0 else "")
        head = f"The run ended {run_state}: task {where} failed"
        if self.try_number > 1:
            head += f" (try {self.try_number})"
        return head


def log_href(dag_id: str, run_id: str, task_id: str, map_index: int, try_number: int) -> str:
    """Airflow's own page of the task instance's log (the UI's route, relative to its base URL)."""
    href = f"dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}/tasks/{quote(task_id, safe='')}"
    if map_index >= 0:
        href += f"/mapped/{map_index}"
    return href + (f"?try_number={try_number}" if try_number > 0 else "")


def _field(message: Any, name: str) -> Any:
    if isinstance(message, Mapping):
        return message.get(name)
    value = getattr(message, name, None)
    if value is None:
        value = (getattr(message, "model_extra", None) or {}).get(name)
    return value


def _shorten(text: str) -> str:
    text = " ".join(text.split()) if "\n" not in text.strip() else text.strip()
    return text if len(text) <= MAX_SENTENCE else text[: MAX_SENTENCE - 1] + "…"


def error_sentence(messages: Iterable[Any]) -> tuple[str, str]:
    """(sentence, exception type) of the last failure in a task log's structured messages.

    The last ``Task failed with exception`` with its ``error_detail`` wins (its first exception is the one
    raised; later ones are its causes); else the last error-level line; else nothing.
    """
    raised: tuple[str, str] | None = None
    last_error = ""
    for message in messages:
        event = str(_field(message, "event") or "")
        detail = _field(message, "error_detail")
        if event == FAILED_EVENT and isinstance(detail, list) and detail:
            first = detail[0] if isinstance(detail[0], Mapping) else {}
            value = str(first.get("exc_value") or "").strip()
            kind = str(first.get("exc_type") or "")
            raised = (value or kind or event, kind)
        elif str(_field(message, "level") or "").lower() in ERROR_LEVELS and event:
            last_error = event
    if raised is not None:
        return mask_text(_shorten(raised[0])), raised[1]
    return (mask_text(_shorten(last_error)), "") if last_error else ("", "")

"""What one run of the send-and-track workflow did, from what it recorded: a view model for the tab.

Sources (the contract between the DAG and this tab): the XComs of sendMessage (``messageSid``,
``initialStatus``, ``accountSid``, ``sentAt``, ``sendError``), checkStatus (``return_value``,
``statusTimeline``), routeByStatus (``outcome``) and the end tasks (``messageSid``, ``finalStatus``,
``errorCode``, ``statusTimeline``); the status timeline file while the sensor is still polling; the
run's conf; the task instances' states. Nothing here reads a connection, so no secret can reach a page.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from twilio_messaging import contract
from twilio_messaging.errors import ErrorInfo, error_info
from twilio_messaging.statuses import UNCONFIRMED_SUFFIX, end_state, is_terminal
from twilio_messaging.ui.masking import mask_number, mask_sid, mask_text, safe_url
from twilio_messaging.ui.task_errors import TaskFailure

TASK_ORDER = contract.WORKFLOW_TASKS
END_TASKS = contract.END_TASKS
TIMELINE_KEY = contract.TIMELINE_XCOM
OUTCOME_KEY = (
    contract.BRANCH_TASK,
    contract.OUTCOME_XCOM,
)  # routeByStatus' decision: the workflow's normal output
# (task_id, key) pairs the tab reads; the store fetches exactly these.
XCOM_KEYS: tuple[tuple[str, str], ...] = contract.WORKFLOW_XCOMS
# Shown in this order; anything else in the conf is not the workflow's and stays off the page.
INPUT_LABELS = (
    ("to", "To"),
    ("from", "From"),
    ("messagingServiceSid", "Messaging Service"),
    ("body", "Body"),
    ("mediaUrl", "Media URLs"),
    ("statusCallback", "Status callback"),
    ("accountSid", "Account"),
)
NOT_RUN_STATES = frozenset({"skipped", "upstream_failed", "none", "removed"})
FINISHED_STATES = frozenset({"success", "failed", "skipped", "upstream_failed", "removed"})

Xcoms = Mapping[tuple[str, str], Any]


@dataclass(frozen=True)
class Banner:
    """The one line a person reads first."""

    kind: str  # delivered | failed | nothing_sent | unconfirmed | unknown | running
    headline: str
    detail: str = ""
    error: ErrorInfo | None = None
    failure: TaskFailure | None = None  # the failed task's own error, when the run has no outcome


@dataclass(frozen=True)
class TimelineRow:
    at: str
    status: str
    error: ErrorInfo | None = None

    @property
    def shown_at(self) -> str:
        """``2026-12-02 01:04:10`` (UTC): ISO without the date/time ``T``, fractions and offset."""
        return self.at.replace("T", " ")[:19]


@dataclass(frozen=True)
class Step:
    task_id: str
    state: str
    taken: bool


@dataclass
class WorkflowView:
    dag_id: str
    run_id: str
    run_state: str
    banner: Banner
    message_sid: str | None
    final_status: str | None
    timeline: list[TimelineRow] = field(default_factory=list)
    timeline_source: str = ""
    inputs: list[tuple[str, str]] = field(default_factory=list)
    path: list[Step] = field(default_factory=list)


def _first(xcoms: Xcoms, key: str, tasks: Sequence[str]) -> Any:
    for task in tasks:
        value = xcoms.get((task, key))
        if value is not None:
            return value
    return None


def timeline_rows(entries: Sequence[Mapping[str, Any]] | None) -> list[TimelineRow]:
    """Each change of status the sensor saw (``{"at", "status", "errorCode"}``), oldest first.

    A status seen again (a retried checkStatus observes the final status once more) is one row, at the
    time it was first seen.
    """
    rows = []
    for entry in entries or []:
        if not isinstance(entry, Mapping):
            continue
        rows.append(
            TimelineRow(
                at=str(entry.get("at") or ""),
                status=str(entry.get("status") or "unknown"),
                error=error_info(entry.get("errorCode")),
            )
        )
    changes: list[TimelineRow] = []
    for row in sorted(rows, key=lambda row: row.at):
        if changes and (changes[-1].status, changes[-1].error) == (row.status, row.error):
            continue
        changes.append(row)
    return changes


def _timeline(
    xcoms: Xcoms, stored: Sequence[Mapping[str, Any]] | None, tis: Mapping[str, Mapping[str, Any]]
) -> tuple[list[TimelineRow], str]:
    recorded = _first(xcoms, TIMELINE_KEY, (*END_TASKS, contract.CHECK_TASK))
    if recorded:
        return timeline_rows(recorded), "recorded by checkStatus at each poke"
    if stored:
        return timeline_rows(stored), "recorded by checkStatus at each poke (still polling)"
    # A run from before the sensor recorded its pokes: the send and the final report are all there is.
    rows = []
    sent_at = xcoms.get((contract.SEND_TASK, "sentAt"))
    initial = xcoms.get((contract.SEND_TASK, "initialStatus"))
    if sent_at and initial:
        rows.append(TimelineRow(at=str(sent_at), status=str(initial)))
    report = xcoms.get((contract.CHECK_TASK, contract.RETURN_VALUE)) or {}
    if isinstance(report, Mapping) and report.get("status"):
        ended = (tis.get(contract.CHECK_TASK) or {}).get("end_date") or ""
        rows.append(TimelineRow(str(ended), str(report["status"]), error_info(report.get("errorCode"))))
    return rows, "from sendMessage and the last checkStatus result (no per-poke record in this run)"


def _banner(
    xcoms: Xcoms,
    run_state: str,
    tis: Mapping[str, Mapping[str, Any]],
    to: str,
    failure: TaskFailure | None = None,
) -> tuple[Banner, str | None, str | None]:
    outcome = xcoms.get(OUTCOME_KEY)
    sid = _first(xcoms, "messageSid", (*END_TASKS, contract.SEND_TASK))
    if isinstance(outcome, Mapping):
        sid = outcome.get("messageSid") or sid
        status = outcome.get("finalStatus")
        error = error_info(outcome.get("errorCode"))
        detail = mask_text(outcome.get("errorMessage") or "")
        reason = mask_text(outcome.get("reason") or "")
        if outcome.get("end") == "delivered":
            return Banner("delivered", f"Delivered to {to}: status {status}"), sid, status
        if not sid and status:
            text = f"Not known whether the message was sent ({status})"
            return Banner("unknown", text, reason or detail, error), None, status
        if not sid:
            # errorMessage is Twilio's own words: the code and the docs link come apart (error_info).
            head = "Nothing was sent"
            head += f": Twilio error {error.code}, {error.meaning}" if error else ""
            return Banner("nothing_sent", head, detail or reason, error), None, None
        if isinstance(status, str) and status.endswith(UNCONFIRMED_SUFFIX):
            seen = status.removesuffix(UNCONFIRMED_SUFFIX).strip()
            head = (
                f"Delivery to {to} unconfirmed: no final status before the status timeout "
                f"(last status {seen}); the message may still arrive"
            )
            return Banner("unconfirmed", head, reason or detail, error), sid, status
        head = f"Not delivered to {to}: status {status}"
        if error:
            head += f", error {error.code}: {error.meaning}"
        return Banner("failed", head, reason or ("" if error else detail), error), sid, status
    # No routing decision yet: say where the run is.
    send_error = xcoms.get((contract.SEND_TASK, contract.SEND_ERROR_XCOM))
    report = xcoms.get((contract.CHECK_TASK, contract.RETURN_VALUE))
    if isinstance(send_error, Mapping) and not sid:
        error = error_info(send_error.get("errorCode"))
        head = "Nothing sent yet" if run_state not in FINISHED_STATES else "Nothing was sent"
        return Banner("nothing_sent", head, mask_text(send_error.get("errorMessage")), error), None, None
    if isinstance(report, Mapping) and is_terminal(report.get("status")):
        status = report["status"]
        kind = "delivered" if end_state(status) == "delivered" else "failed"
        return Banner(kind, f"Status {status}", "", error_info(report.get("errorCode"))), sid, status
    active = [
        f"{task} {state}"
        for task in TASK_ORDER
        if (state := (tis.get(task) or {}).get("state")) not in FINISHED_STATES
        and state not in (None, "none")
    ]
    where = f" ({', '.join(active)})" if active else ""
    if run_state in FINISHED_STATES:
        if failure is not None:
            banner = Banner("failed", failure.headline(run_state), failure.message, failure=failure)
            return banner, sid, None
        return Banner("unknown", f"The run ended {run_state} without a routing decision{where}"), sid, None
    initial = xcoms.get((contract.SEND_TASK, "initialStatus"))
    last = (report or {}).get("status") if isinstance(report, Mapping) else None
    head = "In progress" + (f": last status {last or initial}" if (last or initial) else "") + where
    return Banner("running", head), sid, None


def inputs(conf: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """The workflow inputs of the run, with the To partly masked and URLs without credentials."""
    conf = conf or {}
    shown = []
    for key, label in INPUT_LABELS:
        value = conf.get(key)
        if value in (None, "", []):
            continue
        if key == "to":
            text = mask_number(str(value))
        elif key == "accountSid" or key == "messagingServiceSid":
            text = mask_sid(str(value))
        elif key == "statusCallback":
            text = safe_url(str(value))
        elif key == "mediaUrl":
            urls = value if isinstance(value, list) else [value]
            text = "\n".join(safe_url(str(url)) for url in urls)
        else:
            text = str(value)
        shown.append((label, text))
    if "from" not in conf and "messagingServiceSid" not in conf:
        shown.insert(1, ("From", "(the DAG's default sender)"))
    return shown


def path_taken(tis: Mapping[str, Mapping[str, Any]]) -> list[Step]:
    """Every task of the workflow in order, with its state; one that did not run is not 'taken'."""
    steps = []
    for task in TASK_ORDER:
        state = (tis.get(task) or {}).get("state") or "none"
        taken = state not in NOT_RUN_STATES
        steps.append(Step(task, state, taken))
    return steps


def workflow_view(
    dag_id: str,
    run_id: str,
    run_state: str,
    conf: Mapping[str, Any] | None,
    tis: Mapping[str, Mapping[str, Any]],
    xcoms: Xcoms,
    stored_timeline: Sequence[Mapping[str, Any]] | None = None,
    failure: TaskFailure | None = None,
) -> WorkflowView:
    """Everything the workflow tab shows, from the run's records (``failure``: its first failed task)."""
    to = mask_number(str((conf or {}).get("to") or "")) or "the recipient"
    banner, sid, status = _banner(xcoms, run_state, tis, to, failure)
    timeline, source = _timeline(xcoms, stored_timeline, tis)
    return WorkflowView(
        dag_id=dag_id,
        run_id=run_id,
        run_state=run_state,
        banner=banner,
        message_sid=sid,
        final_status=status or _first(xcoms, "finalStatus", END_TASKS),
        timeline=timeline,
        timeline_source=source,
        inputs=inputs(conf),
        path=path_taken(tis),
    )

"""What routeByStatus and the end tasks decide, as plain functions: the outcome and how a failure reads.

``twilio_messaging.workflow.tasks`` wires them to Airflow (XCom in, outcome out); tests call them directly.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Mapping
from typing import Any, TypedDict

from twilio_messaging.contract import WORKFLOW_OUTPUTS
from twilio_messaging.errors import error_info
from twilio_messaging.outputs import status_report
from twilio_messaging.statuses import UNCONFIRMED_REASON, EndState, end_state, is_terminal, unconfirmed


class Outcome(TypedDict):
    """routeByStatus' ``outcome`` XCom: the end task, the workflow outputs and the reason."""

    end: EndState
    messageSid: str | None
    finalStatus: str | None
    errorCode: int | None
    errorMessage: str | None
    reason: str | None


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
    info = error_info(code)
    number = info.code if info else None
    docs = info.docs_url if info else None
    meaning = info.meaning if info else None
    note = ""
    if meaning and " (" in meaning:
        # "Unreachable destination handset (often temporary: …)": the note may go on the next line.
        meaning, note = meaning.split(" (", 1)
        note = "(" + note
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

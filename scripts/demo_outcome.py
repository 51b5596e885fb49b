"""What `make demo` prints and returns for the run it triggered: one plain function, unit-tested.

Exit codes (the README's "When something goes wrong" lists them):
    0  delivered
    1  not delivered: Twilio reported undelivered/failed/canceled, or nothing was sent
    2  the demo itself went wrong: the stack did not start, the run did not finish, or the run's task states
       contradict its outputs (see the printed problems)
    3  unconfirmed: no final status before TWILIO_STATUS_TIMEOUT (e.g. `sent` without a carrier receipt)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from twilio_messaging.errors import describe as describe_error
from twilio_messaging.statuses import DELIVERED_STATUSES, FAILED_STATUSES, UNCONFIRMED_SUFFIX

EXIT_DELIVERED = 0
EXIT_NOT_DELIVERED = 1
EXIT_DEMO_ERROR = 2
EXIT_UNCONFIRMED = 3
EXIT_MEANINGS: dict[int, str] = {
    EXIT_DELIVERED: "delivered",
    EXIT_NOT_DELIVERED: "not delivered",
    EXIT_DEMO_ERROR: "the demo itself went wrong",
    EXIT_UNCONFIRMED: "unconfirmed",
}


@dataclass(frozen=True)
class RunFacts:
    """What the demo read back from Airflow about its finished run."""

    run_state: str
    task_states: Mapping[str, str | None]
    outputs: Mapping[str, Any]  # the end task's XComs: messageSid, finalStatus, errorCode
    reason: str | None = None  # routeByStatus' `outcome.reason`: why it was not delivered
    to: str = ""
    # The sandbox's outcome table ({last digits of To: description}, from GET /_sandbox/config); empty
    # against real Twilio, where no outcome is known in advance.
    sandbox_outcomes: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DemoOutcome:
    exit_code: int
    headline: str
    details: tuple[str, ...] = ()

    def text(self) -> str:
        return "\n".join([self.headline, *(f"  {line}" for line in self.details)])


def expected_outcome(to: str, sandbox_outcomes: Mapping[str, str]) -> tuple[str, str] | None:
    """(digits, description) of the sandbox's outcome-table entry that ``to`` ends with, if any."""
    digits = re.sub(r"\D", "", to)
    for key, description in sandbox_outcomes.items():
        if digits.endswith(key):
            return key, description
    return None


def demo_outcome(facts: RunFacts) -> DemoOutcome:
    """Map the finished run to the demo's exit code and the words that say what happened."""
    if facts.run_state not in ("success", "failed"):
        return DemoOutcome(
            EXIT_DEMO_ERROR,
            f"DEMO ERROR: the run did not finish in time (run state {facts.run_state!r}).",
            ("See the component logs in .demo/process-logs/ and the task logs in .demo/logs/.",),
        )
    status = facts.outputs.get("finalStatus")
    sid = facts.outputs.get("messageSid")
    code = facts.outputs.get("errorCode")
    delivered = status in DELIVERED_STATUSES
    problems = _contradictions(facts, delivered)
    if problems:
        return DemoOutcome(
            EXIT_DEMO_ERROR,
            "DEMO ERROR: the run's task states contradict its outputs:",
            tuple(f"- {p}" for p in problems),
        )
    if delivered:
        return DemoOutcome(EXIT_DELIVERED, f"DEMO OK: the message was delivered ({sid}).")

    details: list[str] = []
    if status in FAILED_STATUSES:
        exit_code = EXIT_NOT_DELIVERED
        error = f"error {code}: {describe_error(code)}" if code not in (None, "") else "no error code"
        headline = f"NOT DELIVERED: Twilio reports the message {status!r} ({error})."
    elif isinstance(status, str) and status.endswith(UNCONFIRMED_SUFFIX):
        exit_code = EXIT_UNCONFIRMED
        headline = (
            f"UNCONFIRMED: no final status before the status timeout (finalStatus {status!r}); "
            "the message may still arrive."
        )
    elif not sid:
        exit_code = EXIT_NOT_DELIVERED
        headline = "NOT SENT: no message was created."
    else:
        exit_code = EXIT_NOT_DELIVERED
        headline = f"NOT DELIVERED: the message ended {status!r}."
    if facts.reason:
        details.append(f"Reason: {facts.reason}")
    details.append("The run is red: the task `failed` fails it on purpose; its error names the SID and code.")
    expected = expected_outcome(facts.to, facts.sandbox_outcomes)
    if expected is not None:
        digits, description = expected
        details.append(
            f"Expected: the sandbox makes numbers ending in {digits} '{description}'; "
            "the failure path worked as designed."
        )
    elif facts.sandbox_outcomes:
        details.append(
            f"Not expected: {facts.to} is not in the sandbox's outcome table, so it should deliver."
        )
    return DemoOutcome(exit_code, headline, tuple(details))


def _contradictions(facts: RunFacts, delivered: bool) -> list[str]:
    """What the task states say that the outputs do not (either end task must match the final status)."""
    want = (
        {"run": "success", "delivered": "success", "failed": "skipped"}
        if delivered
        else {"run": "failed", "delivered": "skipped", "failed": "failed"}
    )
    got = {"run": facts.run_state, **{t: facts.task_states.get(t) for t in ("delivered", "failed")}}
    problems = [
        f"{'run' if name == 'run' else 'task ' + name} is {got[name]!r}, expected {state!r} for finalStatus "
        f"{facts.outputs.get('finalStatus')!r}"
        for name, state in want.items()
        if got[name] != state
    ]
    sid = facts.outputs.get("messageSid")
    if delivered and not str(sid or "").startswith(("SM", "MM")):
        problems.append(f"messageSid {sid!r} is not a Twilio message SID")
    return problems

"""`make demo`'s exit code and words for each outcome of its run (scripts/demo_outcome.py)."""

from __future__ import annotations

from typing import Any

import pytest

from scripts.demo_outcome import (
    EXIT_DELIVERED,
    EXIT_DEMO_ERROR,
    EXIT_NOT_DELIVERED,
    EXIT_UNCONFIRMED,
    RunFacts,
    demo_outcome,
    expected_outcome,
)

SID = "SM" + "0" * 32
# What GET /_sandbox/config answers (a subset of its table).
SANDBOX = {
    "3003": "undelivered, error 30003",
    "3008": "failed, error 30008",
    "7777": "stays `sent` forever (no carrier receipt)",
}


def facts(status: Any, code: Any = None, *, delivered: bool = False, **overrides: Any) -> RunFacts:
    values: dict[str, Any] = {
        "run_state": "success" if delivered else "failed",
        "task_states": {"delivered": "success", "failed": "skipped"}
        if delivered
        else {"delivered": "skipped", "failed": "failed"},
        "outputs": {"messageSid": SID, "finalStatus": status, "errorCode": code},
        "to": "+15551234567",
        "sandbox_outcomes": SANDBOX,
    }
    values.update(overrides)
    return RunFacts(**values)


def test_delivered_exits_0():
    outcome = demo_outcome(facts("delivered", delivered=True))
    assert outcome.exit_code == EXIT_DELIVERED == 0
    assert outcome.headline.startswith("DEMO OK: the message was delivered")
    assert SID in outcome.headline


def test_undelivered_30003_exits_1_and_says_what_happened():
    # Before the fix the demo returned the errorCode XCom itself: 30003 % 256 = 51.
    outcome = demo_outcome(
        facts(
            "undelivered",
            30003,
            to="+15551233003",
            reason=None,
        )
    )
    assert outcome.exit_code == EXIT_NOT_DELIVERED == 1
    text = outcome.text()
    assert "NOT DELIVERED" in outcome.headline and "'undelivered'" in outcome.headline
    assert "error 30003: Unreachable destination handset" in outcome.headline
    assert "Expected: the sandbox makes numbers ending in 3003 'undelivered, error 30003'" in text
    assert "worked as designed" in text
    assert "DEMO FAILED" not in text and "expected 'success'" not in text


@pytest.mark.parametrize("code", [30003, "30003"])
def test_the_exit_code_never_depends_on_the_error_code(code):
    assert demo_outcome(facts("undelivered", code)).exit_code == 1


def test_failed_status_exits_1():
    outcome = demo_outcome(facts("failed", 30008, to="+15551233008"))
    assert outcome.exit_code == 1
    assert "'failed'" in outcome.headline and "30008" in outcome.headline


def test_unconfirmed_exits_3_with_the_reason():
    # Before the fix: "DEMO FAILED" printed and exit 0.
    reason = (
        "Twilio handed the message to the carrier but received no delivery receipt before the status timeout"
    )
    outcome = demo_outcome(facts("sent (delivery unconfirmed)", to="+15551237777", reason=reason))
    assert outcome.exit_code == EXIT_UNCONFIRMED == 3
    assert outcome.headline.startswith("UNCONFIRMED: no final status before the status timeout")
    assert f"Reason: {reason}" in outcome.details
    assert any("ending in 7777" in line for line in outcome.details)


def test_nothing_sent_exits_1():
    outcome = demo_outcome(
        facts(None, 21211, outputs={"messageSid": None, "finalStatus": None, "errorCode": 21211}, reason="x")
    )
    assert outcome.exit_code == 1
    assert outcome.headline.startswith("NOT SENT")


def test_an_unexpected_failure_says_so():
    outcome = demo_outcome(facts("undelivered", 30003, to="+15551234567"))
    assert outcome.exit_code == 1
    assert any(line.startswith("Not expected:") for line in outcome.details)


def test_real_twilio_makes_no_claim_about_what_was_expected():
    outcome = demo_outcome(facts("undelivered", 30003, sandbox_outcomes={}))
    assert not any("xpected" in line for line in outcome.details)


def test_a_run_that_did_not_finish_is_a_demo_error():
    outcome = demo_outcome(facts(None, run_state="running", task_states={}, outputs={}))
    assert outcome.exit_code == EXIT_DEMO_ERROR == 2
    assert "did not finish" in outcome.headline


@pytest.mark.parametrize(
    ("run_state", "delivered_state", "failed_state", "status"),
    [
        ("success", "success", "skipped", "undelivered"),  # green run, red status
        ("failed", "skipped", "failed", "delivered"),  # red run, green status
        ("success", "skipped", "success", "delivered"),  # the wrong end task ran
    ],
)
def test_task_states_that_contradict_the_outputs_are_a_demo_error(
    run_state, delivered_state, failed_state, status
):
    outcome = demo_outcome(
        facts(status, run_state=run_state, task_states={"delivered": delivered_state, "failed": failed_state})
    )
    assert outcome.exit_code == 2
    assert outcome.headline.startswith("DEMO ERROR")


def test_delivered_without_a_message_sid_is_a_demo_error():
    outcome = demo_outcome(
        facts("delivered", delivered=True, outputs={"messageSid": None, "finalStatus": "delivered"})
    )
    assert outcome.exit_code == 2
    assert any("not a Twilio message SID" in line for line in outcome.details)


def test_expected_outcome_matches_the_last_digits():
    assert expected_outcome("+1 (555) 123-3003", SANDBOX) == ("3003", "undelivered, error 30003")
    assert expected_outcome("+15551230030", SANDBOX) is None

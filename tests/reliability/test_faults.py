"""Guarantee 1: under 429s, 5xx and lost responses nothing is lost, nothing is sent twice, and every run
and every batch summary reports the true final status (as the sandbox's store has it)."""

from __future__ import annotations

import csv
import time
from collections import Counter
from pathlib import Path

from tests.reliability.conftest import (
    BATCH_DAG,
    SENDER,
    load_dag,
    task_states,
    try_numbers,
    xcom,
)

FAULTS = {"rate_429": 0.1, "rate_5xx": 0.1, "rate_lost_response": 0.1}
WORKFLOW_RUNS = 30
BATCH_SIZE = 1000
# The endings the sandbox turns into outcomes: mostly delivered, some undelivered / failed.
ENDINGS = {0: "3003", 1: "3008", 2: "3006"}
BODIES = (
    "Your code is {i}",
    "Grüße aus Köln, Nachricht {i} — bis bald",  # UCS-2 (— is not GSM-7)
    "Rappel {i} : 🎉 rendez-vous demain",  # emoji, a surrogate pair in UTF-16
    "Price {i}: 10€ [ok] {{ conn.twilio_default.password }}",  # GSM-7 extension chars and Jinja text
)


def recipient(i: int, prefix: str) -> str:
    return f"+1{prefix}{i:03d}{ENDINGS.get(i % 10, f'{i % 10:04d}')}"


def test_workflow_runs_under_faults_send_exactly_once_and_report_the_true_status(rel, fast_backoff):
    dag = load_dag()
    plan: dict[str, str] = {}  # to -> body
    results = {}
    started = time.monotonic()
    for i in range(WORKFLOW_RUNS):
        # Half the lost responses are a 500 after storing, half a connection closed without a byte.
        rel.set_faults(**FAULTS, lost_response_mode="500" if i % 2 else "drop", seed=1000 + i)
        to = recipient(i, "555201")
        plan[to] = BODIES[i % len(BODIES)].replace("{i}", str(i))
        conf = {"to": to, "from": SENDER, "body": plan[to]}
        results[to] = dag.test(run_conf=conf)
    elapsed = time.monotonic() - started
    stats = rel.stats()
    rel.clear_faults()
    store = rel.messages()

    # Exactly one message per recipient, with the body that was asked for; nobody else got one.
    assert Counter(m["to"] for m in store) == Counter(plan.keys()), "lost or duplicate messages"
    by_to = {m["to"]: m for m in store}
    assert {to: m["body"] for to, m in by_to.items()} == plan

    wrong = []
    outcomes: Counter[str] = Counter()
    absorbed = 0
    for to, run in results.items():
        message = by_to[to]
        states = task_states(run)
        end = "delivered" if message["status"] == "delivered" else "failed"
        reported = xcom(run, end, "finalStatus")
        sid = xcom(run, end, "messageSid")
        expected_run = "success" if end == "delivered" else "failed"
        other = "failed" if end == "delivered" else "delivered"
        if (reported, sid, run.state, states[other]) != (
            message["status"],
            message["sid"],
            expected_run,
            "skipped",
        ):
            wrong.append(
                f"{to}: reported {reported!r}/{sid} run {run.state}, "
                f"store {message['status']}/{message['sid']}"
            )
        outcomes[message["status"]] += 1
        absorbed += sum(max(0, n - 1) for n in try_numbers(run).values())
    faults = stats["faults"]
    print(
        f"\nFAULTS workflow: {WORKFLOW_RUNS} runs in {elapsed:.0f}s; store {len(store)} messages for "
        f"{len(plan)} recipients; outcomes {dict(outcomes)}; injected 429={faults['429']} "
        f"5xx={faults['5xx']} lost={faults['lost_response']}; requests {stats['requests']}; "
        f"task retries absorbed {absorbed}; wrong reports {len(wrong)}"
    )
    assert not wrong, "\n".join(wrong)
    # The faults really happened, on the create path too (a lost response is only ever a create).
    assert faults["429"] > 0 and faults["5xx"] > 0 and faults["lost_response"] > 0
    assert stats["requests"]["list"] > 0  # a lost or ambiguous create was looked up, not blindly resent
    assert outcomes["delivered"] and outcomes["undelivered"] and outcomes["failed"]


def test_batch_of_1000_under_faults_sends_exactly_once_and_summarises_the_truth(rel, fast_backoff):
    rows = [{"to": recipient(i, "5552"), "name": f"Person {i}", "date": "Friday"} for i in range(BATCH_SIZE)]
    assert len({r["to"] for r in rows}) == BATCH_SIZE
    rel.set_faults(**FAULTS, lost_response_mode="drop", seed=7)
    started = time.monotonic()
    run = load_dag(BATCH_DAG).test(
        run_conf={
            "recipients": rows,
            "from": SENDER,
            "body_template": "Hi {name}, see you {date} 📅",
            "chunk_size": 500,
            "failure_threshold": 0.5,
            "opt_out_path": None,
            "opt_out": [],
            "report_format": "csv",
        }
    )
    elapsed = time.monotonic() - started
    stats = rel.stats()
    rel.clear_faults()
    store = rel.messages()

    assert Counter(m["to"] for m in store) == Counter(r["to"] for r in rows), "lost or duplicate messages"
    assert run.state == "success", task_states(run)
    summary = xcom(run, "summary")
    truth = Counter(m["status"] for m in store)
    assert summary["by_status"] == dict(truth)
    assert summary["to_send"] == BATCH_SIZE and summary["sent"] == BATCH_SIZE
    assert summary["delivered"] == truth["delivered"]
    assert summary["failed"] == truth["undelivered"] + truth["failed"]
    assert summary["unconfirmed"] == 0 and summary["unknown"] == 0
    # Per recipient, the report names the very message in the store and its final status.
    with Path(summary["report_path"]).open(newline="") as handle:
        report = {row["to"]: row for row in csv.DictReader(handle)}
    by_to = {m["to"]: m for m in store}
    mismatched = [
        to
        for to, row in report.items()
        if (row["sid"], row["status"]) != (by_to[to]["sid"], by_to[to]["status"])
    ]
    assert len(report) == BATCH_SIZE and not mismatched, mismatched[:5]
    faults = stats["faults"]
    print(
        f"\nFAULTS batch: {BATCH_SIZE} recipients in {elapsed:.0f}s; store {len(store)} messages; "
        f"statuses {dict(truth)}; injected 429={faults['429']} 5xx={faults['5xx']} "
        f"lost={faults['lost_response']}; requests {stats['requests']}; tries {try_numbers(run)}"
    )
    assert faults["429"] > 0 and faults["5xx"] > 0 and faults["lost_response"] > 0

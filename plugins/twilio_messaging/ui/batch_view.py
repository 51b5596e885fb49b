"""What one batch run did, from its summary: counts by final status, failures by error code, the verdict.

The summary is the batch's ``summary.json`` in the run's storage folder (else the summary task's XCom,
for runs from before the batch wrote to storage); the per-recipient table reads the report file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from twilio_messaging.contract import SENT_OUTCOMES, SKIP_OUTCOMES
from twilio_messaging.errors import ErrorInfo, error_info
from twilio_messaging.ui.chart import Chart, bar_chart
from twilio_messaging.ui.task_errors import TaskFailure

# The chart's bars in reading order: what was sent, then what was not (and why).
OUTCOME_ORDER = (*SENT_OUTCOMES, *SKIP_OUTCOMES)


@dataclass(frozen=True)
class CodeGroup:
    code: str
    count: int
    error: ErrorInfo | None


@dataclass
class BatchView:
    dag_id: str
    run_id: str
    run_state: str
    headline: str
    verdict: str
    counts: list[tuple[str, int]]
    chart: Chart
    groups: list[CodeGroup] = field(default_factory=list)
    facts: list[tuple[str, str]] = field(default_factory=list)
    has_summary: bool = True
    banner_kind: str = "running"  # banner colour: delivered (no failure) | warn (within threshold) | failed
    failure: TaskFailure | None = None  # the failed task's own error, when the run ended without a summary


def outcome_counts(summary: Mapping[str, Any]) -> list[tuple[str, int]]:
    """Rows by outcome, the same rows the headline counts: adds up to ``rows``.

    By outcome, not by Twilio status: a row skipped as already sent carries the status an earlier run saw
    (``delivered``, say), and counting it as a delivery of this run would show messages it never sent.
    """
    by_outcome = {str(o): int(n) for o, n in (summary.get("by_outcome") or {}).items() if n}
    order = {outcome: i for i, outcome in enumerate(OUTCOME_ORDER)}
    return sorted(by_outcome.items(), key=lambda item: (order.get(item[0], len(order)), item[0]))


def code_groups(summary: Mapping[str, Any]) -> list[CodeGroup]:
    """Failures grouped by error code, most frequent first, each with its meaning and docs link."""
    groups = [
        CodeGroup(str(code), int(n), error_info(code))
        for code, n in (summary.get("error_codes") or {}).items()
    ]
    coded = sum(group.count for group in groups)
    uncoded = int(summary.get("failures_total") or summary.get("failed") or 0) - coded
    if uncoded > 0:
        groups.append(CodeGroup("", uncoded, None))
    return sorted(groups, key=lambda group: (-group.count, group.code))


def batch_view(
    dag_id: str,
    run_id: str,
    run_state: str,
    summary: Mapping[str, Any] | None,
    running: str = "",
    failure: TaskFailure | None = None,
) -> BatchView:
    if not summary:
        headline = "No summary yet" + (f": {running}" if running else "")
        kind = "running"
        if failure is not None:
            headline, kind = failure.headline(run_state), "failed"
        elif run_state in ("success", "failed"):
            headline = f"The run ended {run_state} without a summary"
            kind = "failed"
        return BatchView(
            dag_id,
            run_id,
            run_state,
            headline,
            "",
            [],
            bar_chart([]),
            has_summary=False,
            banner_kind=kind,
            failure=failure,
        )
    counts = outcome_counts(summary)
    to_send = int(summary.get("to_send") or 0)
    skipped = int(summary.get("skipped_total") or 0)
    rate = float(summary.get("failure_rate") or 0.0)
    headline = (
        f"{summary.get('rows', 0):,} rows: {summary.get('delivered', 0):,} delivered, "
        f"{summary.get('failed', 0):,} failed ({rate:.1%} of {to_send:,} to send), "
        f"{summary.get('unconfirmed', 0):,} unconfirmed, {skipped:,} skipped"
    )
    threshold = summary.get("failure_threshold")
    verdict = ""
    if threshold is not None:
        over = rate > float(threshold)
        verdict = (
            f"Failure rate {rate:.1%} is {'over' if over else 'within'} the threshold {float(threshold):.1%}"
        )
    facts = [(label, str(summary[key])) for key, label in _FACTS if summary.get(key) not in (None, "")]
    failed = int(summary.get("failed") or 0)
    over = threshold is not None and rate > float(threshold)
    kind = "failed" if over or run_state == "failed" else ("warn" if failed else "delivered")
    return BatchView(
        dag_id,
        run_id,
        run_state,
        headline,
        verdict,
        counts,
        bar_chart(counts),
        code_groups(summary),
        facts,
        banner_kind=kind,
    )


_FACTS = (
    ("dedupe_key", "Dedupe key"),
    ("already_sent", "Skipped as already sent"),
)

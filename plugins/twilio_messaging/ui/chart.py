"""Counts by final status as a horizontal bar chart: geometry here, the SVG markup in a template.

Server-rendered, no script and no library: the tab works offline and in a sandboxed iframe.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from twilio_messaging import contract
from twilio_messaging.statuses import DELIVERED_STATUSES, FAILED_STATUSES

LABEL_WIDTH = 220
BAR_AREA = 420
COUNT_WIDTH = 90
ROW_HEIGHT = 28
BAR_HEIGHT = 18
# Rows not sent at all (the batch's skipped outcomes): neither a success nor a failure.
SKIPPED_OUTCOMES = frozenset(contract.SKIP_OUTCOMES)
COLORS = {"delivered": "#2e7d32", "failed": "#c62828", "pending": "#ef6c00", "skipped": "#757575"}


@dataclass(frozen=True)
class Bar:
    label: str
    count: int
    kind: str  # delivered | failed | pending | skipped
    y: int
    width: int

    @property
    def color(self) -> str:
        return COLORS[self.kind]


@dataclass(frozen=True)
class Chart:
    bars: list[Bar]
    width: int
    height: int
    label_width: int = LABEL_WIDTH
    bar_height: int = BAR_HEIGHT
    row_height: int = ROW_HEIGHT

    @property
    def total(self) -> int:
        return sum(bar.count for bar in self.bars)


def kind_of(label: str) -> str:
    if label in DELIVERED_STATUSES:
        return "delivered"
    if label in FAILED_STATUSES or label in (contract.REJECTED, contract.UNKNOWN):
        return "failed"
    if label in SKIPPED_OUTCOMES:
        return "skipped"
    return "pending"


def bar_chart(counts: Sequence[tuple[str, int]]) -> Chart:
    """One bar per (label, count), scaled to the largest count, in the given order."""
    largest = max((count for _, count in counts), default=0) or 1
    bars = [
        Bar(
            label=label,
            count=count,
            kind=kind_of(label),
            y=i * ROW_HEIGHT,
            width=max(2 if count else 0, round(BAR_AREA * count / largest)),
        )
        for i, (label, count) in enumerate(counts)
    ]
    return Chart(bars, LABEL_WIDTH + BAR_AREA + COUNT_WIDTH, max(1, len(bars)) * ROW_HEIGHT)

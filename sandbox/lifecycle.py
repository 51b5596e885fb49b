"""Delivery simulation: the outcome table and the time-driven status timeline of each message.

A message's status is never stored as it changes: each message keeps its creation time and a timeline of
``(offset_seconds, status)`` fixed at creation, and its status is computed on read. Thousands of messages
therefore cost nothing while they "progress", and a step delay of 0 makes a message terminal on its first
fetch.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

# Statuses after which nothing changes (``sent`` without a receipt also never changes, but is not final).
FINAL_STATUSES = frozenset({"delivered", "undelivered", "failed", "canceled", "read"})
# Cancel is possible only before the message is handed to the carrier.
CANCELABLE_STATUSES = frozenset({"accepted", "scheduled", "queued"})

ERROR_MESSAGES = {
    30001: "Queue overflow",
    30003: "Unreachable destination handset",
    30005: "Unknown destination handset",
    30006: "Landline or unreachable carrier",
    30008: "Unknown error",
}


@dataclass(frozen=True)
class Outcome:
    """How a message to a given number ends."""

    final_status: str | None  # None: stays ``sent`` forever (no carrier receipt)
    error_code: int | None = None
    slowness: float = 1.0  # multiplier on every step delay
    description: str = "delivered"


DELIVERED = Outcome("delivered")
# A message that would wait in its sender's queue longer than its ValidityPeriod (sandbox/senders.py).
EXPIRED = Outcome("failed", 30001, description="failed, error 30001 (queued longer than its ValidityPeriod)")

# Keyed by the last four digits of ``To``. README.md shows this table; keep the two in step.
OUTCOMES: dict[str, Outcome] = {
    "3003": Outcome("undelivered", 30003, description="undelivered, error 30003"),
    "3005": Outcome("undelivered", 30005, description="undelivered, error 30005"),
    "3006": Outcome("undelivered", 30006, description="undelivered, error 30006"),
    "3008": Outcome("failed", 30008, description="failed, error 30008"),
    "7777": Outcome(None, description="stays `sent` forever (no carrier receipt)"),
    "4444": Outcome("delivered", slowness=10.0, description="delivers slowly (10x the step delay per step)"),
}


def outcome_for(to: str) -> Outcome:
    digits = re.sub(r"\D", "", to)
    return OUTCOMES.get(digits[-4:], DELIVERED)


@dataclass(frozen=True)
class Profile:
    """Step delays: ``step_delay`` seconds per status change, each varied by +/- ``jitter`` (a fraction)."""

    step_delay: float
    jitter: float = 0.0


PROFILES: dict[str, Profile] = {
    "fast": Profile(0.0),
    "demo": Profile(1.0),
    "realistic": Profile(3.0, jitter=0.6),
}


def build_timeline(
    outcome: Outcome,
    profile: Profile,
    *,
    via_service: bool,
    rng: random.Random,
    scheduled_for: float | None = None,
    hold: float = 0.0,
    expires_after: float | None = None,
) -> tuple[tuple[float, str], ...]:
    """The statuses a new message goes through, with their offsets in sandbox seconds from creation.

    ``scheduled_for``: a scheduled message, ``scheduled`` until then, ``queued`` from then on.
    ``hold``: seconds it waits in its sender's queue once ``queued``. ``expires_after``: it never leaves the
    queue and ends ``failed`` that many seconds after it was queued (its ValidityPeriod ran out).
    """

    def step() -> float:
        jitter = rng.uniform(-profile.jitter, profile.jitter) if profile.jitter else 0.0
        return max(0.0, profile.step_delay * (1.0 + jitter) * outcome.slowness)

    if scheduled_for is not None:
        timeline = [(0.0, "scheduled"), (scheduled_for, "queued")]
    elif via_service:
        timeline = [(0.0, "accepted"), (step(), "queued")]
    else:
        timeline = [(0.0, "queued")]
    offset = timeline[-1][0]
    if expires_after is not None:
        timeline.append((offset + expires_after, "failed"))
        return tuple(timeline)
    offset += hold
    names = ["sending", "failed"] if outcome.final_status == "failed" else ["sending", "sent"]
    if outcome.final_status not in (None, "failed"):
        names.append(outcome.final_status)
    for name in names:
        offset += step()
        timeline.append((offset, name))
    return tuple(timeline)


def position(timeline: tuple[tuple[float, str], ...], elapsed: float) -> int:
    """Index of the timeline entry in effect ``elapsed`` seconds after creation."""
    index = 0
    for i, (offset, _) in enumerate(timeline):
        if offset <= elapsed:
            index = i
        else:
            break
    return index

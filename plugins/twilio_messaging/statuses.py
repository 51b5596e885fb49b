"""Twilio message statuses: the one place that says which ones end the workflow, and how."""

from __future__ import annotations

from typing import Literal

EndState = Literal["delivered", "failed"]

DELIVERED_STATUSES: frozenset[str] = frozenset({"delivered", "read"})
FAILED_STATUSES: frozenset[str] = frozenset({"undelivered", "failed", "canceled"})
# Documented in the status enum but not in the lifecycle (twilio-node#607); polling it further never helps.
PARTIAL_STATUSES: frozenset[str] = frozenset({"partially_delivered"})
TERMINAL_STATUSES: frozenset[str] = DELIVERED_STATUSES | FAILED_STATUSES | PARTIAL_STATUSES

# "sent" can stay forever when the carrier never returns a delivery receipt.
UNCONFIRMED_SUFFIX = "(delivery unconfirmed)"
UNCONFIRMED_REASON = (
    "Twilio handed the message to the carrier but received no delivery receipt before the status timeout"
)


def is_terminal(status: str | None) -> bool:
    """True when Twilio will not move the message to another status."""
    return status in TERMINAL_STATUSES


def end_state(status: str | None) -> EndState | None:
    """The workflow end task a status leads to, or None while the message is still in flight."""
    if status in DELIVERED_STATUSES:
        return "delivered"
    if status in FAILED_STATUSES or status in PARTIAL_STATUSES:
        return "failed"
    return None


def unconfirmed(status: str | None) -> str:
    """The final status reported for a message that was still in flight when tracking stopped."""
    return f"{status or 'unknown'} {UNCONFIRMED_SUFFIX}"

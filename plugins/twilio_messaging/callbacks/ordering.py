"""Which status callback wins: callbacks are at-least-once and unordered, so each carries a rank.

A status replaces the stored one only when it ranks higher: ``delivered`` arriving before ``sent`` stays
delivered, and a repeated ``sent`` changes nothing. Every final status ranks above every status in flight,
and the first final status stays (Twilio moves a message to one of them, once); only ``read`` (WhatsApp)
follows ``delivered``.
"""

from __future__ import annotations

from twilio_messaging.statuses import TERMINAL_STATUSES

UNKNOWN_RANK = 0
TERMINAL_RANK = 50

_IN_FLIGHT_RANKS = {
    "accepted": 10,
    "scheduled": 10,
    "queued": 20,
    "sending": 30,
    "sent": 40,
    "receiving": 40,
    "received": 40,
}
_AFTER_TERMINAL_RANKS = {"read": 60}


def rank(status: str) -> int:
    if status in _AFTER_TERMINAL_RANKS:
        return _AFTER_TERMINAL_RANKS[status]
    if status in TERMINAL_STATUSES:
        return TERMINAL_RANK
    return _IN_FLIGHT_RANKS.get(status, UNKNOWN_RANK)


def supersedes(new: str, old: str | None) -> bool:
    """Whether a callback with status ``new`` replaces the stored status ``old`` (None: nothing stored)."""
    return old is None or rank(new) > rank(old)

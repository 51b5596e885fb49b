"""Twilio's per-sender queue: messages leave a sender (From number or Messaging Service) at ``--sender-mps``
segments per second.

A message that would wait in the queue longer than its ``ValidityPeriod`` fails with 30001 when that period
runs out, and a create that finds more than ``--sender-max-backlog`` seconds of backlog is refused with
429 / 21611, as Twilio does (errors/30001, errors/21611; ../shared/reference/twilio-messaging-api.md §10).
The queue is decided at creation (a message's departure time is fixed when it is queued), so it costs
nothing while messages wait, like the rest of the delivery simulation. Without ``--sender-mps`` there is no
queue at all.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from sandbox.clock import Clock
from sandbox.errors import TwilioError

DEFAULT_VALIDITY_PERIOD = 36000  # seconds; Twilio's default and maximum (10 h)
DEFAULT_MAX_BACKLOG = 36000.0  # Twilio refuses new messages once a sender has more than 10 h queued


@dataclass(frozen=True)
class Admission:
    """Where a new message stands in its sender's queue (sandbox seconds from its arrival)."""

    wait: float  # until it leaves the queue
    expired: bool  # it would wait longer than its ValidityPeriod: failed / 30001 at ``validity_period``


NO_QUEUE = Admission(0.0, False)


@dataclass
class _Sender:
    next_free: float = 0.0  # sandbox time at which the sender can start the next message
    departures: deque[float] = field(default_factory=deque)  # of the messages still waiting, ascending
    admitted: int = 0
    expired: int = 0
    refused: int = 0


class SenderQueues:
    """The queue of every sender, behind one lock (the event loop is the only writer)."""

    def __init__(self, clock: Clock, mps: float | None, max_backlog: float = DEFAULT_MAX_BACKLOG) -> None:
        self.clock = clock
        self.mps = mps
        self.max_backlog = max_backlog
        self._lock = threading.Lock()
        self._senders: dict[str, _Sender] = {}

    def admit(self, sender: str, segments: int, validity_period: int, arrival: float) -> Admission:
        """Queue a message arriving at sandbox time ``arrival``; raise 429 / 21611 if the backlog is full."""
        if self.mps is None:
            return NO_QUEUE
        with self._lock:
            state = self._senders.setdefault(sender, _Sender())
            backlog = max(0.0, state.next_free - arrival)
            if backlog > self.max_backlog:
                state.refused += 1
                raise TwilioError(
                    429,
                    21611,
                    f"This 'From' number has exceeded the maximum number of queued messages: {backlog:.0f} s "
                    f"of backlog, more than {self.max_backlog:g} s",
                )
            if backlog > validity_period:
                # Twilio drops it from the queue when its validity runs out; it never takes a send slot.
                state.expired += 1
                return Admission(backlog, True)
            start = max(arrival, state.next_free)
            state.next_free = start + segments / self.mps
            state.departures.append(start)
            state.admitted += 1
            return Admission(start - arrival, False)

    def snapshot(self) -> dict[str, Any]:
        now = self.clock.now()
        with self._lock:
            senders = []
            for name, state in sorted(self._senders.items()):
                while state.departures and state.departures[0] <= now:
                    state.departures.popleft()
                senders.append(
                    {
                        "sender": name,
                        "queued": len(state.departures),
                        "backlog_seconds": round(max(0.0, state.next_free - now), 3),
                        "admitted": state.admitted,
                        "expired_30001": state.expired,
                        "refused_21611": state.refused,
                    }
                )
        return {
            "mps": self.mps,
            "max_backlog_seconds": self.max_backlog,
            "time_scale": self.clock.scale,
            "senders": senders,
        }

    def clear(self) -> None:
        with self._lock:
            self._senders.clear()

"""The thread-safe in-memory message store (the event loop and the callback threads share it)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from sandbox.lifecycle import FINAL_STATUSES, Outcome, position


@dataclass
class MessageRecord:
    """One stored message. Its status is derived from ``timeline`` and the clock, never stored."""

    sid: str
    account_sid: str
    to: str
    from_: str | None
    messaging_service_sid: str | None
    body: str
    media_urls: tuple[str, ...]
    status_callback: str | None
    outcome: Outcome
    timeline: tuple[tuple[float, str], ...]
    num_segments: int
    created_wall: float = field(default_factory=time.time)
    created_mono: float = field(default_factory=time.monotonic)
    canceled_at: float | None = None  # offset from creation
    updated_at: float = 0.0  # offset of the last API update (redaction), 0 if none
    time_scale: float = 1.0  # sandbox seconds per real second (sandbox/clock.py)

    def elapsed(self, now_mono: float | None = None) -> float:
        """Sandbox seconds since creation: the timeline's offsets are in sandbox seconds."""
        return ((time.monotonic() if now_mono is None else now_mono) - self.created_mono) * self.time_scale

    def mono_at(self, offset: float) -> float:
        """The real monotonic time at which the message is ``offset`` sandbox seconds old."""
        return self.created_mono + offset / self.time_scale

    def state_at(self, elapsed: float) -> tuple[str, float]:
        """``(status, offset of the change to that status)`` at ``elapsed`` seconds after creation."""
        if self.canceled_at is not None and elapsed >= self.canceled_at:
            return "canceled", self.canceled_at
        offset, status = self.timeline[position(self.timeline, elapsed)]
        return status, offset

    def sent_offset(self, elapsed: float) -> float | None:
        """When the message left Twilio (``sent``, or ``failed`` when the carrier refused it), if it has."""
        if self.canceled_at is not None and elapsed >= self.canceled_at:
            return None
        for offset, status in self.timeline:
            if status in ("sent", "failed") and offset <= elapsed:
                return offset
        return None

    def is_final(self, elapsed: float) -> bool:
        return self.state_at(elapsed)[0] in FINAL_STATUSES


def sent_lag(record: MessageRecord) -> float:
    """The latest offset at which ``record`` can count as sent (``sent_offset``): how much later than its
    creation a DateSent filter may place it."""
    return max((offset for offset, status in record.timeline if status in ("sent", "failed")), default=0.0)


@dataclass
class AccountMessages:
    """One account's messages in creation order, indexed for listing: positions by SID and creation times
    (non-decreasing unless the wall clock stepped back, then ``ordered`` is False and lists scan all)."""

    records: list[MessageRecord] = field(default_factory=list)
    created: list[float] = field(default_factory=list)
    positions: dict[str, int] = field(default_factory=dict)
    max_lag: float = 0.0
    ordered: bool = True

    def append(self, record: MessageRecord) -> None:
        if self.created and record.created_wall < self.created[-1]:
            self.ordered = False
        self.positions[record.sid] = len(self.records)
        self.records.append(record)
        self.created.append(record.created_wall)
        self.max_lag = max(self.max_lag, sent_lag(record))


class MessageStore:
    """Messages by SID, in creation order, with a listing index per account."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._messages: dict[str, MessageRecord] = {}
        self._accounts: dict[str, AccountMessages] = {}

    def add(self, record: MessageRecord) -> None:
        with self._lock:
            self._messages[record.sid] = record
            self._accounts.setdefault(record.account_sid, AccountMessages()).append(record)

    def get(self, account_sid: str, sid: str) -> MessageRecord | None:
        with self._lock:
            record = self._messages.get(sid)
        return record if record is not None and record.account_sid == account_sid else None

    def lookup(self, sid: str) -> MessageRecord | None:
        with self._lock:
            return self._messages.get(sid)

    def account_index(self, account_sid: str) -> AccountMessages:
        """The account's listing index itself, not a copy: the event loop is the only writer, and a list
        request reads it without awaiting, so it cannot change under the reader."""
        with self._lock:
            return self._accounts.get(account_sid) or AccountMessages()

    def all(self) -> list[MessageRecord]:
        with self._lock:
            return list(self._messages.values())

    def delete(self, sid: str) -> bool:
        with self._lock:
            record = self._messages.pop(sid, None)
            if record is None:
                return False
            rebuilt = AccountMessages()
            for kept in self._accounts[record.account_sid].records:
                if kept.sid != sid:
                    rebuilt.append(kept)
            self._accounts[record.account_sid] = rebuilt
            return True

    def clear(self) -> None:
        with self._lock:
            self._messages.clear()
            self._accounts.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._messages)

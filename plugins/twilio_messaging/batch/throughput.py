"""What one sender can drain: Twilio queues messages per sender and sends ``sender_mps`` segments a second.

A US long code sends about 1 segment/s, a short code 100+/s, a Messaging Service the sum of its senders.
A queued message that waits longer than its ValidityPeriod (Twilio's default and maximum: 36,000 s = 10 h)
fails with 30001. So a batch whose segments need longer than that to drain is refused before anything is
sent, unless ``pace`` spreads the sends to the sender's rate (then nothing waits in Twilio's queue).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from twilio_messaging.validation import InvalidInput

VALIDITY_PERIOD_S = 36_000.0  # Twilio's default (and maximum) ValidityPeriod

# GSM 03.38: the basic set (1 septet) and the extension set (2 septets, ESC + char).
_GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENSION = frozenset("^{}\\[~]|€\f")


def segments(body: str) -> int:
    """How many SMS segments Twilio bills ``body`` as: GSM-7 160/153 septets, else UCS-2 70/67 units."""
    if all(ch in _GSM_BASIC or ch in _GSM_EXTENSION for ch in body):
        septets = sum(2 if ch in _GSM_EXTENSION else 1 for ch in body)
        return 1 if septets <= 160 else math.ceil(septets / 153)
    units = len(body.encode("utf-16-le")) // 2  # an emoji is two UTF-16 code units
    return 1 if units <= 70 else math.ceil(units / 67)


@dataclass
class DrainEstimate:
    """Counts, row by row in sending order, how long a sender needs and how many messages would expire."""

    mps: float
    validity: float = VALIDITY_PERIOD_S
    messages: int = 0
    segments: int = 0
    expiring: int = 0
    first_expiring: int | None = field(default=None)

    def add(self, body: str) -> int:
        """Count one message; returns its segment offset (segments queued before it)."""
        offset = self.segments
        self.messages += 1
        self.segments += segments(body)
        if offset / self.mps > self.validity:
            self.expiring += 1
            if self.first_expiring is None:
                self.first_expiring = self.messages
        return offset

    @property
    def seconds(self) -> float:
        return self.segments / self.mps

    def refusal(self) -> InvalidInput | None:
        """The error to raise when part of the batch would wait longer than ValidityPeriod, else None."""
        if not self.expiring:
            return None
        fits = int(self.validity * self.mps)
        return InvalidInput(
            "sender_mps",
            f"at {self.mps:g} segments/s the sender needs {_duration(self.seconds)} for these "
            f"{self.messages:,} messages ({self.segments:,} segments), but Twilio drops a message that waits "
            f"longer than its ValidityPeriod ({_duration(self.validity)}): {self.expiring:,} messages would "
            f"fail with 30001. Send at most about {fits:,} segments per run, add senders (a Messaging "
            "Service with more numbers, then a higher sender_mps), use a sender with a higher rate (a short "
            "code), or set pace: true to spread the sends at the sender's rate",
        )


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def not_before(anchor: float, offset_segments: int, mps: float) -> float:
    """With ``pace``: the time (on the clock of ``anchor``, e.g. epoch seconds of prepare, shared by every
    chunk task) before which the message with this segment offset is not sent. Chunks sending in parallel
    keep the sender's rate together, and a late chunk catches up without ever getting ahead of it."""
    return anchor + offset_segments / mps

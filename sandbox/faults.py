"""Fault injection: on the Twilio API routes latency, 429s, 5xx, lost responses and a concurrency limit; on
status callbacks drops, duplicates, reordering and a delay (sandbox/callbacks.py applies those)."""

from __future__ import annotations

import random
import threading
from collections import Counter
from dataclasses import asdict, dataclass, fields
from typing import Any

LOST_RESPONSE_MODES = ("500", "drop")
# Longer than any client's timeout, and small enough for asyncio.sleep and the timer heap.
MAX_LATENCY_MS = 60_000
MAX_CALLBACK_DELAY_MS = 600_000


@dataclass
class FaultConfig:
    """The runtime-switchable fault settings (``PUT /_sandbox/faults`` takes any subset of these keys)."""

    latency_ms: int = 0
    rate_429: float = 0.0
    rate_5xx: float = 0.0
    rate_lost_response: float = 0.0
    lost_response_mode: str = "500"
    concurrency_limit: int | None = None
    retry_after: int | None = None
    seed: int | None = None
    # Status callbacks: the fraction never sent, sent twice (same idempotency token, as a retry after a lost
    # answer), and held back until the message's next callback has gone; and a delay added to every one.
    rate_callback_drop: float = 0.0
    rate_callback_duplicate: float = 0.0
    rate_callback_reorder: float = 0.0
    callback_delay_ms: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check(name: str, value: Any) -> Any:
    """Validate one setting; raise ValueError naming the field and the rule."""
    if name in ("latency_ms", "callback_delay_ms"):
        high = MAX_LATENCY_MS if name == "latency_ms" else MAX_CALLBACK_DELAY_MS
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= high:
            raise ValueError(f"{name} must be an integer between 0 and {high}")
    elif name.startswith("rate_"):
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be a number between 0 and 1")
        value = float(value)
    elif name == "lost_response_mode":
        if value not in LOST_RESPONSE_MODES:
            raise ValueError(f"lost_response_mode must be one of {', '.join(LOST_RESPONSE_MODES)}")
    elif name in ("concurrency_limit", "retry_after"):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be null or an integer >= 1")
    elif name == "seed" and value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise ValueError("seed must be null or an integer")
    return value


class FaultInjector:
    """Decides, per request, which fault (if any) to inject; tracks in-flight requests per account."""

    def __init__(self, config: FaultConfig | None = None) -> None:
        self._lock = threading.Lock()
        self._defaults = FaultConfig(**asdict(config or FaultConfig()))
        self.config = FaultConfig(**asdict(self._defaults))
        self._rng = random.Random(self.config.seed)
        self._in_flight: Counter[str] = Counter()

    def update(self, changes: dict[str, Any]) -> FaultConfig:
        known = {f.name for f in fields(FaultConfig)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(
                f"unknown fault setting(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        checked = {name: _check(name, value) for name, value in changes.items()}
        with self._lock:
            for name, value in checked.items():
                setattr(self.config, name, value)
            if "seed" in checked:
                self._rng = random.Random(checked["seed"])
            return FaultConfig(**asdict(self.config))

    def clear(self) -> FaultConfig:
        """All faults off (the start-up flags are not restored: DELETE means off)."""
        with self._lock:
            self.config = FaultConfig()
            self._rng = random.Random()
            return FaultConfig(**asdict(self.config))

    def snapshot(self) -> FaultConfig:
        with self._lock:
            return FaultConfig(**asdict(self.config))

    def roll(self, rate: float) -> bool:
        if rate <= 0.0:
            return False
        with self._lock:
            return self._rng.random() < rate

    def pick_5xx(self) -> int:
        with self._lock:
            return self._rng.choice((500, 503))

    def enter(self, account_sid: str) -> bool:
        """Count a request in flight; False (and not counted) when it would exceed the limit."""
        with self._lock:
            limit = self.config.concurrency_limit
            if limit is not None and self._in_flight[account_sid] >= limit:
                return False
            self._in_flight[account_sid] += 1
            return True

    def leave(self, account_sid: str) -> None:
        with self._lock:
            self._in_flight[account_sid] -= 1
            if self._in_flight[account_sid] <= 0:
                del self._in_flight[account_sid]

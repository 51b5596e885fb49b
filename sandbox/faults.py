"""Fault injection for the Twilio API routes: latency, 429s, 5xx, lost responses, a concurrency limit."""

from __future__ import annotations

import random
import threading
from collections import Counter
from dataclasses import asdict, dataclass, fields
from typing import Any

LOST_RESPONSE_MODES = ("500", "drop")


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check(name: str, value: Any) -> Any:
    """Validate one setting; raise ValueError naming the field and the rule."""
    if name == "latency_ms":
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError("latency_ms must be an integer >= 0")
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

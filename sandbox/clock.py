"""The sandbox clock: real time, optionally compressed (``--time-scale 60`` = one sandbox minute per second).

Every duration the sandbox simulates (step delays, the wait until ``SendAt``, the sender queue,
``ValidityPeriod``) is in sandbox seconds; rendered dates are a message's creation time plus sandbox seconds,
so a scheduled message shows ``date_sent`` = its ``SendAt`` however fast the clock runs.
"""

from __future__ import annotations

import time


class Clock:
    def __init__(self, scale: float = 1.0) -> None:
        if scale <= 0:
            raise ValueError("time scale must be > 0")
        self.scale = scale
        self._start = time.monotonic()

    def now(self, mono: float | None = None) -> float:
        """Sandbox seconds since start-up (at the real monotonic time ``mono``, default now)."""
        return ((time.monotonic() if mono is None else mono) - self._start) * self.scale

    def to_mono(self, sandbox_time: float) -> float:
        """The real monotonic time at which the sandbox clock reads ``sandbox_time``."""
        return self._start + sandbox_time / self.scale

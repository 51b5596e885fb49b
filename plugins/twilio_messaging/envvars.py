"""Reading deployment settings from environment variables: one parser, one wording for its errors."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence


def seconds(names: str | Sequence[str], default: float, environ: Mapping[str, str] | None = None) -> float:
    """The first of ``names`` that is set, as a positive number (of seconds, or of anything else); else
    ``default``. A set but malformed or non-positive value raises ``ValueError`` naming the variable."""
    env = os.environ if environ is None else environ
    for name in (names,) if isinstance(names, str) else names:
        raw = env.get(name, "").strip()
        if not raw:
            continue
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"{name} must be a number of seconds, got {raw!r}") from None
        if value <= 0:
            raise ValueError(f"{name} must be a positive number of seconds, got {raw!r}")
        return value
    return default


def positive_int(name: str, default: int, environ: Mapping[str, str] | None = None) -> int:
    """``name`` as a whole number of at least 1, else ``default``."""
    env = os.environ if environ is None else environ
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, got {raw!r}") from None
    if value < 1:
        raise ValueError(f"{name} must be at least 1, got {raw!r}")
    return value

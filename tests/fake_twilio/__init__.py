"""Deprecated alias of the top-level ``sandbox`` package, kept for one release.

The Twilio sandbox moved to ``sandbox/`` (run it with ``python -m sandbox``). ``python -m tests.fake_twilio``
and ``from tests.fake_twilio.testing import run_sandbox`` keep working until the next release.
"""

from __future__ import annotations

from sandbox import (
    API_VERSION,
    DEFAULT_ACCOUNT_SID,
    DEFAULT_API_KEY_SECRET,
    DEFAULT_API_KEY_SID,
    DEFAULT_AUTH_TOKEN,
)

__all__ = [
    "API_VERSION",
    "DEFAULT_ACCOUNT_SID",
    "DEFAULT_API_KEY_SECRET",
    "DEFAULT_API_KEY_SID",
    "DEFAULT_AUTH_TOKEN",
]

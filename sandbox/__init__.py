"""A contract-true fake of Twilio's Messages API (2010-04-01): the offline Twilio of tests, demo, benchmarks.

Run it with ``python -m sandbox --port 8099`` (``make sandbox``); see README.md in this folder.
"""

from __future__ import annotations

DEFAULT_ACCOUNT_SID = "AC0123456789abcdef0123456789abcdef"
DEFAULT_AUTH_TOKEN = "sandbox-auth-token"
DEFAULT_API_KEY_SID = "SK0123456789abcdef0123456789abcdef"
DEFAULT_API_KEY_SECRET = "sandbox-api-key-secret"
API_VERSION = "2010-04-01"

__all__ = [
    "API_VERSION",
    "DEFAULT_ACCOUNT_SID",
    "DEFAULT_API_KEY_SECRET",
    "DEFAULT_API_KEY_SID",
    "DEFAULT_AUTH_TOKEN",
]

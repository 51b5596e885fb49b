"""The deployment settings of status callbacks, read from the environment (one place for each).

- ``TWILIO_CALLBACK_BASE_URL``: the public base URL Twilio reaches the api-server at (scheme, host and any
  path prefix an ingress adds, e.g. ``https://airflow.example.com``). Set, it turns callbacks on: sends ask
  Twilio to call ``<base>/twilio-messages/status-callback``, and the receiver checks signatures against that
  URL (the one Twilio signed), not the one a proxy hands to the api-server. Unset, callbacks are off and
  the receiver checks signatures against the URL it sees.
- ``TWILIO_CALLBACK_STORE``: where callbacks are kept (``twilio_messaging.callbacks.store``): ``sqlite:///``
  a file (the default, ``$AIRFLOW_HOME/twilio_callbacks.sqlite3``: one machine), ``redis://`` or
  ``postgresql://`` for a distributed deployment. Every api-server, worker and triggerer must see the same.
- ``TWILIO_CALLBACK_TTL``: seconds a stored status is kept (default 2 days, beyond the 24 h status timeout).
- ``TWILIO_CALLBACK_MAX_BODY``: the largest callback body accepted, in bytes (default 16 KiB; Twilio's
  message status callbacks are well under 1 KiB).
- ``TWILIO_CALLBACK_CONN_ID``: the connection whose auth token signs callbacks (default ``twilio_default``).
- ``TWILIO_CALLBACK_GRACE``: with callbacks on, seconds after sending during which tracking waits for a
  callback and does not ask Twilio (default 300: most messages are final within a minute); after it,
  tracking polls as it does without callbacks, so a late or lost callback costs time, never an outcome.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from twilio_messaging import envvars
from twilio_messaging.connection import DEFAULT_CONN_ID

BASE_URL_ENV = "TWILIO_CALLBACK_BASE_URL"
STORE_ENV = "TWILIO_CALLBACK_STORE"
TTL_ENV = "TWILIO_CALLBACK_TTL"
MAX_BODY_ENV = "TWILIO_CALLBACK_MAX_BODY"
CONN_ID_ENV = "TWILIO_CALLBACK_CONN_ID"
GRACE_ENV = "TWILIO_CALLBACK_GRACE"

# Where the plugin's app is mounted, and the receiver's path in it (the stable interface of the guide).
URL_PREFIX = "/twilio-messages"
RECEIVER_PATH = "/status-callback"

DEFAULT_TTL = 2 * 24 * 3600.0
DEFAULT_MAX_BODY = 16 * 1024
DEFAULT_GRACE = 300.0
STORE_FILE = "twilio_callbacks.sqlite3"


@dataclass(frozen=True)
class CallbackSettings:
    base_url: str | None
    store_url: str
    ttl: float
    max_body: int
    conn_id: str
    grace: float = DEFAULT_GRACE

    @property
    def enabled(self) -> bool:
        """Callbacks are asked for only when Twilio has a URL to call."""
        return self.base_url is not None

    @property
    def receiver_url(self) -> str | None:
        """The URL sends give Twilio as ``StatusCallback``, and that Twilio signs."""
        return None if self.base_url is None else self.base_url + URL_PREFIX + RECEIVER_PATH


def _base_url(raw: str) -> str | None:
    raw = raw.strip().rstrip("/")
    if not raw:
        return None
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ValueError(
            f"{BASE_URL_ENV} must be an http(s) URL with a host and no query, e.g. "
            f"https://airflow.example.com, got {raw!r}"
        )
    return raw


def default_store_url(environ: Mapping[str, str]) -> str:
    home = environ.get("AIRFLOW_HOME") or str(Path.home() / "airflow")
    return f"sqlite:///{Path(home) / STORE_FILE}"


def callback_settings(environ: Mapping[str, str] | None = None) -> CallbackSettings:
    """The settings as the environment gives them; a malformed value raises ``ValueError`` naming it."""
    env = os.environ if environ is None else environ
    return CallbackSettings(
        base_url=_base_url(env.get(BASE_URL_ENV, "")),
        store_url=env.get(STORE_ENV, "").strip() or default_store_url(env),
        ttl=envvars.seconds(TTL_ENV, DEFAULT_TTL, env),
        max_body=envvars.positive_int(MAX_BODY_ENV, DEFAULT_MAX_BODY, env),
        conn_id=env.get(CONN_ID_ENV, "").strip() or DEFAULT_CONN_ID,
        grace=envvars.seconds(GRACE_ENV, DEFAULT_GRACE, env),
    )

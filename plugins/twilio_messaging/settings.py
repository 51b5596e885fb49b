"""The deployment's settings: every environment variable the project reads, with its default, and one parser.

The provider's building blocks (hook, operator, sensor, notifier) read none of these: they take their
settings as arguments. The DAG files read them here when they are parsed and hand them down; the one
exception is ``TWILIO_STORAGE``, the object-storage base every run folder lives under, read by
``twilio_messaging.storage`` when a folder is needed.

Storage (read by ``twilio_messaging.storage`` whenever a run folder is needed):

- ``TWILIO_STORAGE`` = ``file://$AIRFLOW_HOME/twilio_messaging``: the base of the run folders (status
  timeline, batch files, notifier markers); ``s3://…`` or ``gs://…`` when tasks run on several hosts.

The send-and-track DAG (read when the file is parsed):

- ``TWILIO_DEFAULT_FROM`` = none: the trigger form's ``from``; a malformed one fails the parse;
- ``TWILIO_POKE_INTERVAL`` = 60 s: checkStatus' first poke interval;
- ``TWILIO_MAX_WAIT`` = 900 s: checkStatus' backoff cap (at least the poke interval);
- ``TWILIO_STATUS_TIMEOUT`` = 86,400 s (24 h): how long one message is tracked, counted from the send.

The batch DAG (read when the file is parsed, but ``TWILIO_BATCH_DATA_DIRS``: when prepare runs):

- ``TWILIO_BATCH_SCHEDULE`` = ``@daily``: cron or preset; ``none`` for manual runs only;
- ``TWILIO_BATCH_POOL`` = ``twilio_api``: the pool that bounds Twilio concurrency across all DAGs;
- ``TWILIO_BATCH_CONCURRENCY`` = 10: requests in flight per chunk task = pool slots each task holds;
- ``TWILIO_BATCH_POKE_INTERVAL`` = ``TWILIO_POKE_INTERVAL``, else 60 s: between status pokes of a chunk;
- ``TWILIO_BATCH_FIRST_FETCH_AFTER`` = the batch poke interval: no status fetch sooner after sending;
- ``TWILIO_BATCH_STATUS_TIMEOUT`` = 3,600 s (1 h): then a message still in flight is unconfirmed;
- ``TWILIO_BATCH_SEND_TIMEOUT`` = 900 s: a chunk task stops retrying unsent rows; its retry resumes;
- ``TWILIO_BATCH_FROM`` = ``+15005550006``: the sender when the run gives neither ``from`` nor a service;
- ``TWILIO_BATCH_DATA_DIRS`` = the project's ``include/``: the folders (``:``-separated) recipients and
  opt-out files may be read from.

The Messages tab (read by the api-server when it pages a batch report):

- ``TWILIO_UI_CACHE_DIR`` = ``<temp dir>/twilio-messages-ui``: where report indexes are kept.

Status callbacks (every component must see the same values; read by the DAG files when parsed, by the
receiver on the api-server per callback, and ``TWILIO_CALLBACK_STORE`` by ``callbacks.store`` when the store
is opened, like ``TWILIO_STORAGE``, since it may hold a password and is never serialized):

- ``TWILIO_CALLBACK_BASE_URL`` = none (callbacks off): the public base URL Twilio reaches the api-server at
  (scheme, host and any path prefix an ingress adds). Set, sends ask Twilio to call
  ``<base>/twilio-messages/status-callback``, and the receiver checks signatures against that URL (the one
  Twilio signed), not the one a proxy hands on;
- ``TWILIO_CALLBACK_STORE`` = ``sqlite:///$AIRFLOW_HOME/twilio_callbacks.sqlite3``: where callbacks are kept;
  ``redis://…`` (or ``postgresql://…``) when components run on several hosts;
- ``TWILIO_CALLBACK_GRACE`` = 300 s: with callbacks on, how long after sending tracking waits for a callback
  before it asks Twilio (after it, tracking polls as without callbacks);
- ``TWILIO_CALLBACK_POKE_INTERVAL`` = 2 s: checkStatus' first poke interval with callbacks on (a poke then
  reads the store, and asks Twilio only after the grace; backoff as usual). Measured (bench/README.md): 2 s
  ends runs sooner than 5 s, and 1 s hardly sooner than 2 s with more of the short reschedules that expose
  apache/airflow#71172;
- ``TWILIO_CALLBACK_TTL`` = 2 days: how long a stored status is kept;
- ``TWILIO_CALLBACK_MAX_BODY`` = 16,384 bytes: the largest callback body the receiver accepts;
- ``TWILIO_CALLBACK_CONN_ID`` = ``twilio_default``: the connection whose password (the auth token) signs.

The two status timeouts differ on purpose and have their own names, neither falling back on the other: one
message is followed for a day (carriers retry for hours), a batch of reminders for an hour (a reminder that
arrives hours late is a failure to report, and a batch run holds its pool slots while it tracks).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from twilio_messaging.validation import InvalidInput, validate_message

# ---- parsers -----------------------------------------------------------------------------------------


def _env(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if environ is None else environ


def seconds(names: str | Sequence[str], default: float, environ: Mapping[str, str] | None = None) -> float:
    """The first of ``names`` that is set, as a positive number (of seconds, or of anything else); else
    ``default``. A set but malformed or non-positive value raises ``ValueError`` naming the variable."""
    env = _env(environ)
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
    raw = _env(environ).get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, got {raw!r}") from None
    if value < 1:
        raise ValueError(f"{name} must be at least 1, got {raw!r}")
    return value


# ---- storage -----------------------------------------------------------------------------------------

STORAGE_ENV = "TWILIO_STORAGE"
STORAGE_DIR = "twilio_messaging"  # under $AIRFLOW_HOME when TWILIO_STORAGE is not set


def storage_url(environ: Mapping[str, str] | None = None) -> str:
    """``$TWILIO_STORAGE``, else ``file://$AIRFLOW_HOME/twilio_messaging``."""
    env = _env(environ)
    url = env.get(STORAGE_ENV, "").strip()
    if not url:
        home = env.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow")
        url = "file://" + os.path.join(os.path.abspath(home), STORAGE_DIR)
    return url.rstrip("/")


# ---- the pool ----------------------------------------------------------------------------------------

# Bounds Twilio API concurrency across every run of every DAG
# (create it once: `airflow pools set twilio_api 50 "Twilio API concurrency"`).
API_POOL = "twilio_api"

# ---- the send-and-track workflow -----------------------------------------------------------------------

DEFAULT_FROM_ENV = "TWILIO_DEFAULT_FROM"
POKE_INTERVAL_ENV = "TWILIO_POKE_INTERVAL"
STATUS_TIMEOUT_ENV = "TWILIO_STATUS_TIMEOUT"
MAX_WAIT_ENV = "TWILIO_MAX_WAIT"
DEFAULT_POKE_INTERVAL = 60.0  # most messages are final within a minute; a poke is one GET
DEFAULT_STATUS_TIMEOUT = 24 * 3600.0  # carriers may retry for hours; after a day "sent" is not going to move
DEFAULT_MAX_WAIT = 15 * 60.0  # backoff cap: a late receipt is noticed within 15 minutes
SENSOR_RETRIES = 3  # survives apache/airflow#71172 (a reschedule sensor failed by a scheduler race)


@dataclass(frozen=True)
class TrackingSettings:
    """How ``checkStatus`` polls: intervals and the total time, in seconds."""

    poke_interval: float = DEFAULT_POKE_INTERVAL
    timeout: float = DEFAULT_STATUS_TIMEOUT
    max_wait: float = DEFAULT_MAX_WAIT
    exponential_backoff: bool = True
    retries: int = SENSOR_RETRIES

    @property
    def retry_delay(self) -> timedelta:
        # A retry after the scheduler race should resume polling at the normal pace, not later.
        return timedelta(seconds=min(self.poke_interval, 60.0))


def tracking_settings(environ: Mapping[str, str] | None = None) -> TrackingSettings:
    """Settings from TWILIO_POKE_INTERVAL / TWILIO_STATUS_TIMEOUT / TWILIO_MAX_WAIT, else the defaults."""
    env = _env(environ)
    poke = seconds(POKE_INTERVAL_ENV, DEFAULT_POKE_INTERVAL, env)
    return TrackingSettings(
        poke_interval=poke,
        timeout=seconds(STATUS_TIMEOUT_ENV, DEFAULT_STATUS_TIMEOUT, env),
        max_wait=max(poke, seconds(MAX_WAIT_ENV, DEFAULT_MAX_WAIT, env)),
    )


def default_from(environ: Mapping[str, str] | None = None) -> str | None:
    """The deployment's sender ($TWILIO_DEFAULT_FROM), checked now so a typo fails the DAG's parse."""
    value = _env(environ).get(DEFAULT_FROM_ENV, "").strip()
    if not value:
        return None
    try:
        return validate_message("+15005550006", value, "x").from_  # the rules of a real send's From
    except InvalidInput as exc:
        raise ValueError(f"{DEFAULT_FROM_ENV}={value!r}: {exc.rule}") from None


# ---- the batch DAG -----------------------------------------------------------------------------------

BATCH_DEFAULT_STATUS_TIMEOUT = 3600.0  # see the module docstring: a batch is followed for an hour
BATCH_DEFAULT_SEND_TIMEOUT = 900.0
BATCH_DEFAULT_CONCURRENCY = 10
BATCH_DEFAULT_SCHEDULE = "@daily"
BATCH_DEFAULT_FROM = "+15005550006"
DATA_DIRS_ENV = "TWILIO_BATCH_DATA_DIRS"


@dataclass(frozen=True)
class BatchSettings:
    schedule: str | None
    pool: str
    concurrency: int
    poke_interval: float
    first_fetch_after: float
    status_timeout: float
    send_timeout: float
    default_from: str
    # Status callbacks (None: off): the StatusCallback of sends that give none, and how long after a chunk
    # is sent its tracking waits for callbacks before it asks Twilio for the rest.
    status_callback: str | None = None
    callback_grace: float | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> BatchSettings:
        env = _env(environ)
        schedule = env.get("TWILIO_BATCH_SCHEDULE", BATCH_DEFAULT_SCHEDULE).strip()
        poke = seconds(("TWILIO_BATCH_POKE_INTERVAL", POKE_INTERVAL_ENV), DEFAULT_POKE_INTERVAL, env)
        callbacks = callback_settings(env)
        return cls(
            schedule=None if schedule.lower() in ("", "none", "null") else schedule,
            pool=env.get("TWILIO_BATCH_POOL", API_POOL).strip() or API_POOL,
            concurrency=positive_int("TWILIO_BATCH_CONCURRENCY", BATCH_DEFAULT_CONCURRENCY, env),
            poke_interval=poke,
            first_fetch_after=seconds(("TWILIO_BATCH_FIRST_FETCH_AFTER",), poke, env),
            status_timeout=seconds(("TWILIO_BATCH_STATUS_TIMEOUT",), BATCH_DEFAULT_STATUS_TIMEOUT, env),
            send_timeout=seconds(("TWILIO_BATCH_SEND_TIMEOUT",), BATCH_DEFAULT_SEND_TIMEOUT, env),
            default_from=env.get("TWILIO_BATCH_FROM", BATCH_DEFAULT_FROM),
            status_callback=callbacks.receiver_url,
            callback_grace=callbacks.grace if callbacks.enabled else None,
        )


def batch_data_dirs(project_dir: Path, environ: Mapping[str, str] | None = None) -> list[Path]:
    """Folders recipients and opt-out files may come from: ``$TWILIO_BATCH_DATA_DIRS`` or ``include/``."""
    raw = _env(environ).get(DATA_DIRS_ENV, "")
    dirs = [Path(part).expanduser() for part in raw.split(os.pathsep) if part.strip()]
    return [d.resolve() for d in (dirs or [project_dir / "include"])]


# ---- the Messages tab --------------------------------------------------------------------------------

UI_CACHE_DIR_ENV = "TWILIO_UI_CACHE_DIR"


# ---- status callbacks --------------------------------------------------------------------------------

CALLBACK_BASE_URL_ENV = "TWILIO_CALLBACK_BASE_URL"
CALLBACK_STORE_ENV = "TWILIO_CALLBACK_STORE"
CALLBACK_GRACE_ENV = "TWILIO_CALLBACK_GRACE"
CALLBACK_POKE_INTERVAL_ENV = "TWILIO_CALLBACK_POKE_INTERVAL"
CALLBACK_TTL_ENV = "TWILIO_CALLBACK_TTL"
CALLBACK_MAX_BODY_ENV = "TWILIO_CALLBACK_MAX_BODY"
CALLBACK_CONN_ID_ENV = "TWILIO_CALLBACK_CONN_ID"
# The receiver's path on the api-server: the plugin's app is mounted at /twilio-messages (ui/app.py).
CALLBACK_PATH = "/twilio-messages/status-callback"
DEFAULT_CALLBACK_GRACE = 300.0
DEFAULT_CALLBACK_POKE_INTERVAL = 2.0
DEFAULT_CALLBACK_TTL = 2 * 24 * 3600.0
DEFAULT_CALLBACK_MAX_BODY = 16 * 1024
CALLBACK_STORE_FILE = "twilio_callbacks.sqlite3"


@dataclass(frozen=True)
class CallbackSettings:
    base_url: str | None
    store_url: str
    ttl: float = DEFAULT_CALLBACK_TTL
    max_body: int = DEFAULT_CALLBACK_MAX_BODY
    conn_id: str = "twilio_default"
    grace: float = DEFAULT_CALLBACK_GRACE
    poke_interval: float = DEFAULT_CALLBACK_POKE_INTERVAL

    @property
    def enabled(self) -> bool:
        """Callbacks are asked for only when Twilio has a URL to call."""
        return self.base_url is not None

    @property
    def receiver_url(self) -> str | None:
        """The URL sends give Twilio as ``StatusCallback``, and that Twilio signs."""
        return None if self.base_url is None else self.base_url + CALLBACK_PATH


def _callback_base_url(raw: str) -> str | None:
    raw = raw.strip().rstrip("/")
    if not raw:
        return None
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ValueError(
            f"{CALLBACK_BASE_URL_ENV} must be an http(s) URL with a host and no query, e.g. "
            f"https://airflow.example.com, got {raw!r}"
        )
    return raw


def callback_settings(environ: Mapping[str, str] | None = None) -> CallbackSettings:
    """The callback settings; a malformed value raises ``ValueError`` naming its variable."""
    env = _env(environ)
    home = env.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow")
    return CallbackSettings(
        base_url=_callback_base_url(env.get(CALLBACK_BASE_URL_ENV, "")),
        store_url=env.get(CALLBACK_STORE_ENV, "").strip()
        or f"sqlite:///{Path(home).resolve() / CALLBACK_STORE_FILE}",
        ttl=seconds(CALLBACK_TTL_ENV, DEFAULT_CALLBACK_TTL, env),
        max_body=positive_int(CALLBACK_MAX_BODY_ENV, DEFAULT_CALLBACK_MAX_BODY, env),
        conn_id=env.get(CALLBACK_CONN_ID_ENV, "").strip() or "twilio_default",
        grace=seconds(CALLBACK_GRACE_ENV, DEFAULT_CALLBACK_GRACE, env),
        poke_interval=seconds(CALLBACK_POKE_INTERVAL_ENV, DEFAULT_CALLBACK_POKE_INTERVAL, env),
    )

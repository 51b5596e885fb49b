"""What senders and trackers do with callbacks: ask for them, read them first, poll only as a backup.

Plain functions the operator, the sensor, the trigger and the batch call (and tests call without Airflow):

- ``status_callback_url``: the ``StatusCallback`` a send gives Twilio: the user's own when given, else the
  receiver when callbacks are on (``TWILIO_CALLBACK_BASE_URL``), else none.
- ``final_from_callbacks``: the final statuses the store holds for some SIDs. A store that cannot be
  reached reads as empty (tracking then polls, as it does with callbacks off).
- ``poll_due``: whether tracking should ask Twilio now: always with callbacks off; with them on, once the
  grace period after sending has passed without a final callback (a late or lost one).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from twilio_messaging.callbacks.store import StatusUpdate, StoreError, open_store
from twilio_messaging.settings import callback_settings
from twilio_messaging.statuses import FAILED_STATUSES, PARTIAL_STATUSES, is_terminal

log = logging.getLogger(__name__)


def status_callback_url(given: str | None, environ: Mapping[str, str] | None = None) -> str | None:
    """The user's StatusCallback when given (they then receive the callbacks, and tracking polls), else
    the receiver's URL when callbacks are on."""
    return given or callback_settings(environ).receiver_url


def final_from_callbacks(sids: Iterable[str]) -> dict[str, StatusUpdate]:
    """Final statuses called back for ``sids``; {} when the store is unreachable (polling covers it)."""
    wanted = [sid for sid in sids if sid]
    if not wanted:
        return {}
    try:
        found = open_store().get_many(wanted)
    except (StoreError, ValueError) as exc:
        log.warning("Callback store not readable (%s); polling Twilio instead", exc)
        return {}
    return {sid: update for sid, update in found.items() if is_terminal(update.status)}


def needs_fetch(update: StatusUpdate) -> bool:
    """A failure's callback has a code but no error text: a fetch gives the same report polling would."""
    return update.status in FAILED_STATUSES or update.status in PARTIAL_STATUSES


def poll_due(sent_at: datetime | None, grace: float | None, now: datetime | None = None) -> bool:
    """Whether to ask Twilio now: always with callbacks off (``grace`` None) or the send time unknown;
    else once ``grace`` seconds have passed since sending."""
    if grace is None or sent_at is None:
        return True
    return ((now or datetime.now(UTC)) - sent_at).total_seconds() >= grace

"""Tracking one chunk: each poke reads the status of every message not yet final.

A poke with many messages in flight lists the chunk's window of Twilio's message list (``sweep``: up to
1,000 statuses per request) and fetches by SID, concurrently, what the list did not show; a poke with few
left fetches them by SID.

A reschedule-mode sensor loses its own XComs each time it starts again (apache/airflow#39532), so what
a poke learned is kept in a ``TrackStore``: the DAG keeps it next to the chunk in storage
(``tracking/chunk-N.json``, ``StorageStore``), readable from any worker.
Only final statuses are stored: a message that reached one is never fetched again (a list page may still
show it among the others). Together with a first poke no earlier than ``first_fetch_after`` seconds after
sending (a message is rarely final sooner), that keeps the requests per message at one or below.

``track_poke`` is one poke of the DAG's track_chunk sensor, as the batch's plan says.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from airflow.sdk import ObjectStoragePath

from twilio_messaging.batch.layout import RunLayout
from twilio_messaging.batch.ledger import jsonl
from twilio_messaging.batch.plan import load_results, missing, read_plan
from twilio_messaging.batch.records import (
    MessageRecord,
    SendCounts,
    TrackCounts,
    final_record,
    message_record,
)
from twilio_messaging.batch.sweep import ListWindow, SweepResult, sweep, worth_listing
from twilio_messaging.batch.throttle import run_workers, throttled_client
from twilio_messaging.callbacks.tracking import final_from_callbacks, needs_fetch
from twilio_messaging.client import AsyncTwilioClient
from twilio_messaging.connection import TwilioConnection
from twilio_messaging.contract import DELIVERED, FAILED, REJECTED, UNCONFIRMED
from twilio_messaging.errors import ACCOUNT_WIDE_STATUSES, TwilioAPIError, TwilioUnreachableError
from twilio_messaging.hooks.twilio import TwilioHook
from twilio_messaging.settings import BatchSettings
from twilio_messaging.statuses import is_terminal
from twilio_messaging.storage import open_atomic, read_json, write_json_atomic

log = logging.getLogger(__name__)

# Status facts learned so far, by SID: [status, error_code, error_message].
Known = dict[str, list[Any]]


class TrackStore(Protocol):
    def load(self) -> Known: ...

    def save(self, known: Known) -> None: ...

    def clear(self) -> None: ...


class StorageStore:
    """A ``TrackStore`` in one JSON file in object storage, written atomically."""

    def __init__(self, path: ObjectStoragePath) -> None:
        self.path = path

    def load(self) -> Known:
        value = read_json(self.path, {})
        return dict(value) if isinstance(value, dict) else {}

    def save(self, known: Known) -> None:
        write_json_atomic(self.path, known)

    def clear(self) -> None:
        with suppress(FileNotFoundError):  # nothing left to clean
            self.path.unlink()


@dataclass
class PokeResult:
    done: bool
    records: list[MessageRecord]
    fetched: int  # messages fetched by SID
    pending: int
    listed: int = 0  # messages shown by list pages
    pages: int = 0
    from_list: int = 0  # pending messages whose status a list page gave


def pending_sids(records: Sequence[MessageRecord], known: Known) -> list[str]:
    """SIDs whose last known status is not final (rejected rows have no SID and need no tracking)."""
    out = []
    for record in records:
        sid = record.get("sid")
        if not sid:
            continue
        status = known[sid][0] if sid in known else record.get("status")
        if not is_terminal(status):
            out.append(sid)
    return out


def apply_known(records: Sequence[MessageRecord], known: Known) -> list[MessageRecord]:
    """The records with every known status filled in (statuses never move backwards: known wins)."""
    out: list[MessageRecord] = []
    for record in records:
        sid = record.get("sid")
        if sid and sid in known:
            status, code, message = known[sid]
            out.append(message_record(record["row"], record["to"], sid, status, code, message))
        else:
            out.append(record)
    return out


async def fetch_statuses(
    client: AsyncTwilioClient, sids: Sequence[str], concurrency: int, found: Known | None = None
) -> Known:
    """Fetch ``sids`` with ``concurrency`` workers into ``found`` (filled as answers arrive); a message
    that cannot be fetched now is left out."""
    queue: asyncio.Queue[str] = asyncio.Queue()
    for sid in sids:
        queue.put_nowait(sid)
    found = {} if found is None else found

    async def worker() -> None:
        while True:
            try:
                sid = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            try:
                message = await client.fetch_message(sid)
            except TwilioUnreachableError as exc:
                log.warning("Status of %s not fetched this time: %s", sid, exc)
                continue
            except TwilioAPIError as exc:
                if exc.status_code in ACCOUNT_WIDE_STATUSES:
                    raise
                log.warning("Status of %s not fetched: %s", sid, exc)
                continue
            found[sid] = [message.get("status"), message.get("error_code"), message.get("error_message")]

    await run_workers(worker, min(concurrency, len(sids)))
    return found


async def _checkpoints(
    store: TrackStore, known: Known, fetched: Known, every: float, stop: asyncio.Event
) -> None:
    """Save the final statuses fetched so far every ``every`` seconds until ``stop``; a write in progress
    finishes before this returns (so it cannot overwrite a later save)."""
    saved = 0
    while not stop.is_set():
        with suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=every)
        finals = {sid: fact for sid, fact in list(fetched.items()) if is_terminal(fact[0])}
        if len(finals) != saved and not stop.is_set():
            saved = len(finals)
            await asyncio.to_thread(store.save, {**known, **finals})


async def poll_chunk(
    client: AsyncTwilioClient,
    records: Sequence[MessageRecord],
    store: TrackStore,
    *,
    concurrency: int,
    final: bool = False,
    checkpoint_every: float = 1.0,
    window: ListWindow | None = None,
) -> PokeResult:
    """One poke: read what is still pending (listing ``window`` first when that is cheaper), remember what
    became final, say whether the chunk is done.

    ``final`` (the status timeout has passed) ends tracking; messages still in flight are then reported as
    unconfirmed (``final_record``).
    """
    known = store.load()
    sids = pending_sids(records, known)
    fetched: Known = {}
    to_fetch = sids
    listing = SweepResult()
    if sids:
        # Final statuses are saved while the poke runs too: a poke killed half-way does not fetch them again.
        stop = asyncio.Event()
        keeper = asyncio.create_task(_checkpoints(store, known, fetched, checkpoint_every, stop))
        try:
            tracked = sum(1 for record in records if record.get("sid"))
            if window is not None and worth_listing(len(sids), tracked):
                listing = await sweep(client, window, sids, fetched)
                to_fetch = listing.missing
            await fetch_statuses(client, to_fetch, concurrency, fetched)
        finally:
            stop.set()
            await asyncio.gather(keeper, return_exceptions=True)
    newly_final = {sid: fact for sid, fact in fetched.items() if is_terminal(fact[0])}
    known.update(newly_final)
    current = apply_known(records, {**known, **fetched})
    still_pending = len(pending_sids(current, {}))
    done = final or still_pending == 0
    if done:
        # The caller writes the chunk's final records, then clears the store (a crash between costs a fetch).
        current = [final_record(record) for record in current]
    elif newly_final:
        store.save(known)
    return PokeResult(
        done=done,
        records=current,
        fetched=len(to_fetch),
        pending=still_pending,
        listed=listing.listed,
        pages=listing.pages,
        from_list=listing.found,
    )


# ---- the track_chunk task ------------------------------------------------------------------------------


def _track_counts(chunk: int, records: Iterable[MessageRecord]) -> TrackCounts:
    outcomes = Counter(record["outcome"] for record in records)
    return {
        "chunk": chunk,
        "delivered": outcomes[DELIVERED],
        "failed": outcomes[FAILED],
        "unconfirmed": outcomes[UNCONFIRMED],
        "rejected": outcomes[REJECTED],
    }


def write_tracked(layout: RunLayout, chunk: int, records: Iterable[MessageRecord]) -> None:
    with open_atomic(layout.tracked(chunk)) as out:
        for record in records:
            out.write(jsonl(record))


def _take_callbacks(chunk: int, records: Sequence[MessageRecord], store: TrackStore) -> set[str]:
    """Record the final statuses called back for the chunk's pending messages; return the pending SIDs
    with no final callback (a failure called back stays pending, to be fetched at once for its text)."""
    known = store.load()
    called_back = final_from_callbacks(pending_sids(records, known))
    taken = {sid: [u.status, u.error_code, None] for sid, u in called_back.items() if not needs_fetch(u)}
    if taken:
        known.update(taken)
        store.save(known)
        log.info("Chunk %s: %d final statuses from status callbacks", chunk, len(taken))
    return set(pending_sids(records, known)) - called_back.keys()


def track_poke(
    sent: SendCounts,
    settings: BatchSettings,
    layout: RunLayout,
    *,
    now: datetime | None = None,
    connection: TwilioConnection | None = None,
) -> tuple[bool, TrackCounts | None]:
    """One poke of a chunk's tracking: ``(done, xcom_value)``. State lives in ``tracking/`` in storage.

    With callbacks on, every poke first takes the final statuses the callback store holds (a failure's is
    left to the fetch, for Twilio's error text); Twilio is asked for the rest only once ``callback_grace``
    has passed since sending. No fetch before ``first_fetch_after`` has passed since sending; after
    ``status_timeout`` the chunk is done and messages still in flight are unconfirmed.
    """
    chunk = sent["chunk"]
    now = now or datetime.now(UTC)
    age = (now - datetime.fromisoformat(sent["sent_at"])).total_seconds()
    results = load_results(layout, chunk)
    if results is None:
        raise missing(layout.results(chunk), f"send_chunk of chunk {chunk}")
    records = results["records"]
    store = StorageStore(layout.tracking(chunk))
    if not any(record.get("sid") for record in records):
        final = [final_record(record) for record in records]
        write_tracked(layout, chunk, final)
        return True, _track_counts(chunk, final)
    first_fetch_after = settings.first_fetch_after
    if settings.callback_grace is not None:
        unheard = _take_callbacks(chunk, records, store)
        if not pending_sids(records, store.load()):
            final = [final_record(record) for record in apply_known(records, store.load())]
            write_tracked(layout, chunk, final)
            store.clear()
            return True, _track_counts(chunk, final)
        if unheard:  # else only called-back failures are left: fetch their texts now
            first_fetch_after = max(first_fetch_after, settings.callback_grace)
    if age < first_fetch_after:
        log.info(
            "Chunk %s was sent %.0f s ago; first status fetch after %.0f s", chunk, age, first_fetch_after
        )
        return False, None
    final_poke = age >= settings.status_timeout
    plan = read_plan(layout)
    connection = connection or TwilioHook(plan.conn_id).connection_settings()
    window = ListWindow.of(plan.sender.from_, results.get("created_first"), results.get("created_last"))

    async def run() -> Any:
        client, _ = throttled_client(connection, plan.concurrency, account_sid=plan.account_sid)
        async with client:
            return await poll_chunk(
                client, records, store, concurrency=plan.concurrency, final=final_poke, window=window
            )

    result = asyncio.run(run())
    log.info(
        "Chunk %s: %d statuses from %d list pages (%d messages listed), %d fetched by SID, %d still in "
        "flight%s",
        chunk,
        result.from_list,
        result.pages,
        result.listed,
        result.fetched,
        result.pending,
        " (status timeout reached: reported as unconfirmed)" if final_poke and result.pending else "",
    )
    if not result.done:
        return False, None
    write_tracked(layout, chunk, result.records)
    store.clear()
    return True, _track_counts(chunk, result.records)

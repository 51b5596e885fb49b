"""The callback store, on each backend: ordering, idempotency tokens, expiry, bulk reads, concurrency."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.callbacks.stores import BACKENDS, Unavailable, store_url
from twilio_messaging.callbacks.store import Applied, StatusUpdate, StoreError, store_from_url


def sid(n: int) -> str:
    return f"SM{n:032x}"


@pytest.fixture(params=BACKENDS)
def make_store(request, tmp_path):
    opened = []
    with_url = store_url(request.param, tmp_path)
    try:
        url = with_url.__enter__()
    except Unavailable as exc:
        pytest.skip(f"{request.param} store test {exc}")

    def make(ttl: float = 3600.0):
        store = store_from_url(url, ttl)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()
    with_url.__exit__(None, None, None)


def test_higher_rank_wins_whatever_the_order(make_store):
    store = make_store()
    assert store.record(StatusUpdate(sid(1), "delivered")) is Applied.STORED
    assert store.record(StatusUpdate(sid(1), "sent")) is Applied.STALE
    assert store.record(StatusUpdate(sid(1), "undelivered", 30003)) is Applied.STALE
    assert store.record(StatusUpdate(sid(1), "read")) is Applied.STORED
    assert store.get(sid(1)).status == "read"
    assert store.record(StatusUpdate(sid(2), "queued")) is Applied.STORED
    assert store.record(StatusUpdate(sid(2), "sent")) is Applied.STORED
    assert store.get(sid(2)).status == "sent"


def test_a_token_applies_once(make_store):
    store = make_store()
    assert store.record(StatusUpdate(sid(3), "sent"), "tok-1") is Applied.STORED
    assert store.record(StatusUpdate(sid(3), "delivered"), "tok-1") is Applied.DUPLICATE
    assert store.get(sid(3)).status == "sent"
    assert store.record(StatusUpdate(sid(3), "delivered"), "tok-2") is Applied.STORED


def test_entries_expire(make_store):
    store = make_store(ttl=1.0)
    store.record(StatusUpdate(sid(4), "delivered"), "tok-exp")
    assert store.get(sid(4)) is not None
    time.sleep(2.2)
    assert store.get(sid(4)) is None
    # The token expired with it: a new delivery with the same token is applied.
    assert store.record(StatusUpdate(sid(4), "sent"), "tok-exp") is Applied.STORED


def test_get_many_reads_thousands_in_chunks(make_store):
    store = make_store()
    for n in range(1200):
        if n % 3:
            store.record(StatusUpdate(sid(n), "delivered" if n % 2 else "failed", None if n % 2 else 30008))
    found = store.get_many(sid(n) for n in range(1200))
    assert len(found) == 800
    assert found[sid(2)].error_code == 30008 and found[sid(1)].status == "delivered"


def test_concurrent_writers_end_at_the_highest_status(make_store):
    store = make_store()
    updates = [StatusUpdate(sid(n % 50), state) for n in range(400) for state in ("sent", "delivered")][::-1]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda u: store.record(u), updates))
    assert results.count(Applied.STORED) >= 50
    assert {u.status for u in store.get_many(sid(n) for n in range(50)).values()} == {"delivered"}


def test_unreachable_store_raises_store_error():
    with pytest.raises(StoreError, match="callback store"):
        store_from_url("redis://127.0.0.1:1/0", 60).get(sid(5))


def test_unknown_scheme_names_the_setting():
    with pytest.raises(ValueError, match="TWILIO_CALLBACK_STORE"):
        store_from_url("mysql://x/y", 60)

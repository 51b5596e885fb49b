"""Tracking from Twilio's message list (``batch.sweep``): real HTTP to the sandbox; a mock transport only for
answers a server under test cannot be made to give (a list refused while fetches work)."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import httpx
import pytest

from tests.batch.inmemory import MemoryStore
from tests.batch.test_send_track import SENDER, connection, row, rows
from twilio_messaging.batch import sweep as sweep_module
from twilio_messaging.batch.send import send_rows
from twilio_messaging.batch.sweep import CreatedSpan, ListWindow, worth_listing
from twilio_messaging.batch.throttle import throttled_client
from twilio_messaging.batch.track import poll_chunk
from twilio_messaging.client import AsyncTwilioClient
from twilio_messaging.connection import TwilioConnection
from twilio_messaging.contract import DELIVERED, FAILED
from twilio_messaging.errors import TwilioAPIError


def send_with_span(sb, batch, span: CreatedSpan | None = None):
    span = span or CreatedSpan()

    async def run():
        client, _ = throttled_client(connection(sb), 20)
        async with client:
            return await send_rows(client, batch, SENDER, concurrency=20, span=span)

    return asyncio.run(run()), span


def poll(sb, records, store, window):
    async def run():
        client, transport = throttled_client(connection(sb), 8)
        async with client:
            result = await poll_chunk(client, records, store, concurrency=8, window=window)
            return result, dict(transport.calls)

    return asyncio.run(run())


def window_of(span: CreatedSpan) -> ListWindow:
    assert span.first is not None and span.last is not None
    return ListWindow(SENDER.from_, span.first, span.last)


def test_a_chunk_in_flight_is_read_from_list_pages_not_one_fetch_each(clean_sandbox):
    # 3003 ends undelivered, 7777 stays "sent" for ever; the sandbox runs with zero step delay.
    batch = [*rows(1200), row(1201, "+15550103003", "u"), row(1202, "+15550107777", "s")]
    records, span = send_with_span(clean_sandbox, batch)
    store = MemoryStore()
    first, calls = poll(clean_sandbox, records, store, window_of(span))
    assert (first.pages, first.from_list, first.fetched, first.pending) == (2, 1202, 0, 1)
    assert calls == {"list": 2} and clean_sandbox.stats()["requests"]["fetch"] == 0
    outcome = {r["row"]: (r["outcome"], r["status"], r["error_code"]) for r in first.records}
    assert outcome[1] == (DELIVERED, "delivered", None)
    assert outcome[1201] == (FAILED, "undelivered", 30003)
    assert len(store.known) == 1201  # only final statuses are kept
    # One left in flight: a page would cost more than fetching it, so it is fetched by SID.
    second, calls = poll(clean_sandbox, first.records, store, window_of(span))
    assert (second.pages, second.fetched, second.pending) == (0, 1, 1) and calls == {"fetch": 1}


def test_messages_sent_outside_the_window_are_fetched_by_sid(clean_sandbox, monkeypatch):
    monkeypatch.setattr(sweep_module, "SENT_MARGIN", timedelta(0))
    early, _ = send_with_span(clean_sandbox, rows(150, start=0))
    time.sleep(2.1)  # Twilio's dates have whole seconds: the two sends fall in different seconds
    late, late_span = send_with_span(clean_sandbox, rows(150, start=500))
    # The window is the later send's only, as when the first messages left a sender queue long after.
    result, calls = poll(clean_sandbox, early + late, MemoryStore(), window_of(late_span))
    assert (result.from_list, result.fetched, result.pending) == (150, 150, 0)
    assert calls == {"list": 1, "fetch": 150}
    assert {r["outcome"] for r in result.records} == {DELIVERED}


def test_listing_gives_up_on_a_window_crowded_with_other_messages(clean_sandbox):
    # This chunk's 150, then 2,000 other messages of the same sender in the same seconds: the list shows
    # the newest first, so two pages show none of the chunk's, and listing stops there.
    span = CreatedSpan()
    ours, _ = send_with_span(clean_sandbox, rows(150, start=0), span)
    send_with_span(clean_sandbox, rows(2000, start=1000), span)
    result, calls = poll(clean_sandbox, ours, MemoryStore(), window_of(span))
    limit = sweep_module.WASTE_LIMIT * 150 + sweep_module.PAGE_SIZE
    assert result.pages == 2 and result.listed >= limit and result.from_list == 0
    assert (result.fetched, result.pending) == (150, 0) and calls == {"list": 2, "fetch": 150}


def test_listing_stops_at_pages_older_than_the_chunk(clean_sandbox):
    older, _ = send_with_span(clean_sandbox, rows(1500, start=0))
    time.sleep(1.1)
    ours, span = send_with_span(clean_sandbox, rows(300, start=5000))
    # No DateSent bounds at all (a Twilio that ignored them): the creation dates still end the walk.
    window = window_of(span)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ListWindow, "query", lambda self: [("From", SENDER.from_), ("PageSize", "1000")])
        result, calls = poll(clean_sandbox, ours, MemoryStore(), window)
    assert (result.from_list, result.fetched, result.pages) == (300, 0, 1) and calls == {"list": 1}
    assert older  # the earlier messages were there to be walked past


def test_worth_listing_compares_pages_with_fetches():
    assert worth_listing(pending=101, tracked=1000) and not worth_listing(pending=100, tracked=1000)
    assert not worth_listing(pending=400, tracked=5000) and worth_listing(pending=501, tracked=5000)


def test_span_keeps_the_earliest_and_latest_creation_across_tries():
    span = CreatedSpan()
    span.add({"date_created": "Wed, 02 Dec 2026 04:40:05 +0000"})
    span.add({"date_created": None})
    span.merge("2026-12-02T04:40:01+00:00", "2026-12-02T04:40:03+00:00")
    assert span.stored() == ("2026-12-02T04:40:01+00:00", "2026-12-02T04:40:05+00:00")
    assert ListWindow.of(None, *span.stored()) == ListWindow(None, span.first, span.last)  # type: ignore[arg-type]
    assert ListWindow.of("+15005550006", None, None) is None
    query = ListWindow.of(None, *span.stored()).query()  # type: ignore[union-attr]
    assert query == [("DateSent>", "2026-12-02T04:40:01Z"), ("DateSent<", "2026-12-02T04:40:10Z"),
                     ("PageSize", "1000")]  # fmt: skip


ACCOUNT = "AC" + "1" * 32


def mock_twilio(list_status: int) -> tuple[httpx.MockTransport, list[str]]:
    """Fetches answer delivered; the list answers ``list_status`` with a Twilio error body."""
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        if request.url.path.endswith("/Messages.json"):
            body = {
                "code": 20001 if list_status == 400 else 20003,
                "message": "refused",
                "status": list_status,
            }
            return httpx.Response(list_status, json=body)
        sid = request.url.path.rsplit("/", 1)[-1].removesuffix(".json")
        return httpx.Response(200, json={"sid": sid, "status": "delivered", "error_code": None})

    return httpx.MockTransport(handler), seen


def records_for(n: int) -> list:
    from twilio_messaging.batch.records import message_record

    return [message_record(i, f"+1555000{i:04d}", f"SM{i:032x}", "queued") for i in range(n)]


def mocked_poll(list_status: int, n: int = 150):
    transport, seen = mock_twilio(list_status)
    conn = TwilioConnection(base_url="http://127.0.0.1:9", username=ACCOUNT, secret="not-shown")
    span = CreatedSpan()
    span.merge("2026-12-02T04:40:01+00:00", "2026-12-02T04:40:03+00:00")

    async def run():
        async with AsyncTwilioClient(conn, transport=transport) as client:
            return await poll_chunk(
                client, records_for(n), MemoryStore(), concurrency=4, window=window_of(span)
            )

    return asyncio.run(run()), seen


def test_a_refused_list_falls_back_to_fetching_by_sid(caplog):
    result, seen = mocked_poll(400)
    assert (result.pages, result.fetched, result.pending) == (0, 150, 0)
    assert sum(path.endswith("/Messages.json") for path in seen) == 1 and len(seen) == 151
    assert "Twilio refused the list" in caplog.text and "not-shown" not in caplog.text


def test_an_account_wide_refusal_of_the_list_stops_the_poke():
    with pytest.raises(TwilioAPIError) as raised:
        mocked_poll(401)
    assert raised.value.status_code == 401

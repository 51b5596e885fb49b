"""The listing index: a bisected, early-stopping page is exactly the page a scan of every message gives.

The sandbox lists a 1,000,000-message store page by page (the batch benchmark tracks by listing), so
``select_page`` bounds its scan by creation time and stops once the page is full. This checks it against
the plain definition (filter all, newest first, then cut the page) on generated stores: out-of-order
clocks, messages that are sent late, unsent and canceled ones, every filter and token kind.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox.errors import TwilioError
from sandbox.lifecycle import DELIVERED
from sandbox.listing import ListQuery, _matches, select_page
from sandbox.store import MessageRecord, MessageStore

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
NUMBERS = ("+15550000001", "+15550000002")
SENDERS = ("+15005550006", None)


def reference_page(records: list[MessageRecord], query: ListQuery) -> tuple[list[str], bool]:
    """The definition: every matching message newest first, then the page the token or number picks."""
    matching = [r for r in reversed(records) if _matches(r, query)]
    size, start = query.page_size, query.page * query.page_size
    end = start + size
    token = query.page_token
    if token:
        anchor = next((i for i, r in enumerate(matching) if r.sid == token[2:]), None)
        if anchor is not None and token[:2] == "PA":
            start, end = anchor + 1, anchor + 1 + size
        elif anchor is not None:
            start, end = max(0, anchor - size), anchor
    return [r.sid for r in matching[start:end]], end < len(matching)


message = st.tuples(
    st.floats(min_value=-5, max_value=200_000),  # creation, seconds after T0 (may step back)
    st.sampled_from(NUMBERS),
    st.sampled_from(SENDERS),
    st.sampled_from([None, 0.0, 3.0, 90_000.0]),  # when it counts as sent; None: never (stays queued)
    st.booleans(),  # canceled
)


def build(specs: list[tuple[float, str, str | None, float | None, bool]]) -> MessageStore:
    store = MessageStore()
    now_mono = time.monotonic()
    for i, (created, to, from_, sent_after, canceled) in enumerate(specs):
        timeline: tuple[tuple[float, str], ...] = ((0.0, "queued"),)
        if sent_after is not None:
            timeline += ((sent_after, "sent"), (sent_after + 1, "delivered"))
        store.add(
            MessageRecord(
                sid=f"SM{i:032x}",
                account_sid="AC" + "0" * 32,
                to=to,
                from_=from_,
                messaging_service_sid=None if from_ else "MG" + "0" * 32,
                body="b",
                media_urls=(),
                status_callback=None,
                outcome=DELIVERED,
                timeline=timeline,
                num_segments=1,
                created_wall=T0 + created,
                # Old enough for every timeline step to have happened: the sent time is fixed.
                created_mono=now_mono - 1_000_000,
                canceled_at=0.5 if canceled else None,
            )
        )
    return store


def iso(offset: float) -> str:
    return datetime.fromtimestamp(T0 + offset, UTC).isoformat()


date_filter = st.one_of(
    st.none(),
    st.floats(min_value=-100, max_value=200_100).map(iso),
    st.sampled_from(["2025-12-31", "2026-01-01", "2026-01-02", "2026-01-03"]),
)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    specs=st.lists(message, max_size=40),
    sent_after=date_filter,
    sent_before=date_filter,
    sent_on=st.sampled_from([None, "2026-01-01", "2026-01-02"]),
    to=st.sampled_from([None, *NUMBERS]),
    from_=st.sampled_from([None, "+15005550006"]),
    page_size=st.integers(min_value=1, max_value=7),
    page=st.integers(min_value=0, max_value=4),
    token=st.tuples(st.sampled_from(["PA", "PB"]), st.integers(min_value=0, max_value=45)) | st.none(),
)
def test_indexed_page_equals_the_scan_of_every_message(
    specs, sent_after, sent_before, sent_on, to, from_, page_size, page, token
):
    store = build(specs)
    params = [("To", to), ("From", from_), ("DateSent", sent_on), ("DateSent<", sent_before),
              ("DateSent>", sent_after), ("PageSize", str(page_size)), ("Page", str(page))]  # fmt: skip
    if token:
        params.append(("PageToken", f"{token[0]}SM{token[1]:032x}"))
    query = ListQuery.parse([(k, v) for k, v in params if v is not None])
    index = store.account_index("AC" + "0" * 32)
    indexed, more = select_page(index, query)
    assert ([r.sid for r in indexed], more) == reference_page(list(index.records), query)


def test_a_delete_keeps_the_index_consistent():
    store = build([(float(i), NUMBERS[0], SENDERS[0], 0.0, False) for i in range(5)])
    assert store.delete(f"SM{2:032x}")
    query = ListQuery.parse([("PageSize", "2"), ("PageToken", f"PASM{3:032x}")])
    index = store.account_index("AC" + "0" * 32)
    page, more = select_page(index, query)
    assert [r.sid for r in page] == [f"SM{1:032x}", f"SM{0:032x}"] and not more
    assert [r.sid for r in index.records] == [f"SM{i:032x}" for i in (0, 1, 3, 4)]


def test_an_unknown_token_kind_is_refused():
    store = build([(0.0, NUMBERS[0], SENDERS[0], 0.0, False)])
    query = ListQuery.parse([("PageToken", "XX123")])
    with pytest.raises(TwilioError) as raised:
        select_page(store.account_index("AC" + "0" * 32), query)
    assert (raised.value.status, raised.value.code) == (400, 20001)


def test_a_message_sent_long_after_its_creation_is_in_a_later_window():
    # Created at T0, sent 25 h later (a sender queue): DateSent> a day later still finds it, after newer ones.
    late, early, newest = (0.0, 90_000.0), (80_000.0, 0.0), (86_000.0, 0.0)
    store = build([(created, NUMBERS[0], SENDERS[0], sent, False) for created, sent in (late, early, newest)])
    query = ListQuery.parse([("DateSent>", iso(85_000)), ("PageSize", "1")])
    index = store.account_index("AC" + "0" * 32)
    first, more = select_page(index, query)
    assert [r.sid for r in first] == [f"SM{2:032x}"] and more
    second, more = select_page(
        index, ListQuery.parse([*query.filters, ("PageSize", "1"), ("PageToken", "PA" + first[0].sid)])
    )
    assert [r.sid for r in second] == [f"SM{0:032x}"] and not more

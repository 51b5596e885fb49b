"""listMessage: newest first, To/From/DateSent filters with dates and datetimes, Twilio-shaped paging."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.sandbox.conftest import assert_error, assert_page


@pytest.fixture
def five(api):
    """Five delivered messages: three to one number, two to another; oldest first."""
    sids = [api.send(to="+15551110001" if i < 3 else "+15551110002", Body=f"m{i}")["sid"] for i in range(5)]
    for sid in sids:
        api.get(sid)
    return sids


def test_list_is_newest_first_with_the_page_shape(api, five):
    body = assert_page(api.list().json())
    assert [m["sid"] for m in body["messages"]] == five[::-1]
    assert (body["page"], body["page_size"], body["start"], body["end"]) == (0, 50, 0, 4)
    assert body["next_page_uri"] is None and body["previous_page_uri"] is None
    assert body["uri"] == f"{api.base}.json?PageSize=50&Page=0"
    assert body["first_page_uri"] == body["uri"]


def test_paging_follows_next_page_uri(api, five):
    seen, pages = [], []
    body = assert_page(api.list(PageSize=2).json())
    while True:
        pages.append(body)
        seen += [m["sid"] for m in body["messages"]]
        if body["next_page_uri"] is None:
            break
        body = assert_page(api.client.get(body["next_page_uri"]).json())
    assert seen == five[::-1]
    assert [p["page"] for p in pages] == [0, 1, 2]
    assert [len(p["messages"]) for p in pages] == [2, 2, 1]
    assert [(p["start"], p["end"]) for p in pages] == [(0, 1), (2, 3), (4, 4)]
    next_query = parse_qs(urlsplit(pages[0]["next_page_uri"]).query)
    assert next_query == {"PageSize": ["2"], "Page": ["1"], "PageToken": ["PA" + five[3]]}
    assert pages[0]["previous_page_uri"] is None
    previous = assert_page(api.client.get(pages[2]["previous_page_uri"]).json())
    assert [m["sid"] for m in previous["messages"]] == [five[2], five[1]]
    # a PB token near the start never repeats its anchor
    near_start = api.list(PageSize=2, Page=0, PageToken="PB" + five[3]).json()
    assert [m["sid"] for m in assert_page(near_start)["messages"]] == [five[4]]


def test_page_without_token_uses_the_offset(api, five):
    body = assert_page(api.list(PageSize=2, Page=1).json())
    assert [m["sid"] for m in body["messages"]] == [five[2], five[1]]


def test_filters_to_and_from_keep_the_query_in_page_uris(api, five):
    body = assert_page(api.list(To="+15551110001", PageSize=2).json())
    assert [m["sid"] for m in body["messages"]] == [five[2], five[1]]
    assert body["next_page_uri"].startswith(
        f"{api.base}.json?To=%2B15551110001&PageSize=2&Page=1&PageToken=PA"
    )
    rest = assert_page(api.client.get(body["next_page_uri"]).json())
    assert [m["sid"] for m in rest["messages"]] == [five[0]]
    assert assert_page(api.list(From="+15005550006").json())["messages"].__len__() == 5
    assert assert_page(api.list(From="+15550000000").json())["messages"] == []


def test_date_sent_filters_with_dates(api, five):
    today = datetime.now(UTC).date()
    day = timedelta(days=1)

    def sids(**params):
        return [m["sid"] for m in assert_page(api.list(**params).json())["messages"]]

    assert sids(DateSent=today.isoformat()) == five[::-1]
    assert sids(DateSent=(today - day).isoformat()) == []
    assert sids(**{"DateSent>": today.isoformat()}) == five[::-1]
    assert sids(**{"DateSent>": (today + day).isoformat()}) == []
    assert sids(**{"DateSent<": today.isoformat()}) == five[::-1]
    assert sids(**{"DateSent<": (today - day).isoformat()}) == []
    body = assert_page(api.list(**{"DateSent>": today.isoformat(), "PageSize": 2}).json())
    assert "DateSent%3E=" in body["next_page_uri"]


def test_date_sent_filters_with_datetimes(api, five):
    now = datetime.now(UTC)
    hour = timedelta(hours=1)

    def count(**params):
        return len(assert_page(api.list(**params).json())["messages"])

    iso = "%Y-%m-%dT%H:%M:%SZ"  # what twilio-python sends for a datetime
    assert count(**{"DateSent>": (now - hour).strftime(iso)}) == 5
    assert count(**{"DateSent>": (now + hour).strftime(iso)}) == 0
    assert count(**{"DateSent<": (now + hour).strftime(iso)}) == 5
    assert count(**{"DateSent<": (now - hour).strftime(iso)}) == 0
    rfc2822 = (now - hour).strftime("%a, %d %b %Y %H:%M:%S -0000")
    assert count(**{"DateSent>": rfc2822}) == 5
    assert count(**{"DateSent>": (now - hour).strftime("%Y-%m-%d %H:%M:%S.000")}) == 5
    assert count(DateSent=now.strftime(iso)) == 5  # a datetime for DateSent means its day


def test_a_just_created_message_is_found_by_date_before_it_is_sent(slow_api):
    """Duplicate checks after a lost response list by DateSent while the message is still queued."""
    since = (datetime.now(UTC) - timedelta(seconds=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    sid = slow_api.send(to="+15551234444")["sid"]
    body = assert_page(slow_api.list(To="+15551234444", **{"DateSent>": since}).json())
    assert [(m["sid"], m["status"], m["date_sent"]) for m in body["messages"]] == [(sid, "queued", None)]


@pytest.mark.parametrize(
    "params",
    [
        {"PageSize": 0},
        {"PageSize": 1001},
        {"PageSize": "x"},
        {"Page": -1},
        {"DateSent": "yesterday"},
        {"PageToken": "XX1"},
    ],
)
def test_bad_list_parameters_get_400(api, params):
    assert_error(api.list(**params), 400, 20001)

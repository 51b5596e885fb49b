"""Twilio's per-sender queue (--sender-mps): 30001 past ValidityPeriod, 21611 past the backlog limit, pacing.

Messages from one sender leave at --sender-mps segments per second; the queue is decided when a message is
created, so these tests need no clock tricks: at 2 segments/s the fourth message sent at once would wait
1.5 s, longer than ValidityPeriod=1.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from sandbox.testing import Sandbox, run_sandbox
from tests.sandbox.conftest import Api, assert_error

TO = "+15551234567"
SENDER = "+15551110001"


@pytest.fixture(scope="module")
def queue_sandbox() -> Iterator[Sandbox]:
    with run_sandbox("--step-delay", "0", "--sender-mps", "2", "--sender-max-backlog", "3") as sb:
        yield sb


@pytest.fixture
def qapi(queue_sandbox: Sandbox) -> Iterator[Api]:
    queue_sandbox.reset()
    client = Api(queue_sandbox)
    yield client
    client.close()


def final(api: Api, sids: list[str], timeout: float = 15.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        messages = [api.get(sid) for sid in sids]
        if all(m["status"] in ("delivered", "failed") for m in messages) or time.monotonic() > deadline:
            return messages
        time.sleep(0.1)


def senders(api: Api) -> dict[str, dict]:
    response = api.client.get("/_sandbox/senders")
    assert response.status_code == 200
    return {s["sender"]: s for s in response.json()["senders"]}


def test_a_burst_longer_than_validity_period_fails_with_30001(qapi: Api) -> None:
    created = [qapi.send(TO, From=SENDER, ValidityPeriod="1") for _ in range(6)]
    assert all(m["status"] == "queued" for m in created)  # Twilio accepts them all; the queue decides
    assert senders(qapi)[SENDER]["queued"] >= 1
    messages = final(qapi, [m["sid"] for m in created])
    outcomes = [(m["status"], m["error_code"]) for m in messages]
    # The first ones leave within the second (0 s, 0.5 s, 1 s of wait); the rest would wait longer.
    assert outcomes[:2] == [("delivered", None)] * 2, outcomes
    expired = [o for o in outcomes if o == ("failed", 30001)]
    assert len(expired) >= 2 and outcomes[-1] == ("failed", 30001), outcomes
    assert all(o in (("delivered", None), ("failed", 30001)) for o in outcomes)
    failed = [m for m in messages if m["status"] == "failed"]
    assert all(m["error_message"] == "Queue overflow" and m["price"] is None for m in failed)
    assert qapi.sb.stats()["queue"]["expired_30001"] == len(expired)
    assert senders(qapi)[SENDER]["expired_30001"] == len(expired)


def test_a_create_beyond_the_backlog_limit_gets_429_21611(qapi: Api) -> None:
    accepted, refused = [], None
    for _ in range(12):  # 0.5 s of backlog each at 2 segments/s: over 3 s after the seventh
        response = qapi.create(To=TO, From=SENDER, Body="x")
        if response.status_code != 201:
            refused = response
            break
        accepted.append(response.json()["sid"])
    assert refused is not None, "the backlog never filled"
    assert_error(refused, 429, 21611)
    assert 6 <= len(accepted) <= 8, len(accepted)
    state = senders(qapi)[SENDER]
    assert state["backlog_seconds"] > 2.5 and state["refused_21611"] == 1
    assert qapi.sb.stats()["queue"]["refused_21611"] == 1
    # Queues are per sender: another number (and a Messaging Service) still sends at once.
    assert qapi.create(To=TO, From="+15551110002", Body="x").status_code == 201
    service = qapi.create(To=TO, From=None, MessagingServiceSid="MG" + "1" * 32, Body="x")
    assert service.status_code == 201
    assert set(senders(qapi)) == {SENDER, "+15551110002", "MG" + "1" * 32}
    # Nothing already accepted is lost: all of them are delivered in turn (default ValidityPeriod 10 h).
    assert {m["status"] for m in final(qapi, accepted)} == {"delivered"}


def test_pacing_at_the_sender_rate_avoids_both(qapi: Api) -> None:
    sids = []
    for _ in range(4):
        response = qapi.create(To=TO, From=SENDER, Body="x", ValidityPeriod="1")
        assert response.status_code == 201, response.text
        sids.append(response.json()["sid"])
        time.sleep(0.5)  # 2 messages/s of one segment each: exactly --sender-mps
    assert [(m["status"], m["error_code"]) for m in final(qapi, sids)] == [("delivered", None)] * 4
    assert qapi.sb.stats()["queue"] == {"expired_30001": 0, "refused_21611": 0}


def test_segments_count_against_the_rate(qapi: Api) -> None:
    long_body = "x" * 400  # 3 segments: 1.5 s of the sender's time at 2 segments/s
    first = qapi.send(TO, From=SENDER, Body=long_body)
    second = qapi.send(TO, From=SENDER, Body="x", ValidityPeriod="1")
    assert first["num_segments"] == "3"
    assert [(m["status"], m["error_code"]) for m in final(qapi, [second["sid"]])] == [("failed", 30001)]


def test_without_sender_mps_there_is_no_queue(api: Api) -> None:
    created = [api.send(TO, From=SENDER, ValidityPeriod="1") for _ in range(10)]
    assert {api.get(m["sid"])["status"] for m in created} == {"delivered"}
    body = api.client.get("/_sandbox/senders").json()
    assert body["mps"] is None and body["senders"] == []

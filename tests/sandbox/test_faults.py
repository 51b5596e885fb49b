"""Fault injection: latency, 429 + Retry-After, 5xx, lost responses (both modes), the concurrency limit."""

from __future__ import annotations

import concurrent.futures
import time

import httpx
import pytest

from sandbox.testing import run_sandbox
from tests.sandbox.conftest import Api, assert_error, assert_message, assert_page


def test_faults_are_off_by_default_and_put_returns_the_full_config(clean_sandbox):
    off = {
        "latency_ms": 0,
        "rate_429": 0.0,
        "rate_5xx": 0.0,
        "rate_lost_response": 0.0,
        "lost_response_mode": "500",
        "concurrency_limit": None,
        "retry_after": None,
        "seed": None,
        "rate_callback_drop": 0.0,
        "rate_callback_duplicate": 0.0,
        "rate_callback_reorder": 0.0,
        "callback_delay_ms": 0,
    }
    assert clean_sandbox.faults() == off
    assert clean_sandbox.set_faults(rate_429=0.25, retry_after=2) == {
        **off,
        "rate_429": 0.25,
        "retry_after": 2,
    }
    assert clean_sandbox.faults()["rate_429"] == 0.25
    assert clean_sandbox.clear_faults() == off


@pytest.mark.parametrize(
    "bad",
    [
        {"rate_429": 1.5},
        {"latency_ms": -1},
        {"lost_response_mode": "maybe"},
        {"concurrency_limit": 0},
        {"nope": 1},
    ],
)
def test_bad_fault_settings_are_refused_naming_the_field(clean_sandbox, bad):
    response = httpx.put(f"{clean_sandbox.base_url}/_sandbox/faults", json=bad, trust_env=False)
    assert response.status_code == 400
    assert next(iter(bad)) in response.json()["error"]


def test_latency(api):
    api.sb.set_faults(latency_ms=300)
    started = time.perf_counter()
    api.send()
    assert time.perf_counter() - started >= 0.3
    started = time.perf_counter()
    api.sb.messages()  # the control API is never slowed
    assert time.perf_counter() - started < 0.3


def test_429_with_retry_after_is_never_processed(api):
    api.sb.set_faults(rate_429=1.0, retry_after=3)
    response = api.create(To="+15551230000", Body="x")
    assert_error(response, 429, 20429)
    assert response.headers["Retry-After"] == "3"
    assert api.sb.messages() == []
    assert api.sb.stats()["faults"]["429"] == 1
    api.sb.set_faults(retry_after=None)
    assert "Retry-After" not in api.create(To="+15551230000", Body="x").headers


def test_5xx(api):
    api.sb.set_faults(rate_5xx=1.0, seed=1)
    codes = set()
    for _ in range(12):
        response = api.list()
        assert response.status_code in (500, 503)
        codes.add(
            assert_error(response, response.status_code, {500: 20500, 503: 20503}[response.status_code])[
                "code"
            ]
        )
    assert codes == {20500, 20503}
    assert api.sb.stats()["faults"]["5xx"] == 12
    api.sb.clear_faults()
    assert_page(api.list().json())


def test_rates_are_reproducible_with_a_seed(api):
    def pattern() -> list[int]:
        api.sb.set_faults(rate_429=0.5, seed=42)
        return [api.list().status_code for _ in range(20)]

    first = pattern()
    assert first == pattern()
    assert set(first) == {200, 429}


def test_lost_response_500_stores_the_message(api):
    api.sb.set_faults(rate_lost_response=1.0, lost_response_mode="500")
    assert_error(api.create(To="+15551230000", Body="lost"), 500, 20500)
    stored = api.sb.messages()
    assert [m["body"] for m in stored] == ["lost"]
    assert api.get(stored[0]["sid"])["status"] == "delivered"  # it was really sent
    assert api.sb.stats()["faults"]["lost_response"] == 1


def test_lost_response_drop_closes_the_connection_without_an_answer(api):
    api.sb.set_faults(rate_lost_response=1.0, lost_response_mode="drop")
    with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
        api.create(To="+15551230000", Body="dropped")
    assert [m["body"] for m in api.sb.messages()] == ["dropped"]
    api.sb.clear_faults()
    assert api.send()["status"] == "queued"  # the server is fine afterwards
    assert api.sb.stats()["faults"]["lost_response"] == 1


def test_lost_response_only_hits_creates(api):
    sid = api.send()["sid"]
    api.sb.set_faults(rate_lost_response=1.0)
    assert_message(api.get(sid))
    assert_page(api.list().json())


def test_concurrency_limit_answers_429_at_once(api):
    # 2 s of latency: the two admitted calls hold their slots until the other three arrive, even when busy.
    api.sb.set_faults(concurrency_limit=2, latency_ms=2000, retry_after=1)

    def call() -> tuple[int, float, httpx.Headers]:
        with httpx.Client(auth=(api.sb.account_sid, api.sb.auth_token), trust_env=False, timeout=10) as c:
            started = time.perf_counter()
            response = c.get(f"{api.sb.base_url}{api.base}.json")
            return response.status_code, time.perf_counter() - started, response.headers, response

    with concurrent.futures.ThreadPoolExecutor(5) as pool:
        results = list(pool.map(lambda _: call(), range(5)))
    ok = [r for r in results if r[0] == 200]
    limited = [r for r in results if r[0] == 429]
    assert len(ok) == 2 and len(limited) == 3
    for _, elapsed, headers, response in limited:
        assert elapsed < 1.0  # refused at once, not after the 2 s latency
        assert headers["Retry-After"] == "1"
        assert_error(response, 429, 20429)
    assert api.sb.stats()["faults"]["concurrency_429"] == 3
    assert api.list().status_code == 200  # the slots are released


def test_faults_from_command_line_flags():
    with run_sandbox("--rate-429", "1", "--retry-after", "5") as sb:
        response = httpx.get(sb.messages_url, auth=(sb.account_sid, sb.auth_token), trust_env=False)
        assert_error(response, 429, 20429)
        assert response.headers["Retry-After"] == "5"
        assert sb.faults()["rate_429"] == 1.0
        assert sb.health() == {"status": "ok"}  # never to the control API
    with run_sandbox("--rate-lost-response", "1", "--lost-response-mode", "drop", "--step-delay", "0") as sb:
        client = Api(sb)
        try:
            with pytest.raises(httpx.RemoteProtocolError):
                client.create(To="+15551230000", Body="x")
        finally:
            client.close()
        assert len(sb.messages()) == 1

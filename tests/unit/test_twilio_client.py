"""The httpx clients: what goes on the wire (respx), and both clients against the real sandbox process."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from urllib.parse import parse_qs

import httpx
import pytest
import respx

from twilio_messaging import (
    DEFAULT_TIMEOUT,
    AsyncTwilioClient,
    TwilioAPIError,
    TwilioClient,
    TwilioConfigError,
    TwilioConnection,
    TwilioUnreachableError,
    validate_message,
)
from twilio_messaging.hooks.twilio import TwilioHook
from twilio_messaging.retry import RetryPolicy

ACCOUNT = "AC0123456789abcdef0123456789abcdef"
BASE = "https://api.twilio.test"
SECRET = "s3cret-token-value"
MESSAGES = f"{BASE}/2010-04-01/Accounts/{ACCOUNT}/Messages.json"
SID = "MM" + "a" * 32


def connection(**kw) -> TwilioConnection:
    return TwilioConnection(**{"base_url": BASE, "username": ACCOUNT, "secret": SECRET, **kw})


def resource(**fields) -> dict:
    return {
        "sid": SID,
        "status": "queued",
        "to": "+15551234567",
        "from": "+15005550006",
        "body": "hi",
        **fields,
    }


@respx.mock
def test_create_request_shape_on_the_wire():
    route = respx.post(MESSAGES).mock(return_value=httpx.Response(201, json=resource()))
    request = validate_message(
        "+15551234567",
        "+15005550006",
        "hi",
        media_url=["https://e.example/a.png", "https://e.example/b.png"],
        status_callback="https://cb.example/status",
    )
    with TwilioClient(connection()) as client:
        assert client.create_message(request)["sid"] == SID

    sent = route.calls.last.request
    assert (
        sent.headers["Authorization"] == "Basic " + base64.b64encode(f"{ACCOUNT}:{SECRET}".encode()).decode()
    )
    assert sent.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert sent.headers["Accept"] == "application/json"
    assert parse_qs(sent.content.decode()) == {
        "To": ["+15551234567"],
        "From": ["+15005550006"],
        "Body": ["hi"],
        "MediaUrl": ["https://e.example/a.png", "https://e.example/b.png"],
        "StatusCallback": ["https://cb.example/status"],
    }


def test_explicit_timeouts_and_no_secret_in_repr():
    client = TwilioClient(connection())
    try:
        assert client._http.timeout == DEFAULT_TIMEOUT
        assert None not in (
            DEFAULT_TIMEOUT.connect,
            DEFAULT_TIMEOUT.read,
            DEFAULT_TIMEOUT.write,
            DEFAULT_TIMEOUT.pool,
        )
        assert SECRET not in repr(client) and SECRET not in repr(client.connection)
    finally:
        client.close()


def test_account_sid_is_required_and_checked():
    with pytest.raises(TwilioConfigError, match="accountSid"):
        TwilioClient(connection(username="SK" + "0" * 32))
    with pytest.raises(ValueError, match="accountSid"):
        TwilioClient(connection(), account_sid="AC123")


@respx.mock
def test_read_timeout_after_sending_looks_up_instead_of_resending():
    # A server cannot reliably produce a client-side read timeout; respx can.
    post = respx.post(MESSAGES).mock(side_effect=httpx.ReadTimeout("timed out"))
    listed = respx.get(MESSAGES).mock(
        return_value=httpx.Response(
            200,
            json={
                "messages": [
                    resource(
                        body="hi",
                        num_media="0",
                        direction="outbound-api",
                        date_created="Fri, 27 Nov 2099 12:00:00 +0000",
                    )
                ],
                "next_page_uri": None,
            },
        )
    )
    with TwilioClient(connection(), retry_policy=RetryPolicy(base_delay=0.01)) as client:
        found = client.create_message(validate_message("+15551234567", "+15005550006", "hi"))
    assert found["sid"] == SID
    assert post.call_count == 1 and listed.call_count == 1


@respx.mock
def test_write_error_is_treated_as_maybe_sent():
    post = respx.post(MESSAGES).mock(
        side_effect=[httpx.WriteError("broken pipe"), httpx.Response(201, json=resource())]
    )
    listed = respx.get(MESSAGES).mock(return_value=httpx.Response(200, json={"messages": []}))
    with TwilioClient(connection(), retry_policy=RetryPolicy(base_delay=0.01)) as client:
        client.create_message(validate_message("+15551234567", "+15005550006", "hi"))
    assert post.call_count == 2 and listed.call_count == 1


def test_unreachable_message_names_the_url_and_never_the_secret():
    # Nothing listens on port 9 of loopback (discard); the connection is refused before anything is sent.
    conn = connection(base_url="http://127.0.0.1:9")
    policy = RetryPolicy(max_attempts=3, base_delay=0.01)
    with TwilioClient(conn, retry_policy=policy) as client, pytest.raises(TwilioUnreachableError) as info:
        client.create_message(validate_message("+15551234567", "+15005550006", "hi"))
    text = str(info.value)
    assert text.startswith("Twilio API at http://127.0.0.1:9 was unreachable after 3 attempts over ")
    assert "ConnectError" in text and SECRET not in text


def sandbox_connection(sb, **kw) -> TwilioConnection:
    return TwilioConnection(base_url=sb.base_url, username=sb.account_sid, secret=sb.auth_token, **kw)


def test_sync_client_against_the_sandbox(clean_sandbox):
    with TwilioClient(sandbox_connection(clean_sandbox)) as client:
        created = client.create_message(validate_message("+15551234567", "+15005550006", "hello"))
        assert created["status"] == "queued" and created["sid"].startswith("SM")
        assert client.fetch_message(created["sid"])["status"] == "delivered"  # --step-delay 0
        assert [m["sid"] for m in client.list_messages(to="+15551234567")] == [created["sid"]]
        with pytest.raises(TwilioAPIError) as info:
            client.fetch_message("SM" + "0" * 32)
    assert info.value.status_code == 404 and info.value.code == 20404


def test_sync_client_maps_sandbox_errors(clean_sandbox):
    with TwilioClient(sandbox_connection(clean_sandbox)) as client, pytest.raises(TwilioAPIError) as info:
        client.create_message(validate_message("+15005550001", "+15005550006", "x"))
    assert info.value.code == 21211 and "https://www.twilio.com/docs/errors/21211" in str(info.value)
    bad = TwilioConnection(base_url=clean_sandbox.base_url, username=clean_sandbox.account_sid, secret="nope")
    with TwilioClient(bad) as client, pytest.raises(TwilioAPIError) as info:
        client.create_message(validate_message("+15551234567", "+15005550006", "x"))
    assert (
        info.value.status_code == 401
        and "twilio_default" in str(info.value)
        and "nope" not in str(info.value)
    )
    assert clean_sandbox.messages() == []


def test_sync_client_retries_429_from_the_sandbox(clean_sandbox):
    clean_sandbox.set_faults(rate_429=1.0, retry_after=None)
    policy = RetryPolicy(max_attempts=3, base_delay=0.01)
    client = TwilioClient(sandbox_connection(clean_sandbox), retry_policy=policy)
    with client, pytest.raises(TwilioUnreachableError, match=r"after 3 attempts .*HTTP 429"):
        client.create_message(validate_message("+15551234567", "+15005550006", "x"))
    assert clean_sandbox.messages() == []
    assert clean_sandbox.stats()["faults"]["429"] == 3


def test_async_client_is_duplicate_safe_against_the_sandbox(clean_sandbox):
    clean_sandbox.set_faults(rate_lost_response=1.0, lost_response_mode="500")

    async def scenario() -> tuple[dict, dict]:
        async with AsyncTwilioClient(
            sandbox_connection(clean_sandbox), retry_policy=RetryPolicy(base_delay=0.01)
        ) as client:
            created = await client.create_message(validate_message("+15551234567", "+15005550006", "async"))
            return created, await client.fetch_message(created["sid"])

    created, fetched = asyncio.run(scenario())
    [stored] = clean_sandbox.messages()
    assert created["sid"] == fetched["sid"] == stored["sid"]
    assert clean_sandbox.stats()["requests"]["create"] == 1


def test_connection_settings_from_airflow_mask_the_password(monkeypatch):
    from airflow.sdk.log import mask_secret  # noqa: F401  (the import used by the hook must exist)

    monkeypatch.setenv(
        "AIRFLOW_CONN_TWILIO_DEFAULT",
        json.dumps(
            {
                "conn_type": "http",
                "host": "api.twilio.com",
                "schema": "https",
                "login": ACCOUNT,
                "password": SECRET,
            }
        ),
    )
    masked: list[str] = []
    monkeypatch.setattr("airflow.sdk.log.mask_secret", lambda value, name=None: masked.append(value))
    conn = TwilioHook().connection_settings()
    assert conn.base_url == "https://api.twilio.com" and conn.account_sid == ACCOUNT
    assert masked == [SECRET]
    assert SECRET not in repr(conn)


def test_connection_without_credentials_is_refused(monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_TWILIO_DEFAULT", json.dumps({"conn_type": "http", "host": "api.twilio.com"})
    )
    with pytest.raises(TwilioConfigError, match=r"twilio_default.*login"):
        TwilioHook().connection_settings()


def test_sync_client_honours_retry_after_from_the_sandbox(clean_sandbox):
    clean_sandbox.set_faults(rate_429=1.0, retry_after=1)
    policy = RetryPolicy(max_attempts=2, base_delay=0.01)
    started = time.monotonic()
    client = TwilioClient(sandbox_connection(clean_sandbox), retry_policy=policy)
    with client, pytest.raises(TwilioUnreachableError, match="after 2 attempts"):
        client.create_message(validate_message("+15551234567", "+15005550006", "x"))
    assert time.monotonic() - started >= 1.0  # waited Retry-After, not the 0.01 s backoff

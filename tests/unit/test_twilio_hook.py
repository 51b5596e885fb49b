"""TwilioHook: one connection -> base URL + auth for httpx and for HttpHook, with twilio and http types."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from twilio_messaging.errors import TwilioConfigError
from twilio_messaging.hooks.twilio import TwilioHook
from twilio_messaging.validation import validate_message

REPO = Path(__file__).resolve().parents[2]
ACCOUNT = "AC0123456789abcdef0123456789abcdef"
SECRET = "hook-s3cret-token"


def set_conn(monkeypatch, conn_id: str = "twilio_default", **fields) -> None:
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({"login": ACCOUNT, "password": SECRET, **fields})
    )


def both_stacks(hook: TwilioHook) -> tuple[str, str, tuple[str, str]]:
    """(httpx base URL, HttpHook URL of an endpoint, HttpHook session auth) of one hook."""
    with hook.get_client() as client:
        httpx_url = str(client._http.base_url).rstrip("/")
        httpx_auth = client._http.auth
    session = hook.get_conn()
    auth = session.auth
    assert httpx_auth is not None and auth is not None
    return httpx_url, hook.url_from_endpoint("2010-04-01/Accounts.json"), (auth.username, auth.password)


def test_twilio_connection_defaults_to_the_real_api_over_https(monkeypatch):
    set_conn(monkeypatch, conn_type="twilio")  # no host, no schema
    httpx_url, http_hook_url, auth = both_stacks(TwilioHook())
    assert httpx_url == "https://api.twilio.com"
    assert http_hook_url == "https://api.twilio.com/2010-04-01/Accounts.json"
    assert auth == (ACCOUNT, SECRET)


def test_twilio_uri_form_keeps_https(monkeypatch):
    # With conn_type http the URI form turns https into http (README warning); the twilio type does not.
    monkeypatch.setenv("AIRFLOW_CONN_TWILIO_DEFAULT", f"twilio://{ACCOUNT}:{SECRET}@api.twilio.com")
    assert TwilioHook().connection_settings().base_url == "https://api.twilio.com"


def test_http_connection_keeps_http_hooks_rule(monkeypatch):
    from airflow.providers.http.hooks.http import HttpHook

    set_conn(monkeypatch, conn_type="http", host="127.0.0.1", port=8123, schema="http")
    httpx_url, http_hook_url, auth = both_stacks(TwilioHook())
    plain = HttpHook(http_conn_id="twilio_default")
    plain.get_conn()
    assert httpx_url == plain.base_url == "http://127.0.0.1:8123"
    assert http_hook_url == "http://127.0.0.1:8123/2010-04-01/Accounts.json"
    assert auth == (ACCOUNT, SECRET)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"conn_type": "http", "host": "api.twilio.com"}, "http://api.twilio.com"),  # HttpHook's default
        ({"conn_type": "http", "host": "https://api.twilio.com"}, "https://api.twilio.com"),
        ({"conn_type": "twilio", "host": "api.twilio.com", "schema": "http"}, "http://api.twilio.com"),
        ({"conn_type": "twilio", "host": "127.0.0.1", "port": 9}, "https://127.0.0.1:9"),
    ],
)
def test_base_url_rules(monkeypatch, fields, expected):
    set_conn(monkeypatch, **fields)
    httpx_url, http_hook_url, _ = both_stacks(TwilioHook())
    assert httpx_url == expected and http_hook_url == f"{expected}/2010-04-01/Accounts.json"


def test_http_connection_without_host_is_refused(monkeypatch):
    set_conn(monkeypatch, conn_type="http")
    with pytest.raises(TwilioConfigError, match="'twilio_default': the connection has no host"):
        TwilioHook().connection_settings()


def test_missing_connection_says_how_to_create_it(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_TWILIO_OTHER", raising=False)
    with pytest.raises(TwilioConfigError, match=r"'twilio_other' is not defined.*--conn-type twilio"):
        TwilioHook("twilio_other").connection_settings()


def test_secret_is_masked_and_kept_out_of_repr(monkeypatch):
    set_conn(monkeypatch, conn_type="twilio")
    masked: list[str] = []
    monkeypatch.setattr("airflow.sdk.log.mask_secret", lambda value, name=None: masked.append(value))
    hook = TwilioHook()
    settings = hook.connection_settings()
    assert masked == [SECRET] and SECRET not in repr(settings)
    assert hook.connection_settings() is settings  # read once per hook
    with hook.get_client() as client:
        assert SECRET not in repr(client)


def test_api_key_login_takes_the_account_from_the_caller(monkeypatch):
    set_conn(monkeypatch, conn_type="twilio", login="SK" + "0" * 32)
    hook = TwilioHook()
    with pytest.raises(TwilioConfigError, match="No Account SID"):
        hook.get_client()
    with hook.get_client(account_sid=ACCOUNT) as client:
        assert client.account_sid == ACCOUNT


def test_connection_form_relabels_the_fields():
    behaviour = TwilioHook.get_ui_field_behaviour()
    assert behaviour["relabeling"]["login"] == "Account SID or API key SID"
    assert behaviour["relabeling"]["password"] == "Auth token or API key secret"
    assert "api.twilio.com" in behaviour["placeholders"]["host"]
    assert TwilioHook.conn_type == "twilio" and TwilioHook.hook_name == "Twilio"


def test_installed_as_a_provider_with_the_twilio_connection_type():
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    assert "airflow-provider-twilio-messaging" in manager.providers, (
        "run `make venv` (pip install -e plugins)"
    )
    info = manager.hooks["twilio"]  # what the api-server's connection form is built from
    assert info is not None
    assert (info.hook_class_name, info.hook_name) == ("twilio_messaging.hooks.twilio.TwilioHook", "Twilio")
    assert (
        manager.field_behaviours["twilio"]["relabeling"] == TwilioHook.get_ui_field_behaviour()["relabeling"]
    )


def test_airflow_providers_list_shows_the_package():
    result = subprocess.run(
        [str(Path(sys.executable).parent / "airflow"), "providers", "list", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    # Airflow may print log lines before the JSON document.
    document = next(line for line in result.stdout.splitlines() if line.startswith("["))
    listed = {p["package_name"]: p for p in json.loads(document)}
    assert listed["airflow-provider-twilio-messaging"]["version"] == "0.1.0"


def test_both_clients_and_http_hook_reach_the_sandbox(clean_sandbox, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_TWILIO_DEFAULT", clean_sandbox.conn_json())
    hook = TwilioHook()
    with hook.get_client() as client:
        sid = client.create_message(validate_message("+15551234567", "+15005550006", "via hook"))["sid"]
    response = hook.run(f"2010-04-01/Accounts/{clean_sandbox.account_sid}/Messages/{sid}.json")
    assert response.json()["sid"] == sid

    import asyncio

    async def fetch() -> str:
        async with hook.get_async_client() as client:
            return (await client.fetch_message(sid))["status"]

    assert asyncio.run(fetch()) == "delivered"  # --step-delay 0
    assert hook.test_connection() == (
        True,
        f"Connected to {clean_sandbox.base_url} as {clean_sandbox.account_sid}",
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_TWILIO_DEFAULT", clean_sandbox.conn_json().replace(clean_sandbox.auth_token, "wrong")
    )
    ok, text = TwilioHook().test_connection()
    assert not ok and "401" in text and "wrong" not in text


def test_the_hook_uses_http_hooks_public_api_only():
    import inspect

    from airflow.providers.http.hooks.http import HttpHook

    private = {name for name in vars(HttpHook) if name.startswith("_") and not name.startswith("__")}
    private |= {"_srv_lookup_enabled", "_base_url_initialized", "_auth_type"}  # instance attributes
    source = inspect.getsource(TwilioHook)
    assert [name for name in sorted(private) if name in source] == []
    assert not set(vars(TwilioHook)) & private

"""scripts/stack.py: the twilio_default connection it gives Airflow, for the sandbox and for real Twilio."""

from __future__ import annotations

from sandbox import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN
from scripts.stack import Settings


def test_the_sandbox_connection_uses_the_sandbox_defaults():
    conn = Settings({"SANDBOX_PORT": "8114"}).twilio_conn()
    assert conn == {
        "conn_type": "http",
        "host": "127.0.0.1",
        "port": 8114,
        "schema": "http",
        "login": DEFAULT_ACCOUNT_SID,
        "password": DEFAULT_AUTH_TOKEN,
    }


def test_real_twilio_is_https_with_the_given_credentials():
    settings = Settings({"TWILIO_ACCOUNT_SID": "AC" + "1" * 32, "TWILIO_AUTH_TOKEN": "tok"})
    assert settings.real
    assert settings.twilio_conn() == {
        "conn_type": "http",
        "host": "api.twilio.com",
        "schema": "https",
        "login": "AC" + "1" * 32,
        "password": "tok",
    }

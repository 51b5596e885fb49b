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


def test_callbacks_are_on_by_default_with_the_sandbox_and_reach_the_api_server_on_loopback(tmp_path):
    settings = Settings({"AIRFLOW_PORT": "28123"})
    assert settings.callback_base_url == "http://127.0.0.1:28123"
    from scripts.stack import build_stack

    assert build_stack(settings, tmp_path).extra_env["TWILIO_CALLBACK_BASE_URL"] == "http://127.0.0.1:28123"


def test_callbacks_stay_off_with_real_twilio_unless_given_and_an_empty_setting_turns_them_off():
    real = {"TWILIO_ACCOUNT_SID": "AC" + "1" * 32, "TWILIO_AUTH_TOKEN": "tok"}
    assert Settings(real).callback_base_url == ""  # Twilio cannot reach 127.0.0.1
    public = "https://airflow.example.com"
    assert Settings({**real, "TWILIO_CALLBACK_BASE_URL": public}).callback_base_url == public
    assert Settings({"TWILIO_CALLBACK_BASE_URL": ""}).callback_base_url == ""

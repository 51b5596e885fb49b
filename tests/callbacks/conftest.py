"""The status-callback receiver served by uvicorn on loopback (the plugin's real app), and signing helpers.

Requests are signed with twilio-python's ``RequestValidator``, the reference the receiver must agree with.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn
from twilio.request_validator import RequestValidator

from scripts.airflow_stack import free_port

ACCOUNT = "AC" + "a" * 32
TOKEN = "callback-test-auth-token-0123456789"
RECEIVER_PATH = "/twilio-messages/status-callback"


def message_sid(n: int = 0) -> str:
    return f"SM{n:032x}"


def callback_form(sid: str, status: str, **extra: str) -> dict[str, str]:
    form = {
        "MessageSid": sid,
        "SmsSid": sid,
        "MessageStatus": status,
        "SmsStatus": status,
        "AccountSid": ACCOUNT,
        "From": "+15005550006",
        "To": "+15558675310",
        "ApiVersion": "2010-04-01",
    }
    form.update(extra)
    return form


def sign(url: str, form: dict[str, str], token: str = TOKEN) -> str:
    return RequestValidator(token).compute_signature(url, form)


@dataclass
class Receiver:
    """The plugin app on a loopback port; ``url`` is the receiver's URL as Twilio would be given it."""

    port: int
    client: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.client = httpx.Client(timeout=10.0, trust_env=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{RECEIVER_PATH}"

    def post(
        self,
        form: dict[str, str],
        *,
        signature: str | None = "sign",
        signed_url: str | None = None,
        idempotency: str | None = "new",
        token: str = TOKEN,
        url: str | None = None,
    ) -> httpx.Response:
        headers = {}
        if signature == "sign":
            signature = sign(signed_url or url or self.url, form, token)
        if signature is not None:
            headers["X-Twilio-Signature"] = signature
        if idempotency == "new":
            idempotency = uuid.uuid4().hex
        if idempotency is not None:
            headers["I-Twilio-Idempotency-Token"] = idempotency
        return self.client.post(url or self.url, data=form, headers=headers)


@pytest.fixture(scope="session")
def receiver_server() -> Iterator[Receiver]:
    from fastapi import FastAPI

    from twilio_messaging.ui.app import URL_PREFIX, app

    # Mounted as the api-server mounts a plugin's fastapi_apps entry.
    root = FastAPI()
    root.mount(URL_PREFIX, app)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(root, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="receiver", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the receiver did not start")
        time.sleep(0.05)
    receiver = Receiver(port)
    yield receiver
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def store_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'callbacks.sqlite3'}"


@pytest.fixture
def callbacks_env(monkeypatch, store_url) -> dict[str, Any]:
    """The connection (its token signs) and a fresh store; callbacks on, base URL unset (seen URL signs)."""
    from twilio_messaging.callbacks.receiver import auth_tokens

    monkeypatch.setenv(
        "AIRFLOW_CONN_TWILIO_DEFAULT",
        json.dumps({"conn_type": "http", "host": "127.0.0.1", "login": ACCOUNT, "password": TOKEN}),
    )
    monkeypatch.setenv("TWILIO_CALLBACK_STORE", store_url)
    monkeypatch.delenv("TWILIO_CALLBACK_BASE_URL", raising=False)
    auth_tokens.forget()
    yield {"store_url": store_url}
    auth_tokens.forget()


@pytest.fixture
def receiver(receiver_server: Receiver, callbacks_env: dict[str, Any]) -> Receiver:
    return receiver_server


@pytest.fixture
def stored(callbacks_env):
    """The store the receiver writes (as the environment names it)."""
    from twilio_messaging.callbacks.store import store_from_url
    from twilio_messaging.settings import callback_settings

    settings = callback_settings()
    store = store_from_url(settings.store_url, settings.ttl)
    yield store
    store.close()

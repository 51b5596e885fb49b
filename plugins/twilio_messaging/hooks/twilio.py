"""``TwilioHook``: the Airflow connection to Twilio, and the one place that turns it into a base URL and auth.

It is an ``HttpHook`` (so ``HttpSensor`` machinery and ``hook.run(endpoint)`` work unchanged, with the URL
and credentials decided here) that also hands out the project's httpx clients::

    hook = TwilioHook("twilio_default")
    with hook.get_client(account_sid="AC...") as client:       # TwilioClient (httpx, sync)
        client.create_message(...)
    async with hook.get_async_client() as client:              # AsyncTwilioClient (httpx, async)
        ...
    hook.connection_settings()                                 # TwilioConnection: base_url, login, secret

Connections of type ``twilio`` default to host ``api.twilio.com`` over https; connections of type ``http``
(what this project used before the provider existed) keep HttpHook's rules, so they go on working as they are.
"""

from __future__ import annotations

import copy
import logging
from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow.providers.http.hooks.http import HttpHook

from twilio_messaging.client import AsyncTwilioClient, TwilioClient
from twilio_messaging.connection import DEFAULT_CONN_ID, TwilioConnection
from twilio_messaging.errors import TwilioConfigError
from twilio_messaging.forms import API_VERSION, messages_path
from twilio_messaging.get_provider_info import TWILIO_HOST, UI_FIELD_BEHAVIOUR

if TYPE_CHECKING:
    from airflow.sdk import Connection
    from requests import Session

log = logging.getLogger(__name__)

CONN_TYPE = "twilio"
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def _missing_connection_text(conn_id: str) -> str:
    return (
        f"Airflow connection '{conn_id}' is not defined. Create it (Admin > Connections > Twilio, "
        f"`airflow connections add {conn_id} --conn-type twilio --conn-login AC... --conn-password ...`, "
        f"or the AIRFLOW_CONN_{conn_id.upper()} environment variable in JSON form) with login = "
        "Account SID or API key SID, password = auth token or API key secret"
    )


def base_url(conn_type: str | None, host: str | None, schema: str | None, port: int | None) -> str:
    """The API base URL of a connection.

    ``twilio`` connections: host defaults to api.twilio.com and the scheme to https. ``http`` connections:
    HttpHook's own rule (a host with ``://`` is used as is, else ``<schema or http>://host``), so an
    existing http connection reaches the same server as before.
    """
    twilio_type = conn_type == CONN_TYPE
    host = (host or "").strip() or (TWILIO_HOST if twilio_type else "")
    if not host:
        raise TwilioConfigError("the connection has no host (use host 'api.twilio.com' with schema 'https')")
    url = host if "://" in host else f"{schema or ('https' if twilio_type else 'http')}://{host}"
    if port:
        url = f"{url}:{port}"
    return url.rstrip("/")


def settings_from_connection(conn: Connection, conn_id: str) -> TwilioConnection:
    """Where and as whom to call Twilio, from an Airflow connection; registers the secret with the masker."""
    from airflow.sdk.log import mask_secret

    if conn.password:
        mask_secret(conn.password)
    if not conn.login or not conn.password:
        raise TwilioConfigError(
            f"Airflow connection '{conn_id}' needs a login (Account SID or API key SID) "
            "and a password (auth token or API key secret)"
        )
    try:
        url = base_url(conn.conn_type, conn.host, conn.schema, conn.port)
    except TwilioConfigError as exc:
        raise TwilioConfigError(f"Airflow connection '{conn_id}': {exc}") from None
    parts = urlsplit(url)
    if parts.scheme != "https" and parts.hostname not in _LOOPBACK_HOSTS:
        # Basic auth over plain http exposes the token on the wire; HttpHook defaults to http.
        log.warning(
            "Airflow connection '%s' uses %s://%s; set its schema to 'https' for real Twilio",
            conn_id,
            parts.scheme,
            parts.hostname,
        )
    return TwilioConnection(base_url=url, username=conn.login, secret=conn.password, conn_id=conn_id)


class TwilioHook(HttpHook):
    """Connect to the Twilio REST API (Messages, 2010-04-01).

    :param twilio_conn_id: the Airflow connection: type ``twilio`` (or ``http``); login = Account SID or API
        key SID, password = auth token or API key secret (an API key login needs ``account_sid=`` where a
        client is asked for).
    :param method: the HTTP method of ``run()`` (the HttpHook interface); the clients choose their own.
    """

    conn_name_attr = "twilio_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = CONN_TYPE
    hook_name = "Twilio"
    default_host = TWILIO_HOST

    def __init__(self, twilio_conn_id: str = default_conn_name, method: str = "GET", **kwargs: Any) -> None:
        super().__init__(method=method, http_conn_id=twilio_conn_id, **kwargs)
        self.twilio_conn_id = twilio_conn_id

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """The connection form's relabelled fields (Airflow 3.2+ reads them from the provider info)."""
        return copy.deepcopy(UI_FIELD_BEHAVIOUR)

    # ---- what the connection means ------------------------------------------------------------------

    def get_airflow_connection(self) -> Connection:
        from airflow.sdk.exceptions import AirflowNotFoundException

        try:
            return self.get_connection(self.twilio_conn_id)
        except AirflowNotFoundException:
            # A task retry cannot create the connection: say how to, and fail at once.
            raise TwilioConfigError(_missing_connection_text(self.twilio_conn_id)) from None

    @cached_property
    def _settings(self) -> TwilioConnection:
        return settings_from_connection(self.get_airflow_connection(), self.twilio_conn_id)

    def connection_settings(self) -> TwilioConnection:
        """Base URL, login, secret and default Account SID (read once per hook, the secret masked)."""
        return self._settings

    # ---- httpx clients ------------------------------------------------------------------------------

    def get_client(self, account_sid: str | None = None, **kwargs: Any) -> TwilioClient:
        """A synchronous ``TwilioClient`` (use it with ``with``); kwargs: timeout, retry_policy, transport."""
        return TwilioClient(self.connection_settings(), account_sid=account_sid, **kwargs)

    def get_async_client(self, account_sid: str | None = None, **kwargs: Any) -> AsyncTwilioClient:
        """An ``AsyncTwilioClient`` (use it with ``async with``); the same kwargs as ``get_client``."""
        return AsyncTwilioClient(self.connection_settings(), account_sid=account_sid, **kwargs)

    # ---- HttpHook (requests) takes the same URL and auth ---------------------------------------------

    def get_conn(
        self, headers: dict[Any, Any] | None = None, extra_options: dict[str, Any] | None = None
    ) -> Session:
        """HttpHook's requests session, with this hook's base URL and credentials.

        HttpHook's own reading of the connection (its extras: proxies, verify, headers, ...) is kept; the
        base URL and the auth are replaced by ``connection_settings()``, so ``run()`` and the httpx clients
        reach the same server as the same user.
        """
        settings = self.connection_settings()  # first: a missing host or login fails with our message
        session = super().get_conn(headers, extra_options)
        self.base_url = settings.base_url
        session.auth = self.auth_type(settings.username, settings.secret)
        return session

    def url_from_endpoint(self, endpoint: str | None) -> str:
        if not self.base_url:
            self.base_url = self.connection_settings().base_url
        return super().url_from_endpoint(endpoint)

    def test_connection(self) -> tuple[bool, str]:
        """The UI's Test button: list one message of the account (a GET; nothing is sent)."""
        try:
            settings = self.connection_settings()
            sid = settings.account_sid
            # An API key login names no account; listing the accounts still proves the key works.
            endpoint = messages_path(sid) if sid else f"/{API_VERSION}/Accounts.json"
            self.method = "GET"
            self.run(endpoint, data={"PageSize": "1"})
        except Exception as exc:  # the UI shows the text; it never holds the secret (masked, not echoed)
            return False, str(exc)
        return True, f"Connected to {settings.base_url} as {settings.username}"

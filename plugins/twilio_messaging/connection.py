"""Settings for reaching Twilio, read from the Airflow connection ``twilio_default``."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from twilio_messaging.errors import TwilioConfigError
from twilio_messaging.validation import ACCOUNT_SID_RE

log = logging.getLogger(__name__)

DEFAULT_CONN_ID = "twilio_default"
# The Airflow pool that bounds Twilio API concurrency across every run of every DAG.
API_POOL = "twilio_api"
TWILIO_API_URL = "https://api.twilio.com"
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def base_url_from_parts(host: str | None, schema: str | None = None, port: int | None = None) -> str:
    """Build the base URL as ``HttpHook`` does, so the client and the sensor reach the same server."""
    if not host:
        raise TwilioConfigError("the connection has no host (use host 'api.twilio.com' with schema 'https')")
    url = host if "://" in host else f"{schema or 'http'}://{host}"
    if port:
        url = f"{url}:{port}"
    return url.rstrip("/")


@dataclass(frozen=True)
class TwilioConnection:
    """Where and as whom to call Twilio. ``secret`` (auth token or API key secret) is kept out of ``repr``."""

    base_url: str
    username: str
    secret: str = field(repr=False)
    account_sid: str | None = None
    conn_id: str = DEFAULT_CONN_ID

    def __post_init__(self) -> None:
        object.__setattr__(self, "base_url", self.base_url.rstrip("/"))
        # An Account SID login doubles as the default account; an API key (SK...) login needs one given.
        if self.account_sid is None and ACCOUNT_SID_RE.fullmatch(self.username or ""):
            object.__setattr__(self, "account_sid", self.username)

    @classmethod
    def from_airflow(cls, conn_id: str = DEFAULT_CONN_ID) -> TwilioConnection:
        """Read the Airflow connection and register its password with the secrets masker."""
        from airflow.sdk import BaseHook
        from airflow.sdk.exceptions import AirflowNotFoundException
        from airflow.sdk.log import mask_secret

        try:
            conn = BaseHook.get_connection(conn_id)
        except AirflowNotFoundException:
            # A task retry cannot create the connection: say how to, and fail at once.
            raise TwilioConfigError(
                f"Airflow connection '{conn_id}' is not defined. Create it (Admin > Connections, "
                f"`airflow connections add {conn_id}`, or the AIRFLOW_CONN_{conn_id.upper()} environment "
                "variable in JSON form) with conn_type http, host api.twilio.com, schema https, login = "
                "Account SID or API key SID, password = auth token or API key secret"
            ) from None
        if conn.password:
            mask_secret(conn.password)
        if not conn.login or not conn.password:
            raise TwilioConfigError(
                f"Airflow connection '{conn_id}' needs a login (Account SID or API key SID) "
                "and a password (auth token or API key secret)"
            )
        try:
            base_url = base_url_from_parts(conn.host, conn.schema, conn.port)
        except TwilioConfigError as exc:
            raise TwilioConfigError(f"Airflow connection '{conn_id}': {exc}") from None
        parts = urlsplit(base_url)
        if parts.scheme != "https" and parts.hostname not in _LOOPBACK_HOSTS:
            # Basic auth over plain http exposes the token on the wire; HttpHook defaults to http.
            log.warning(
                "Airflow connection '%s' uses %s://%s; set its schema to 'https' for real Twilio",
                conn_id,
                parts.scheme,
                parts.hostname,
            )
        return cls(base_url=base_url, username=conn.login, secret=conn.password, conn_id=conn_id)

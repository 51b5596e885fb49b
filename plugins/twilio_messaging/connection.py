"""Where and as whom to call Twilio: ``TwilioConnection``, the plain settings the httpx clients take.

``TwilioHook`` (twilio_messaging.hooks) is the one place that reads them from an Airflow connection:
``TwilioHook(conn_id).connection_settings()``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from twilio_messaging.validation import ACCOUNT_SID_RE

# The Airflow connection the provider uses unless told otherwise; DAGs and tasks name it as
# ``TwilioHook.default_conn_name``. Kept here, below the hook, so the clients' messages can name it too.
DEFAULT_CONN_ID = "twilio_default"


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

"""HTTP Basic auth of the Twilio API: ``AccountSid:AuthToken``, or an API key ``SK…:secret`` acting for it."""

from __future__ import annotations

import base64
import binascii
import hmac

from sandbox.errors import authenticate_error
from sandbox.http import Scope, header


class BasicAuth:
    """Checks the ``Authorization`` header against one account's token and one API key."""

    def __init__(self, account_sid: str, auth_token: str, api_key_sid: str, api_key_secret: str) -> None:
        # Compared as bytes: hmac.compare_digest refuses non-ASCII str, and a client may send any bytes.
        self._pairs = (
            (account_sid.encode(), auth_token.encode()),
            (api_key_sid.encode(), api_key_secret.encode()),
        )

    def credentials(self, scope: Scope) -> tuple[bytes, bytes] | None:
        scheme, _, encoded = header(scope, b"authorization").partition(b" ")
        if scheme.lower() != b"basic":
            return None
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            return None
        username, sep, password = decoded.partition(b":")
        return (username, password) if sep else None

    def is_authorized(self, scope: Scope) -> bool:
        given = self.credentials(scope)
        if given is None:
            return False
        username, password = given
        matches = [
            hmac.compare_digest(username, user) & hmac.compare_digest(password, secret)
            for user, secret in self._pairs
        ]
        return any(matches)

    def check(self, scope: Scope) -> None:
        """Raise Twilio's 401 / 20003 unless the request carries valid credentials."""
        if not self.is_authorized(scope):
            raise authenticate_error()

"""``X-Twilio-Signature``: how Twilio signs a webhook request, and checking it.

The signature is base64(HMAC-SHA1(auth token, URL + each parameter name followed by its value, names
sorted, a repeated name's values sorted)). twilio-python's ``RequestValidator`` is the reference (the tests
check against it); like it, a URL is also accepted with its default port added or removed, since Twilio
signs the URL as configured and proxies disagree on writing ``:443``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

SIGNATURE_HEADER = "X-Twilio-Signature"
_DEFAULT_PORTS = {"http": 80, "https": 443}


def compute_signature(url: str, params: Iterable[tuple[str, str]], auth_token: str) -> str:
    values: dict[str, set[str]] = {}
    for name, value in params:
        values.setdefault(name, set()).add(value)
    payload = url + "".join(name + value for name in sorted(values) for value in sorted(values[name]))
    digest = hmac.new(auth_token.encode("utf-8"), payload.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def url_variants(url: str) -> tuple[str, ...]:
    """The URL as given, with its scheme's default port written out, and without it."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return (url,)
    default = _DEFAULT_PORTS.get(parts.scheme)
    if default is None or parts.hostname is None or (port is not None and port != default):
        return (url,)
    userinfo = parts.netloc.rpartition("@")[0]
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    bare = (userinfo + "@" if userinfo else "") + host
    with_port = urlunsplit(parts._replace(netloc=f"{bare}:{default}"))
    without_port = urlunsplit(parts._replace(netloc=bare))
    return tuple(dict.fromkeys((url, with_port, without_port)))


def is_valid(url: str, params: Iterable[tuple[str, str]], signature: str, auth_token: str) -> bool:
    """True when ``signature`` is Twilio's for this URL and form, compared in constant time."""
    pairs = list(params)
    given = signature.encode("utf-8", "replace")
    return any(
        hmac.compare_digest(compute_signature(variant, pairs, auth_token).encode("ascii"), given)
        for variant in url_variants(url)
    )

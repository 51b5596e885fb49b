"""A root middleware of the api-server: a trigger of this project's DAGs whose conf is not valid Unicode
gets a 400 naming the field, before Airflow sees it.

JSON may carry a lone surrogate (``"\\ud800"``), which no text encoding can store. Airflow 3.3.2 accepts
such a trigger, creates the run, then fails to write its own answer and replies 500 (upstream bug). On a
transactional database the run is rolled back with the error; where the api-server autocommits (the local
stack on SQLite, see ``scripts/airflow_stack.py``) it stays, and every later listing of the DAG's runs
answers 500. The tasks refuse such a conf anyway (``validation``), so refusing it at the door loses nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import Any

from twilio_messaging import contract

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_DAGS = "|".join(re.escape(d) for d in (contract.WORKFLOW_DAG_ID, contract.BATCH_DAG_ID))
TRIGGER_PATH = re.compile(rf"/api/v2/dags/(?:{_DAGS})/dagRuns/?$")
# Only a body with a \uD800-\uDFFF escape can hold a surrogate; every other body passes unparsed.
SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abcdefABCDEF]")


def lone_surrogate_field(value: Any, path: str = "") -> str | None:
    """The dotted path of the first string (or key) holding a lone surrogate, or None."""
    if isinstance(value, str):
        return path if any("\ud800" <= ch <= "\udfff" for ch in value) else None
    items: Iterator[tuple[str, Any]]
    if isinstance(value, dict):
        for key in value:
            if lone_surrogate_field(key) is not None:
                return f"{path}.{key!r}".lstrip(".")
        items = ((f"{path}.{key}", item) for key, item in value.items())
    elif isinstance(value, list):
        items = ((f"{path}[{i}]", item) for i, item in enumerate(value))
    else:
        return None
    for where, item in items:
        found = lone_surrogate_field(item, where.lstrip("."))
        if found is not None:
            return found
    return None


class TriggerConfGuard:
    """ASGI middleware: 400 for a trigger of the project's DAGs holding a lone surrogate; else untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or not TRIGGER_PATH.search(scope["path"]):
            await self.app(scope, receive, send)
            return
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                await self.app(scope, _replay(b"", message, receive), send)
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
        field = _refused_field(body)
        if field is None:
            await self.app(scope, _replay(body, None, receive), send)
            return
        detail = f"Invalid input for '{field}': must be valid Unicode text; it contains a lone surrogate"
        payload = json.dumps({"detail": detail}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
        await send({"type": "http.response.start", "status": 400, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


def _refused_field(body: bytes) -> str | None:
    if not SURROGATE_ESCAPE.search(body):
        return None
    try:
        parsed = json.loads(body)
    except ValueError:
        return None  # not JSON: Airflow answers it
    return lone_surrogate_field(parsed)


def _replay(body: bytes, first: Message | None, receive: Receive) -> Receive:
    """A ``receive`` that hands the app the body read here, then whatever comes after it."""
    pending: list[Message] = [first] if first is not None else []
    if first is None:
        pending.append({"type": "http.request", "body": body, "more_body": False})

    async def replayed() -> Message:
        return pending.pop(0) if pending else await receive()

    return replayed

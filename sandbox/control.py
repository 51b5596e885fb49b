"""The ``/_sandbox/`` control API: no auth, loopback clients only, JSON (see README.md "Control API")."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from sandbox.errors import clip
from sandbox.http import Receive, Scope, Send, read_body, respond
from sandbox.lifecycle import OUTCOMES
from sandbox.resources import render_message

if TYPE_CHECKING:
    from sandbox.app import SandboxApp

# A fault setting is a few dozen bytes; the limit only has to stop a flood.
MAX_CONTROL_BODY = 64 * 1024
LOOPBACK_CLIENTS = frozenset({"127.0.0.1", "::1", "localhost"})
Handler = Callable[[Scope, Receive, Send], Awaitable[None]]


class ControlAPI:
    """Routes of the control API over one SandboxApp's store, faults, stats and sender queues."""

    def __init__(self, app: SandboxApp) -> None:
        self.app = app
        self.routes: dict[str, dict[str, Handler]] = {
            "/_sandbox/health": {"GET": self._health},
            "/_sandbox/messages": {"GET": self._messages, "DELETE": self._reset},
            "/_sandbox/faults": {"GET": self._faults, "PUT": self._set_faults, "DELETE": self._clear_faults},
            "/_sandbox/stats": {"GET": self._stats},
            "/_sandbox/config": {"GET": self._config},
            "/_sandbox/senders": {"GET": self._senders},
            "/_sandbox/callbacks": {"GET": self._callbacks},
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client")
        if client and client[0] not in LOOPBACK_CLIENTS:
            await respond(send, 403, {"error": "the control API answers loopback clients only"})
            return
        method, path = scope["method"], scope["path"].rstrip("/")
        methods = self.routes.get(path)
        if methods is None:
            await respond(send, 404, {"error": clip(f"no control route {method} {path}")})
        elif method not in methods:
            allow = ", ".join(methods).encode()
            await respond(send, 405, {"error": f"{path} allows {allow.decode()}"}, [(b"allow", allow)])
        else:
            await methods[method](scope, receive, send)

    async def _health(self, scope: Scope, receive: Receive, send: Send) -> None:
        await respond(send, 200, {"status": "ok"})

    async def _messages(self, scope: Scope, receive: Receive, send: Send) -> None:
        now = time.monotonic()
        await respond(send, 200, {"messages": [render_message(r, now) for r in self.app.store.all()]})

    async def _reset(self, scope: Scope, receive: Receive, send: Send) -> None:
        app = self.app
        deleted = len(app.store)
        app.store.clear()
        app.callbacks.clear()
        app.stats.reset()
        app.senders.clear()
        await respond(send, 200, {"deleted": deleted})

    async def _faults(self, scope: Scope, receive: Receive, send: Send) -> None:
        await respond(send, 200, self.app.faults.snapshot().to_dict())

    async def _set_faults(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await read_body(scope, receive, MAX_CONTROL_BODY)
        try:
            changes = json.loads(body or b"{}")
        except RecursionError:
            await respond(
                send, 400, {"error": "the body is nested too deeply; it must be a flat JSON object"}
            )
            return
        except ValueError as exc:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
            await respond(send, 400, {"error": clip(f"the body is not JSON: {exc}")})
            return
        try:
            if not isinstance(changes, dict):
                raise ValueError("the body must be a JSON object")
            config = self.app.faults.update(changes)
        except ValueError as exc:
            await respond(send, 400, {"error": clip(str(exc))})
            return
        await respond(send, 200, config.to_dict())

    async def _clear_faults(self, scope: Scope, receive: Receive, send: Send) -> None:
        await respond(send, 200, self.app.faults.clear().to_dict())

    async def _stats(self, scope: Scope, receive: Receive, send: Send) -> None:
        await respond(send, 200, self.app.stats.snapshot())

    async def _callbacks(self, scope: Scope, receive: Receive, send: Send) -> None:
        await respond(send, 200, self.app.callbacks.snapshot())

    async def _senders(self, scope: Scope, receive: Receive, send: Send) -> None:
        await respond(send, 200, self.app.senders.snapshot())

    async def _config(self, scope: Scope, receive: Receive, send: Send) -> None:
        s = self.app.settings
        body: dict[str, Any] = {
            "account_sid": s.account_sid,
            "api_key_sid": s.api_key_sid,
            "step_delay": s.profile.step_delay,
            "jitter": s.profile.jitter,
            "time_scale": s.time_scale,
            "sender_mps": s.sender_mps,
            "sender_max_backlog": s.sender_max_backlog,
            "callback_allow": self.app.callbacks.allowlist.describe(),
            "outcomes": {digits: o.description for digits, o in OUTCOMES.items()},
        }
        await respond(send, 200, body)

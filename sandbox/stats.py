"""Request, fault and callback counters for ``GET /_sandbox/stats``."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

REQUEST_KINDS = ("create", "fetch", "list", "update", "delete", "unauthorized", "not_found", "invalid")
FAULT_KINDS = ("429", "5xx", "lost_response", "concurrency_429")
# Sender-queue outcomes (sandbox/senders.py): not injected faults, Twilio behaviour under --sender-mps.
QUEUE_KINDS = ("expired_30001", "refused_21611")
# sent/failed/blocked: callbacks (a retried callback counts once, as sent or failed); retried: extra attempts;
# dropped, duplicated, reordered: the callback faults applied.
CALLBACK_KINDS = ("sent", "failed", "blocked", "retried", "dropped", "duplicated", "reordered")


class Stats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, Counter[str]] = {}
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._counts = {
                "requests": Counter(),
                "faults": Counter(),
                "callbacks": Counter(),
                "queue": Counter(),
            }

    def count(self, group: str, kind: str) -> None:
        with self._lock:
            self._counts[group][kind] += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": {k: self._counts["requests"][k] for k in REQUEST_KINDS},
                "faults": {k: self._counts["faults"][k] for k in FAULT_KINDS},
                "callbacks": {k: self._counts["callbacks"][k] for k in CALLBACK_KINDS},
                "queue": {k: self._counts["queue"][k] for k in QUEUE_KINDS},
            }

"""Benchmark: tracking with status callbacks vs polling, side by side in one run (the triggerer's view).

Run with ``python -m bench.callbacks_tracking [--messages 200] [--poll-interval 60]``.

The sandbox (``--step-delay 1 --jitter 0``: a message is final 3 s after it is created) gets ``--messages``
creates, 2 % of them to a number that ends ``undelivered`` (30003). Each message is then awaited by a
``TwilioMessageStatusTrigger``, all of them at once in one event loop, as the triggerer runs them, with the
production poll interval (60 s, backing off to 15 min) and the default 2 s look into the callback store.
Three configurations, each on a fresh sandbox and store:

- ``polling``: no StatusCallback (the baseline: what tracking costs without callbacks);
- ``callbacks``: StatusCallback to the receiver (the plugin app in its own uvicorn process, SQLite store);
- ``callbacks, 20 % lost``: the same, with the sandbox dropping 20 % of all callbacks (``rate_callback_drop``,
  seeded): a message whose final callback is lost must be found by polling.

For each: requests to Twilio per message (the sandbox's fetch count / messages), the latency from the
message's final status (creation + 3 s) to the trigger's event (median and p90), and whether every message
ended with its true final status (none unconfirmed, none wrong). This is the trigger's part of a workflow
run's end; the scheduler's own latency (a task after the trigger fires) comes on top in a real run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "plugins"))

from bench.callbacks_throughput import start_receiver  # noqa: E402
from sandbox.testing import run_sandbox  # noqa: E402

STEP_DELAY = 1.0
FINAL_AFTER = 3 * STEP_DELAY  # queued -> sending -> sent -> delivered|undelivered
FAILING_EVERY = 50  # 2 % undelivered
TARGET_REQUESTS = 0.05
TARGET_LATENCY = 5.0


@dataclass
class Result:
    name: str
    messages: int
    fetches: int
    latencies: list[float]
    wrong: int
    unconfirmed: int
    by_callback: int
    elapsed: float
    dropped: int = 0

    def line(self) -> str:
        lat = sorted(self.latencies)
        p90 = lat[int(len(lat) * 0.9)] if lat else float("nan")
        return (
            f"{self.name:<22} {self.messages:>8} {self.fetches / self.messages:>10.3f} "
            f"{statistics.median(lat):>10.1f} {p90:>8.1f} {self.by_callback:>11} {self.unconfirmed:>11} "
            f"{self.wrong:>6} {self.elapsed:>8.0f} {self.dropped:>8}"
        )


HEADER = (
    f"{'configuration':<22} {'messages':>8} {'req/msg':>10} {'p50 s':>10} {'p90 s':>8} {'by callback':>11} "
    f"{'unconfirmed':>11} {'wrong':>6} {'wall s':>8} {'dropped':>8}"
)


def _expected(n: int) -> tuple[str, str]:
    """(To, final status): the sandbox decides by the last four digits (3003: undelivered)."""
    if n % FAILING_EVERY == 0:
        return f"+1555{n % 1000:03d}3003", "undelivered"
    return f"+1555{n % 1000:03d}0000", "delivered"


async def _track(
    sids: list[str], created: dict[str, float], poll_interval: float
) -> dict[str, tuple[dict, float]]:
    from twilio_messaging.triggers.twilio import TwilioMessageStatusTrigger

    async def one(sid: str) -> tuple[str, dict, float]:
        trigger = TwilioMessageStatusTrigger(
            sid, deadline=time.time() + 3600, poll_interval=poll_interval, max_poll_interval=900.0
        )
        async for event in trigger.run():
            return sid, event.payload, time.time()
        raise AssertionError("no event")

    done = await asyncio.gather(*(one(sid) for sid in sids))
    return {sid: (payload, at) for sid, payload, at in done}


def _run(name: str, messages: int, poll_interval: float, callbacks: bool, drop_percent: int) -> Result:
    folder = Path(tempfile.mkdtemp(prefix="bench-tracking-"))
    store = f"sqlite:///{folder / 'callbacks.sqlite3'}"
    with run_sandbox("--step-delay", str(STEP_DELAY), "--jitter", "0") as sandbox:
        os.environ["AIRFLOW_CONN_TWILIO_DEFAULT"] = sandbox.conn_json()
        os.environ["TWILIO_CALLBACK_STORE"] = store
        receiver_proc = None
        receiver_url = None
        if callbacks:
            receiver_proc, receiver_url = start_receiver(
                store, str(folder), token=sandbox.auth_token, account=sandbox.account_sid
            )
            if drop_percent:
                sandbox.set_faults(rate_callback_drop=drop_percent / 100, seed=11)
        try:
            created: dict[str, float] = {}
            expected: dict[str, str] = {}
            started = time.time()
            with httpx.Client(
                auth=(sandbox.account_sid, sandbox.auth_token), trust_env=False, timeout=30
            ) as http:
                for n in range(messages):
                    to, outcome = _expected(n)
                    form = {"To": to, "From": "+15005550006", "Body": f"bench {n}"}
                    if receiver_url:
                        form["StatusCallback"] = receiver_url
                    reply = http.post(sandbox.messages_url, data=form)
                    reply.raise_for_status()
                    created[reply.json()["sid"]] = time.time()
                    expected[reply.json()["sid"]] = outcome
            events = asyncio.run(_track(list(created), created, poll_interval))
            elapsed = time.time() - started
            fetches = sandbox.stats()["requests"]["fetch"]
            dropped = sandbox.stats()["callbacks"].get("dropped", 0)
        finally:
            if receiver_proc is not None:
                receiver_proc.terminate()
                receiver_proc.wait(timeout=20)
    latencies = [at - (created[sid] + FINAL_AFTER) for sid, (_, at) in events.items()]
    return Result(
        name=name,
        messages=messages,
        fetches=fetches,
        latencies=latencies,
        wrong=sum(1 for sid, (p, _) in events.items() if p["message"]["status"] != expected[sid]),
        unconfirmed=sum(1 for p, _ in events.values() if p["status"] != "done"),
        by_callback=sum(1 for p, _ in events.values() if p.get("source") == "callback"),
        elapsed=elapsed,
        dropped=dropped,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--poll-interval", type=float, default=60.0, help="the trigger's (production: 60)")
    args = parser.parse_args(argv)
    os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="bench-tracking-home-"))
    rows = [
        _run("polling", args.messages, args.poll_interval, callbacks=False, drop_percent=0),
        _run("callbacks", args.messages, args.poll_interval, callbacks=True, drop_percent=0),
        _run("callbacks, 20 % lost", args.messages, args.poll_interval, callbacks=True, drop_percent=20),
    ]
    print(HEADER)
    for row in rows:
        print(row.line())
    with_callbacks = rows[1]
    ok = (
        with_callbacks.fetches / with_callbacks.messages <= TARGET_REQUESTS
        and statistics.median(with_callbacks.latencies) <= TARGET_LATENCY
        and all(row.wrong == 0 and row.unconfirmed == 0 for row in rows)
    )
    print(
        f"targets: callbacks <= {TARGET_REQUESTS} requests/message and median <= {TARGET_LATENCY:g} s "
        "from the final status; every configuration: none wrong, none unconfirmed -> "
        + ("PASS" if ok else "FAIL")
    )
    print(json.dumps({row.name: {"fetches": row.fetches, "messages": row.messages} for row in rows}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: the status-callback receiver and its store, per backend, side by side in one run.

Run with ``python -m bench.callbacks_throughput [--messages 1500] [--concurrency 32]``.

For each store backend (SQLite file, Redis, PostgreSQL; a backend whose server is not running is reported
as skipped) it measures

1. the store alone: ``record()`` calls per second from 8 threads (what picks the shared backend);
2. the receiver: the plugin's app served by uvicorn in its own process (one worker, as one api-server
   worker), driven by an httpx client process with signed callbacks, three per message (queued, sent,
   delivered), plus 10 % duplicates (the same form and idempotency token again, as a Twilio retry) and
   reordered in windows of 50 (a ``delivered`` often arrives before its ``sent``). It then checks that
   every message's stored status is ``delivered``: none lost, none regressed.

Baseline in the same run: the same client against the same server sending unsigned callbacks, which the
receiver refuses with 403 before any store work; the ratio shows what signature checking and the store
cost. Client and server share the machine's cores, so the figures are lower bounds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "plugins"))

from scripts.airflow_stack import free_port  # noqa: E402
from tests.callbacks.stores import BACKENDS, Unavailable, store_url  # noqa: E402
from twilio_messaging.callbacks.signature import compute_signature  # noqa: E402
from twilio_messaging.callbacks.store import StatusUpdate, store_from_url  # noqa: E402

FLOOR_PER_SECOND = 500.0
ACCOUNT = "AC" + "b" * 32
TOKEN = "bench-callback-auth-token"
PATH = "/twilio-messages/status-callback"
STATUSES = ("queued", "sent", "delivered")


def _serve(port: int) -> None:
    """The receiver process: the plugin app mounted as the api-server mounts it."""
    import uvicorn
    from fastapi import FastAPI

    from twilio_messaging.ui.app import URL_PREFIX, app

    root = FastAPI()
    root.mount(URL_PREFIX, app)
    uvicorn.run(root, host="127.0.0.1", port=port, log_level="error", access_log=False)


def _server_env(store: str, home: str, token: str = TOKEN, account: str = ACCOUNT) -> dict[str, str]:
    conn = {"conn_type": "http", "host": "127.0.0.1", "login": account, "password": token}
    return {
        **os.environ,
        "AIRFLOW_HOME": home,
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW_CONN_TWILIO_DEFAULT": json.dumps(conn),
        "TWILIO_CALLBACK_STORE": store,
        "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "plugins")]),
    }


def start_receiver(
    store: str, home: str, *, token: str = TOKEN, account: str = ACCOUNT
) -> tuple[subprocess.Popen[bytes], str]:
    """The receiver in a process of its own (one uvicorn worker); returns it and the receiver's URL."""
    port = free_port()
    env = _server_env(store, home, token, account)
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.callbacks_throughput", "--serve", str(port)], cwd=REPO, env=env
    )
    url = f"http://127.0.0.1:{port}{PATH}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.post(url, timeout=1, trust_env=False)
            return proc, url
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the receiver did not start within 60 s")


def _workload(
    messages: int, url: str, signed: bool, seed: int = 7
) -> list[tuple[dict[str, str], dict[str, str]]]:
    rng = random.Random(seed)
    sends: list[tuple[dict[str, str], dict[str, str]]] = []
    for n in range(messages):
        sid = f"SM{uuid.UUID(int=rng.getrandbits(128)).hex}"
        for status in STATUSES:
            form = {
                "MessageSid": sid,
                "SmsSid": sid,
                "MessageStatus": status,
                "SmsStatus": status,
                "AccountSid": ACCOUNT,
                "From": "+15005550006",
                "To": f"+1555{n:07d}",
                "ApiVersion": "2010-04-01",
            }
            headers = {"I-Twilio-Idempotency-Token": uuid.UUID(int=rng.getrandbits(128)).hex}
            if signed:
                headers["X-Twilio-Signature"] = compute_signature(url, list(form.items()), TOKEN)
            sends.append((form, headers))
    sends += rng.sample(sends, len(sends) // 10)  # 10 % duplicates: a retry carries the same token
    window = 50
    for start in range(0, len(sends), window):  # reordered: each window of 50 shuffled
        part = sends[start : start + window]
        rng.shuffle(part)
        sends[start : start + window] = part
    return sends


async def _drive(
    url: str, sends: list[tuple[dict[str, str], dict[str, str]]], concurrency: int
) -> tuple[float, dict[int, int], list[float]]:
    """POST every callback with ``concurrency`` in flight. aiohttp (ships with Airflow) as the client: it
    costs far less CPU per request than httpx, and the client shares the cores with the server here."""
    import aiohttp

    codes: dict[int, int] = {}
    latencies: list[float] = []
    queue = iter(sends)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as client:

        async def worker() -> None:
            for form, headers in queue:
                started = time.perf_counter()
                async with client.post(url, data=form, headers=headers) as reply:
                    await reply.read()
                latencies.append(time.perf_counter() - started)
                codes[reply.status] = codes.get(reply.status, 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started, codes, latencies


def _store_rate(url: str, records: int = 6000, threads: int = 8) -> float:
    store = store_from_url(url, 3600)
    updates = [StatusUpdate(f"SM{n // 3:032x}", STATUSES[n % 3]) for n in range(records)]
    chunks = [updates[i::threads] for i in range(threads)]

    def run(chunk: list[StatusUpdate]) -> None:
        for update in chunk:
            store.record(update, uuid.uuid4().hex)

    workers = [threading.Thread(target=run, args=(chunk,)) for chunk in chunks]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    store.close()
    return records / elapsed


@dataclass
class Row:
    backend: str
    store_per_s: float
    callbacks: int = 0
    per_s: float = 0.0
    baseline_per_s: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    lost: int = 0
    regressed: int = 0
    codes: dict[int, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return (
            self.per_s >= FLOOR_PER_SECOND
            and not self.lost
            and not self.regressed
            and set(self.codes) == {204}
        )

    def line(self) -> str:
        return (
            f"{self.backend:<11} {self.store_per_s:>11.0f} {self.callbacks:>9} {self.per_s:>9.0f} "
            f"{self.baseline_per_s:>10.0f} {self.per_s / self.baseline_per_s:>6.2f} {self.p50_ms:>7.1f} "
            f"{self.p99_ms:>7.1f} {self.lost:>5} {self.regressed:>5}  {self.codes}"
            + ("" if self.ok else "  BELOW TARGET")
        )


HEADER = (
    f"{'backend':<11} {'store rec/s':>11} {'callbacks':>9} {'recv cb/s':>9} {'403 base/s':>10} "
    f"{'ratio':>6} {'p50 ms':>7} {'p99 ms':>7} {'lost':>5} {'regr':>5}  codes"
)


def _bench_backend(backend: str, messages: int, concurrency: int, folder: Path) -> Row:
    with store_url(backend, folder) as url:
        row = Row(backend, _store_rate(url))
        store_from_url(url, 3600).clear()
        home = tempfile.mkdtemp(prefix="bench-callbacks-home-")
        proc, receiver = start_receiver(url, home)
        try:
            baseline = _workload(min(messages, 500), receiver, signed=False)
            base_s, _, _ = asyncio.run(_drive(receiver, baseline, concurrency))
            sends = _workload(messages, receiver, signed=True)
            elapsed, row.codes, latencies = asyncio.run(_drive(receiver, sends, concurrency))
        finally:
            proc.terminate()
            proc.wait(timeout=20)
        store = store_from_url(url, 3600)
        sids = {form["MessageSid"] for form, _ in sends}
        final = store.get_many(sids)
        store.close()
        latencies.sort()
        row.callbacks = len(sends)
        row.per_s = len(sends) / elapsed
        row.baseline_per_s = len(baseline) / base_s
        row.p50_ms = statistics.median(latencies) * 1000
        row.p99_ms = latencies[int(len(latencies) * 0.99)] * 1000
        row.lost = len(sids - final.keys())
        row.regressed = sum(1 for u in final.values() if u.status != "delivered")
        return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1500)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        _serve(args.serve)
        return 0
    folder = Path(tempfile.mkdtemp(prefix="bench-callbacks-"))
    failed = False
    print(HEADER)
    for backend in args.backends.split(","):
        try:
            row = _bench_backend(backend, args.messages, args.concurrency, folder)
        except Unavailable as exc:
            print(f"{backend:<11} skipped: {exc}")
            continue
        failed |= not row.ok
        print(row.line(), flush=True)
    print(
        f"target: >= {FLOOR_PER_SECOND:.0f} signed callbacks/s, none lost, none regressed, every answer 204"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

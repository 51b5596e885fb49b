"""Benchmark: the sandbox's create+fetch throughput (floor: 1,500 requests/s on the 2-core CI machine).

Run with ``python -m bench.sandbox_throughput [--seconds 10] [--processes 2] [--concurrency 32]``.
It starts the sandbox with run_sandbox (no injected latency), then client processes each drive an
httpx.AsyncClient: every loop creates a message and fetches it. As a baseline measured in the same run,
the same clients hit ``GET /_sandbox/health`` (no work at all), so the ratio shows how much of the
client+server ceiling the Messages API keeps. Client and server share the machine's cores, so the figure
is a lower bound for the server alone.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sandbox.testing import run_sandbox

FLOOR_RPS = 1500.0


class _HttpxSession:
    """httpx.AsyncClient behind the small interface the workers use."""

    def __init__(self, base_url: str, auth: tuple[str, str], conc: int) -> None:
        limits = httpx.Limits(max_connections=conc, max_keepalive_connections=conc)
        self._c = httpx.AsyncClient(base_url=base_url, auth=auth, limits=limits, trust_env=False, timeout=30)

    async def get(self, path: str) -> tuple[int, dict]:
        r = await self._c.get(path)
        return r.status_code, r.json()

    async def post(self, path: str, form: dict[str, str]) -> tuple[int, dict]:
        r = await self._c.post(path, data=form)
        return r.status_code, r.json()

    async def close(self) -> None:
        await self._c.aclose()


class _AiohttpSession:
    """aiohttp.ClientSession (ships with Airflow): far less client CPU per request than httpx."""

    def __init__(self, base_url: str, auth: tuple[str, str], conc: int) -> None:
        import aiohttp

        self._base = base_url
        self._s = aiohttp.ClientSession(
            auth=aiohttp.BasicAuth(*auth),
            connector=aiohttp.TCPConnector(limit=conc),
            timeout=aiohttp.ClientTimeout(total=30),
        )

    async def get(self, path: str) -> tuple[int, dict]:
        async with self._s.get(self._base + path) as r:
            return r.status, await r.json()

    async def post(self, path: str, form: dict[str, str]) -> tuple[int, dict]:
        async with self._s.post(self._base + path, data=form) as r:
            return r.status, await r.json()

    async def close(self) -> None:
        await self._s.close()


async def _drive(
    base_url: str, auth: tuple[str, str], account: str, mode: str, seconds: float, conc: int, client: str
):
    session = (_AiohttpSession if client == "aiohttp" else _HttpxSession)(base_url, auth, conc)
    messages = f"/2010-04-01/Accounts/{account}/Messages"
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def worker(n: int) -> None:
        nonlocal errors
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            if mode == "baseline":
                status, _ = await session.get("/_sandbox/health")
                ok = status == 200
                latencies.append(time.perf_counter() - t0)
            else:
                form = {
                    "To": f"+1555{n:03d}{len(latencies) % 10000:04d}",
                    "From": "+15005550006",
                    "Body": "hi",
                }
                status, created = await session.post(f"{messages}.json", form)
                ok = status == 201
                latencies.append(time.perf_counter() - t0)
                if ok:
                    t1 = time.perf_counter()
                    status, fetched = await session.get(f"{messages}/{created['sid']}.json")
                    ok = status == 200 and fetched["sid"] == created["sid"]
                    latencies.append(time.perf_counter() - t1)
            errors += not ok

    try:
        await asyncio.gather(*(worker(i) for i in range(conc)))
    finally:
        await session.close()
    return latencies, errors


def _client(args: tuple) -> tuple[list[float], int]:
    return asyncio.run(_drive(*args))


def _warm_up(_: int) -> None:
    import aiohttp  # noqa: F401  (imported once per worker before the clock starts)


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(mode: str, sb, processes: int, conc: int, seconds: float, client: str) -> dict[str, float]:
    args = (sb.base_url, (sb.account_sid, sb.auth_token), sb.account_sid, mode, seconds, conc, client)
    with mp.get_context("spawn").Pool(processes) as pool:
        pool.map(_warm_up, range(processes))  # interpreter start-up is not part of the measurement
        cpu0 = _cpu_seconds(sb.pid)
        results = pool.map(_client, [args] * processes)
        server_cpu = _cpu_seconds(sb.pid) - cpu0
    latencies = [x for lat, _ in results for x in lat]
    errors = sum(e for _, e in results)
    latencies.sort()
    return {
        "requests": len(latencies),
        "errors": errors,
        # the drive window, not the pool's start-up, is what the clients spent issuing requests
        "rps": len(latencies) / seconds,
        "server_cpu": server_cpu / seconds,
        "per_cpu_s": len(latencies) / server_cpu if server_cpu else 0.0,
        "p50_ms": statistics.median(latencies) * 1000 if latencies else 0.0,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000 if latencies else 0.0,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--processes", type=int, default=2, help="client processes")
    p.add_argument("--concurrency", type=int, default=16, help="concurrent requests per client process")
    p.add_argument("--client", choices=["aiohttp", "httpx"], default="aiohttp")
    args = p.parse_args()
    with run_sandbox("--step-delay", "0") as sb:
        rows = [
            (mode, run(mode, sb, args.processes, args.concurrency, args.seconds, args.client))
            for mode in ("baseline", "create+fetch")
        ]
        stored = len(sb.messages())
    print(
        f"\nSandbox throughput: {args.processes} {args.client} client processes"
        f" x {args.concurrency} concurrent, "
        f"{args.seconds:g} s per workload, {os.cpu_count()} CPUs shared by clients and server"
    )
    print(
        f"{'workload':<14}{'requests':>10}{'errors':>8}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'vs baseline':>13}{'server CPU':>12}{'req/CPU-s':>11}"
    )
    base = rows[0][1]["rps"]
    for mode, r in rows:
        print(
            f"{mode:<14}{r['requests']:>10}{r['errors']:>8}{r['rps']:>10.0f}{r['p50_ms']:>9.1f}{r['p99_ms']:>9.1f}"
            f"{r['rps'] / base:>13.0%}{r['server_cpu']:>12.0%}{r['per_cpu_s']:>11.0f}"
        )
    rps = rows[1][1]["rps"]
    verdict = "PASS" if rps >= FLOOR_RPS and rows[1][1]["errors"] == 0 else "BELOW FLOOR"
    print(
        f"create+fetch: {rps:.0f} req/s vs floor {FLOOR_RPS:.0f} req/s -> {verdict};"
        f" messages stored: {stored}"
    )
    server_cpu = rows[1][1]["server_cpu"]
    if server_cpu < 0.8:
        print(
            f"note: the sandbox used only {server_cpu:.0%} of one core (load average "
            f"{os.getloadavg()[0]:.1f}), so the limit was the clients or other load on the machine; "
            f"its own cost is {rows[1][1]['per_cpu_s']:.0f} requests per CPU-second"
        )
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())

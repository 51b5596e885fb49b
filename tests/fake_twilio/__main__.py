"""``python -m tests.fake_twilio``: run the Twilio sandbox (see README.md in this folder)."""

from __future__ import annotations

import argparse
import re
import socket
import sys

import uvicorn

from tests.fake_twilio import (
    DEFAULT_ACCOUNT_SID,
    DEFAULT_API_KEY_SECRET,
    DEFAULT_API_KEY_SID,
    DEFAULT_AUTH_TOKEN,
)
from tests.fake_twilio.app import SandboxApp, SandboxSettings
from tests.fake_twilio.faults import LOST_RESPONSE_MODES, FaultConfig
from tests.fake_twilio.lifecycle import PROFILES, Profile


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("must be between 0 and 1")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tests.fake_twilio",
        description="A local fake of Twilio's Messages API with delivery simulation and fault injection.",
    )
    server = p.add_argument_group("server")
    server.add_argument("--host", default="127.0.0.1", help="bind address (default: 127.0.0.1)")
    server.add_argument("--port", type=int, default=8099, help="port; 0 picks a free one (default: 8099)")
    server.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])

    creds = p.add_argument_group("credentials")
    creds.add_argument("--account-sid", default=DEFAULT_ACCOUNT_SID, help=f"default: {DEFAULT_ACCOUNT_SID}")
    creds.add_argument("--auth-token", default=DEFAULT_AUTH_TOKEN, help=f"default: {DEFAULT_AUTH_TOKEN}")
    creds.add_argument("--api-key-sid", default=DEFAULT_API_KEY_SID, help=f"default: {DEFAULT_API_KEY_SID}")
    creds.add_argument(
        "--api-key-secret", default=DEFAULT_API_KEY_SECRET, help=f"default: {DEFAULT_API_KEY_SECRET}"
    )

    delivery = p.add_argument_group("delivery simulation")
    delivery.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        default="demo",
        help="step delays: fast = 0 s, demo = 1 s per step (default), realistic = ~3 s with +/-60%% jitter",
    )
    delivery.add_argument(
        "--step-delay", type=_non_negative_float, help="seconds per status step (overrides the profile)"
    )
    delivery.add_argument(
        "--jitter", type=_rate, help="+/- fraction applied to each step (overrides the profile)"
    )

    faults = p.add_argument_group("fault injection (Twilio API routes only; all off by default)")
    faults.add_argument("--latency-ms", type=_non_negative_int, default=0, help="added latency per request")
    faults.add_argument("--rate-429", type=_rate, default=0.0, help="fraction answered 429 / 20429")
    faults.add_argument("--rate-5xx", type=_rate, default=0.0, help="fraction answered 500 or 503")
    faults.add_argument(
        "--rate-lost-response", type=_rate, default=0.0, help="fraction of creates stored but not answered"
    )
    faults.add_argument(
        "--lost-response-mode",
        choices=LOST_RESPONSE_MODES,
        default="500",
        help="500 = answer 500 / 20500; drop = close the connection without a response",
    )
    faults.add_argument(
        "--concurrency-limit", type=_positive_int, help="per-account requests in flight before 429 / 20429"
    )
    faults.add_argument(
        "--retry-after", type=_positive_int, help="seconds sent as Retry-After on 429 / 20429"
    )
    faults.add_argument("--seed", type=int, help="seed for the fault dice (reproducible runs)")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not re.fullmatch(r"AC[0-9a-fA-F]{32}", args.account_sid):
        parser.error("--account-sid must match ^AC[0-9a-fA-F]{32}$")
    if not re.fullmatch(r"SK[0-9a-fA-F]{32}", args.api_key_sid):
        parser.error("--api-key-sid must match ^SK[0-9a-fA-F]{32}$")
    base = PROFILES[args.profile]
    profile = Profile(
        args.step_delay if args.step_delay is not None else base.step_delay,
        args.jitter if args.jitter is not None else base.jitter,
    )
    settings = SandboxSettings(
        args.account_sid, args.auth_token, args.api_key_sid, args.api_key_secret, profile
    )
    faults = FaultConfig(
        latency_ms=args.latency_ms,
        rate_429=args.rate_429,
        rate_5xx=args.rate_5xx,
        rate_lost_response=args.rate_lost_response,
        lost_response_mode=args.lost_response_mode,
        concurrency_limit=args.concurrency_limit,
        retry_after=args.retry_after,
        seed=args.seed,
    )
    app = SandboxApp(settings, faults)

    # Bind first so that --port 0 works and the printed URL is the real one.
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    port = sock.getsockname()[1]
    host = f"[{args.host}]" if family == socket.AF_INET6 else args.host

    active = {k: v for k, v in faults.to_dict().items() if v not in (None, 0, 0.0, "500")}
    print("Twilio sandbox (fake Twilio Messages API 2010-04-01)", flush=True)
    print(f"  Account SID : {settings.account_sid}", flush=True)
    print(f"  Auth token  : {settings.auth_token}", flush=True)
    print(f"  API key     : {settings.api_key_sid} / {settings.api_key_secret}", flush=True)
    print(
        f"  Step delay  : {profile.step_delay:g} s (jitter {profile.jitter:g}, profile {args.profile})",
        flush=True,
    )
    print(f"  Faults      : {active or 'off'}", flush=True)
    print(f"Listening on http://{host}:{port}", flush=True)

    config = uvicorn.Config(
        app,
        # "auto" = httptools and uvloop (both come with Airflow's uvicorn[standard]); h11/asyncio otherwise.
        http="auto",
        loop="auto",
        lifespan="on",
        access_log=False,
        log_level=args.log_level,
        timeout_keep_alive=30,
        backlog=4096,
    )
    uvicorn.Server(config).run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())

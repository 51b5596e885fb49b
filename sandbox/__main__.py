"""``python -m sandbox``: run the Twilio sandbox (see README.md in this folder)."""

from __future__ import annotations

import argparse
import re
import socket
import sys
from collections.abc import Callable

import uvicorn

from sandbox import (
    DEFAULT_ACCOUNT_SID,
    DEFAULT_API_KEY_SECRET,
    DEFAULT_API_KEY_SID,
    DEFAULT_AUTH_TOKEN,
)
from sandbox.app import SandboxApp, SandboxSettings
from sandbox.callbacks import CallbackAllowlist
from sandbox.faults import LOST_RESPONSE_MODES, MAX_CALLBACK_DELAY_MS, MAX_LATENCY_MS, FaultConfig
from sandbox.lifecycle import PROFILES, Profile
from sandbox.senders import DEFAULT_MAX_BACKLOG
from sandbox.server import DEFAULT_MAX_HEAD_BYTES, DEFAULT_READ_TIMEOUT, GuardedHttpToolsProtocol


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("must be between 0 and 1")
    return value


def _bounded_ms(high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if not 0 <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between 0 and {high}")
        return value

    return parse


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


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def build_parser(prog: str = "python -m sandbox") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="A local fake of Twilio's Messages API with delivery simulation and fault injection.",
    )
    server = p.add_argument_group("server")
    server.add_argument("--host", default="127.0.0.1", help="bind address (default: 127.0.0.1)")
    server.add_argument("--port", type=int, default=8099, help="port; 0 picks a free one (default: 8099)")
    server.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    server.add_argument(
        "--read-timeout",
        type=_positive_float,
        default=DEFAULT_READ_TIMEOUT,
        help=f"seconds a request (head and body) may take to arrive, else 408 "
        f"(default: {DEFAULT_READ_TIMEOUT:g})",
    )
    server.add_argument(
        "--max-body-bytes",
        type=_positive_int,
        default=SandboxSettings.max_body_bytes,
        help="larger request bodies get 413 before they are read "
        f"(default: {SandboxSettings.max_body_bytes})",
    )

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
    delivery.add_argument(
        "--time-scale",
        type=_positive_float,
        default=1.0,
        help="sandbox seconds per real second for every simulated wait (steps, SendAt, the sender queue, "
        "ValidityPeriod); 60 = one minute per second (default: 1)",
    )
    delivery.add_argument(
        "--sender-mps",
        type=_positive_float,
        help="segments per sandbox second each sender (From or MessagingServiceSid) sends; messages queue "
        "behind it (default: unlimited, no queue)",
    )
    delivery.add_argument(
        "--sender-max-backlog",
        type=_positive_float,
        default=DEFAULT_MAX_BACKLOG,
        help=f"seconds of backlog after which a sender refuses creates with 429 / 21611 "
        f"(default: {DEFAULT_MAX_BACKLOG:g}, Twilio's 10 h)",
    )
    delivery.add_argument(
        "--callback-allow",
        action="append",
        default=[],
        metavar="HOST",
        help="also POST status callbacks to HOST (repeatable; '*' = any host); default: loopback only",
    )

    faults = p.add_argument_group("fault injection (Twilio API routes only; all off by default)")
    faults.add_argument(
        "--latency-ms", type=_bounded_ms(MAX_LATENCY_MS), default=0, help="added latency per request"
    )
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
    callbacks = p.add_argument_group("callback faults (status callbacks only; all off by default)")
    callbacks.add_argument("--rate-callback-drop", type=_rate, default=0.0, help="fraction never sent")
    callbacks.add_argument(
        "--rate-callback-duplicate", type=_rate, default=0.0, help="fraction sent twice (same token)"
    )
    callbacks.add_argument(
        "--rate-callback-reorder",
        type=_rate,
        default=0.0,
        help="fraction held back until the message's next callback has been sent",
    )
    callbacks.add_argument(
        "--callback-delay-ms",
        type=_bounded_ms(MAX_CALLBACK_DELAY_MS),
        default=0,
        help="delay added to every callback",
    )
    return p


def banner(settings: SandboxSettings, profile_name: str, faults: FaultConfig) -> list[str]:
    """The start-up lines. Secrets are never printed: they would land in process logs (.demo/...)."""
    s, profile = settings, settings.profile
    active = {k: v for k, v in faults.to_dict().items() if v not in (None, 0, 0.0, "500")}
    token_note = "the default" if s.auth_token == DEFAULT_AUTH_TOKEN else "set with --auth-token"
    secret_note = "the default" if s.api_key_secret == DEFAULT_API_KEY_SECRET else "set with --api-key-secret"
    queue = "unlimited" if s.sender_mps is None else f"{s.sender_mps:g} segments/s per sender"
    return [
        "Twilio sandbox (fake Twilio Messages API 2010-04-01)",
        f"  Account SID : {s.account_sid}",
        f"  Auth token  : not shown ({token_note}; see Credentials in sandbox/README.md)",
        f"  API key     : {s.api_key_sid} (secret not shown: {secret_note})",
        f"  Step delay  : {profile.step_delay:g} s (jitter {profile.jitter:g}, profile {profile_name})",
        f"  Clock       : x{s.time_scale:g}; sender queue {queue}",
        f"  Callbacks   : to {CallbackAllowlist(s.callback_allow).describe()}",
        f"  Faults      : {active or 'off'}",
    ]


def main(argv: list[str] | None = None, prog: str = "python -m sandbox") -> int:
    parser = build_parser(prog)
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
        args.account_sid,
        args.auth_token,
        args.api_key_sid,
        args.api_key_secret,
        profile,
        time_scale=args.time_scale,
        sender_mps=args.sender_mps,
        sender_max_backlog=args.sender_max_backlog,
        callback_allow=tuple(h for value in args.callback_allow for h in value.split(",") if h.strip()),
        max_body_bytes=args.max_body_bytes,
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
        rate_callback_drop=args.rate_callback_drop,
        rate_callback_duplicate=args.rate_callback_duplicate,
        rate_callback_reorder=args.rate_callback_reorder,
        callback_delay_ms=args.callback_delay_ms,
    )
    app = SandboxApp(settings, faults)

    # Bind first so that --port 0 works and the printed URL is the real one.
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    port = sock.getsockname()[1]
    host = f"[{args.host}]" if family == socket.AF_INET6 else args.host

    for line in banner(settings, args.profile, faults):
        print(line, flush=True)
    # sandbox.testing.run_sandbox reads the port from this line: keep its shape.
    print(f"Listening on http://{host}:{port}", flush=True)

    config = uvicorn.Config(
        app,
        # httptools (with Airflow's uvicorn[standard]) with the sandbox's read deadline and head limit.
        http=GuardedHttpToolsProtocol.configured(args.read_timeout, DEFAULT_MAX_HEAD_BYTES),
        loop="auto",
        lifespan="on",
        access_log=False,
        log_level=args.log_level,
        timeout_keep_alive=30,
        # Requests sleeping in injected latency (up to 60 s) must not hold up a stop.
        timeout_graceful_shutdown=2,
        backlog=4096,
    )
    uvicorn.Server(config).run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())

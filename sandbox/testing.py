"""Run the sandbox as a subprocess for tests and benchmarks: ``with run_sandbox(...) as sb: ...``."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from sandbox import (
    DEFAULT_ACCOUNT_SID,
    DEFAULT_API_KEY_SECRET,
    DEFAULT_API_KEY_SID,
    DEFAULT_AUTH_TOKEN,
)

REPO = Path(__file__).resolve().parents[1]
LISTENING = re.compile(r"^Listening on (http://\S+):(\d+)$", re.MULTILINE)


@dataclass
class Sandbox:
    """A running sandbox process and a small client for its control API."""

    base_url: str
    port: int
    pid: int
    account_sid: str = DEFAULT_ACCOUNT_SID
    auth_token: str = DEFAULT_AUTH_TOKEN
    api_key_sid: str = DEFAULT_API_KEY_SID
    api_key_secret: str = DEFAULT_API_KEY_SECRET
    log_path: Path | None = None

    def __post_init__(self) -> None:
        self._control = httpx.Client(base_url=self.base_url, timeout=10.0, trust_env=False)

    def __repr__(self) -> str:  # keeps the token out of assertion messages
        return f"Sandbox(base_url={self.base_url!r}, account_sid={self.account_sid!r}, pid={self.pid})"

    @property
    def messages_url(self) -> str:
        return f"{self.base_url}/2010-04-01/Accounts/{self.account_sid}/Messages.json"

    def conn_json(self) -> str:
        """JSON for AIRFLOW_CONN_TWILIO_DEFAULT."""
        return json.dumps(
            {
                "conn_type": "http",
                "host": "127.0.0.1",
                "port": self.port,
                "schema": "http",
                "login": self.account_sid,
                "password": self.auth_token,
            }
        )

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._control.request(method, path, **kwargs)
        response.raise_for_status()
        return response.json()

    def messages(self) -> list[dict[str, Any]]:
        return self._call("GET", "/_sandbox/messages")["messages"]

    def reset(self) -> None:
        """Clear stored messages, stats and faults."""
        self._call("DELETE", "/_sandbox/messages")
        self._call("DELETE", "/_sandbox/faults")

    def set_faults(self, **faults: Any) -> dict[str, Any]:
        return self._call("PUT", "/_sandbox/faults", json=faults)

    def faults(self) -> dict[str, Any]:
        return self._call("GET", "/_sandbox/faults")

    def clear_faults(self) -> dict[str, Any]:
        return self._call("DELETE", "/_sandbox/faults")

    def stats(self) -> dict[str, Any]:
        return self._call("GET", "/_sandbox/stats")

    def callbacks(self) -> dict[str, Any]:
        """``{"pending": n, "deliveries": [...]}``: see README.md "Control API"."""
        return self._call("GET", "/_sandbox/callbacks")

    def health(self) -> dict[str, Any]:
        return self._call("GET", "/_sandbox/health")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def close(self) -> None:
        self._control.close()


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@contextmanager
def run_sandbox(
    *flags: str,
    account_sid: str | None = None,
    auth_token: str | None = None,
    api_key_sid: str | None = None,
    api_key_secret: str | None = None,
    host: str = "127.0.0.1",
    startup_timeout: float = 30.0,
) -> Iterator[Sandbox]:
    """Start ``python -m sandbox`` on a free loopback port, wait until healthy, stop it on exit.

    ``flags`` are passed as CLI flags (e.g. ``"--step-delay", "0"``); the keyword arguments map to the
    credential flags. The port is chosen by the server itself (``--port 0``) and read from its start-up line,
    so there is no window in which another process can take it.
    """
    argv = [sys.executable, "-m", "sandbox", "--host", host, "--port", "0"]
    creds = {
        "--account-sid": account_sid,
        "--auth-token": auth_token,
        "--api-key-sid": api_key_sid,
        "--api-key-secret": api_key_secret,
    }
    for flag, value in creds.items():
        if value is not None:
            argv += [flag, value]
    argv += list(flags)
    log_file = tempfile.NamedTemporaryFile(prefix="twilio-sandbox-", suffix=".log", delete=False)  # noqa: SIM115
    log_path = Path(log_file.name)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    proc = subprocess.Popen(
        argv, cwd=REPO, stdout=log_file, stderr=subprocess.STDOUT, env=env, start_new_session=True
    )
    log_file.close()
    sandbox: Sandbox | None = None
    try:
        sandbox = _wait_ready(proc, log_path, startup_timeout)
        sandbox.account_sid = account_sid or DEFAULT_ACCOUNT_SID
        sandbox.auth_token = auth_token or DEFAULT_AUTH_TOKEN
        sandbox.api_key_sid = api_key_sid or DEFAULT_API_KEY_SID
        sandbox.api_key_secret = api_key_secret or DEFAULT_API_KEY_SECRET
        yield sandbox
    finally:
        if sandbox is not None:
            sandbox.close()
        _terminate(proc)
        log_path.unlink(missing_ok=True)


def _wait_ready(proc: subprocess.Popen[bytes], log_path: Path, timeout: float) -> Sandbox:
    deadline = time.monotonic() + timeout
    base_url = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"the sandbox exited with {proc.returncode}:\n{log_path.read_text(errors='replace')}"
            )
        if base_url is None:
            found = LISTENING.search(log_path.read_text(errors="replace"))
            if found:
                base_url, port = f"{found.group(1)}:{found.group(2)}", int(found.group(2))
        if base_url is not None:
            try:
                if httpx.get(f"{base_url}/_sandbox/health", timeout=1.0, trust_env=False).status_code == 200:
                    return Sandbox(base_url=base_url, port=port, pid=proc.pid, log_path=log_path)
            except httpx.TransportError:
                pass
        time.sleep(0.05)
    raise RuntimeError(
        f"the sandbox was not ready within {timeout} s:\n{log_path.read_text(errors='replace')}"
    )

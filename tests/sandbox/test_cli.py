"""The command line: start-up banner with credentials and URL, flag validation."""

from __future__ import annotations

import subprocess
import sys

from tests.fake_twilio.testing import REPO, run_sandbox


def test_startup_prints_credentials_and_the_listening_url():
    with run_sandbox("--profile", "realistic", "--latency-ms", "5", auth_token="tok-xyz") as sb:
        log = sb.log()
    assert "Account SID : AC0123456789abcdef0123456789abcdef" in log
    assert "Auth token  : tok-xyz" in log
    assert "API key     : SK0123456789abcdef0123456789abcdef / sandbox-api-key-secret" in log
    assert "Step delay  : 3 s (jitter 0.6, profile realistic)" in log
    assert "'latency_ms': 5" in log
    assert f"Listening on {sb.base_url}" in log


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tests.fake_twilio", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_bad_flags_exit_with_a_message():
    result = run_cli("--account-sid", "ACnope")
    assert result.returncode == 2 and "--account-sid must match" in result.stderr
    result = run_cli("--rate-429", "2")
    assert result.returncode == 2 and "--rate-429" in result.stderr
    result = run_cli("--lost-response-mode", "sometimes")
    assert result.returncode == 2 and "--lost-response-mode" in result.stderr


def test_help_lists_every_flag():
    out = run_cli("--help").stdout
    for flag in [
        "--host", "--port", "--account-sid", "--auth-token", "--api-key-sid", "--api-key-secret", "--profile",
        "--step-delay", "--jitter", "--latency-ms", "--rate-429", "--rate-5xx", "--rate-lost-response",
        "--lost-response-mode", "--concurrency-limit", "--retry-after", "--seed",
    ]:  # fmt: skip
        assert flag in out

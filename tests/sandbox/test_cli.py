"""The command line: start-up banner (no secrets) and URL, flag validation, the old module name."""

from __future__ import annotations

import subprocess
import sys

from sandbox import DEFAULT_API_KEY_SECRET, DEFAULT_AUTH_TOKEN
from sandbox.testing import REPO, run_sandbox


def test_startup_prints_the_settings_and_the_listening_url_but_no_secret():
    with run_sandbox(
        "--profile", "realistic", "--latency-ms", "5", "--sender-mps", "2", "--time-scale", "60",
        auth_token="tok-xyz-secret", api_key_secret="key-secret-abc",
    ) as sb:  # fmt: skip
        log = sb.log()
    assert "Account SID : AC0123456789abcdef0123456789abcdef" in log
    # issue 14 point 9: the banner lands in .demo/process-logs/sandbox.log, so no token or secret in it.
    assert "tok-xyz-secret" not in log and "key-secret-abc" not in log
    assert "Auth token  : not shown (set with --auth-token; see Credentials in sandbox/README.md)" in log
    assert "API key     : SK0123456789abcdef0123456789abcdef (secret not shown: set with" in log
    assert "Step delay  : 3 s (jitter 0.6, profile realistic)" in log
    assert "Clock       : x60; sender queue 2 segments/s per sender" in log
    assert "'latency_ms': 5" in log
    assert f"Listening on {sb.base_url}" in log


def test_the_default_credentials_are_not_printed_either():
    with run_sandbox() as sb:
        log = sb.log()
    assert DEFAULT_AUTH_TOKEN not in log and DEFAULT_API_KEY_SECRET not in log
    assert "Auth token  : not shown (the default; see Credentials in sandbox/README.md)" in log
    readme = (REPO / "sandbox" / "README.md").read_text()
    assert f"`{DEFAULT_AUTH_TOKEN}`" in readme  # where the banner says the credentials are documented


def run_cli(*args: str, module: str = "sandbox") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
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
    result = run_cli("--latency-ms", "60001")
    assert result.returncode == 2 and "between 0 and 60000" in result.stderr
    result = run_cli("--rate-callback-drop", "1.5")
    assert result.returncode == 2 and "--rate-callback-drop" in result.stderr


def test_help_and_the_readme_list_every_flag():
    from sandbox.__main__ import build_parser

    flags = {o for action in build_parser()._actions for o in action.option_strings if o.startswith("--")}
    flags.discard("--help")
    assert {"--callback-allow", "--rate-callback-reorder", "--read-timeout", "--max-body-bytes"} <= flags
    out = run_cli("--help").stdout
    readme = (REPO / "sandbox" / "README.md").read_text()
    for flag in sorted(flags):
        assert flag in out, flag
        assert f"`{flag}" in readme, f"{flag} is missing from sandbox/README.md"

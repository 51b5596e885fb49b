"""Processes that each lead their own process group, tracked by pid files so another process can stop them.

A component started here (``start_process``) runs in a new session, so stopping its group also stops every
process it forked (task supervisors, gunicorn workers). Its pid goes to ``<dir>/<name>.pid``: ``make down``
reads those files to stop what ``make up`` left running.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

Log = Callable[[str], None]


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def start_process(
    name: str, argv: Sequence[str], *, env: Mapping[str, str], cwd: Path, log_file: Path, pid_file: Path
) -> subprocess.Popen:
    """Start ``argv`` in a new session (so it leads its own process group) and record its pid."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as out:
        proc = subprocess.Popen(
            list(argv),
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    pid_file.write_text(f"{proc.pid}\n")
    return proc


def stop_process_group(pid: int, *, timeout: float = 20.0) -> bool:
    """SIGTERM the process group led by ``pid``, SIGKILL what is left after ``timeout``.

    Returns True if the group existed. Callers holding only a pid file check ``expect_ok`` first.
    """
    if not _group_alive(pid):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _group_alive(pid):
            return True
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, 0)
    return True


def read_pid_files(pid_dir: Path) -> dict[str, int]:
    """{name: pid} for every ``pid_dir/<name>.pid``."""
    pids: dict[str, int] = {}
    for pid_file in sorted(pid_dir.glob("*.pid")):
        with contextlib.suppress(ValueError, OSError):
            pids[pid_file.stem] = int(pid_file.read_text().strip())
    return pids


def alive_pid_files(pid_dir: Path) -> dict[str, int]:
    """The recorded process groups that still exist (a recycled, non-Python pid does not count)."""
    return {
        name: pid for name, pid in read_pid_files(pid_dir).items() if _group_alive(pid) and expect_ok(pid)
    }


def stop_pid_files(pid_dir: Path, *, log: Log = print, timeout: float = 20.0) -> list[str]:
    """Stop every process group recorded in ``pid_dir/*.pid`` (all at once) and remove the files."""
    pids = read_pid_files(pid_dir)
    alive = alive_pid_files(pid_dir)
    for pid in alive.values():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)
    for name, pid in alive.items():
        stop_process_group(pid, timeout=timeout)
        log(f"stopped {name} (pid {pid})")
    for name in pids:
        (pid_dir / f"{name}.pid").unlink(missing_ok=True)
    return list(alive)


def expect_ok(pid: int) -> bool:
    """True if ``pid`` looks like one of ours (a Python/Airflow process) or has exited leaving its group."""
    cmd = _cmdline(pid)
    return not cmd or "python" in cmd or "airflow" in cmd

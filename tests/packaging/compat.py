"""Clean venvs that hold only Airflow, its HTTP provider and the built wheel, outside the checkout.

A venv is keyed by the Python version, the Airflow version, the constraints it is resolved with and the
wheel's own requirements, and cached under ``$TWILIO_COMPAT_CACHE`` (default ``~/.cache/twilio-compat``):
building one downloads and installs Airflow with uv (seconds, then ``airflow db migrate``); a fresh CI machine
builds it, later runs reuse it.
The wheel itself is reinstalled into it on every run, so the code checked is always the code just built.
Nothing of the checkout is on its path: processes run with ``python -I`` or a scrubbed environment, in a
temporary folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from email.parser import Parser
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("TWILIO_COMPAT_CACHE") or Path.home() / ".cache" / "twilio-compat")
PIP = ("-m", "pip", "--disable-pip-version-check", "-q")
UV = (sys.executable, "-m", "uv")  # requirements-dev.txt
# What a venv may inherit from the environment: nothing of Airflow's, ours or Python's path settings.
_DROP_PREFIXES = ("AIRFLOW", "TWILIO_", "PYTHON", "VIRTUAL_ENV")


def newest_airflow() -> str:
    """The Airflow this project pins (requirements.txt), the newest the package is checked with."""
    for line in (REPO / "requirements.txt").read_text().splitlines():
        if line.startswith("apache-airflow=="):
            return line.split("==", 1)[1].strip()
    raise AssertionError("requirements.txt pins no apache-airflow==")


def constraints_for(airflow_version: str) -> Path:
    """The lock a venv with this Airflow is resolved with: the project's own for the pinned version."""
    if airflow_version == newest_airflow():
        return REPO / "constraints.txt"
    path = HERE / f"constraints-airflow-{airflow_version}.txt"
    if not path.is_file():
        raise AssertionError(
            f"no {path.relative_to(REPO)}: freeze a clean venv with Airflow {airflow_version}"
        )
    return path


def wheel_requirements(wheel: Path) -> list[str]:
    """The Requires-Dist lines of a wheel's METADATA."""
    with zipfile.ZipFile(wheel) as zf:
        [name] = [n for n in zf.namelist() if n.endswith(".dist-info/METADATA")]
        metadata = Parser().parsestr(zf.read(name).decode())
    return metadata.get_all("Requires-Dist") or []


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without Airflow, Twilio or Python path settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_DROP_PREFIXES)}
    env.setdefault("NO_PROXY", "127.0.0.1,localhost")
    env.setdefault("no_proxy", "127.0.0.1,localhost")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def run(argv: list[str], *, env: Mapping[str, str], cwd: Path, timeout: float = 600.0) -> str:
    """Run a command; on failure raise with its output's tail, so the test says what went wrong."""
    proc = subprocess.run(argv, env=dict(env), cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(argv)} exited {proc.returncode}\n--- stdout\n{proc.stdout[-3000:]}"
            f"\n--- stderr\n{proc.stderr[-5000:]}"
        )
    return proc.stdout


def json_listing(stdout: str) -> Any:
    """The JSON list an ``airflow ... -o json`` command prints, past any warning lines before it."""
    [listing] = [line for line in stdout.splitlines() if line.startswith("[")]
    return json.loads(listing)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One builder per cache entry at a time (two test runs on one machine share the cache)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@dataclass(frozen=True)
class CompatVenv:
    """A cached venv with one Airflow version, its HTTP provider and the wheel's requirements."""

    airflow_version: str
    path: Path
    built_in: float | None  # seconds spent building it now; None when it came from the cache

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    @property
    def db_template(self) -> Path:
        return self.path / "airflow-db-template" / "airflow.db"

    def install_wheel(self, wheel: Path, cwd: Path) -> None:
        """Put exactly this wheel in (its requirements are already there: no index is asked)."""
        env = clean_env()
        run(
            [str(self.python), *PIP, "install", "--no-index", "--no-deps", "--force-reinstall", str(wheel)],
            env=env,
            cwd=cwd,
        )
        run([str(self.python), *PIP, "check"], env=env, cwd=cwd)


@contextlib.contextmanager
def compat_venv(airflow_version: str, wheel: Path) -> Iterator[CompatVenv]:
    """The venv for ``airflow_version`` (built, with a migrated metadata DB template, unless cached).

    Held under a lock until the caller is done: another test session on this machine (another checkout)
    would otherwise put its own wheel into the same venv in the middle of this one's checks.
    """
    constraints = constraints_for(airflow_version)
    requirements = sorted(wheel_requirements(wheel))
    key = hashlib.sha256(
        json.dumps(
            [list(sys.version_info[:2]), airflow_version, constraints.read_text(), requirements]
        ).encode()
    ).hexdigest()[:16]
    path = CACHE / f"airflow-{airflow_version}-py{sys.version_info[0]}{sys.version_info[1]}-{key}"
    done = path / ".complete"
    with _locked(CACHE / f"{path.name}.lock"):
        if done.exists():
            yield CompatVenv(airflow_version, path, None)
            return
        started = time.monotonic()
        shutil.rmtree(path, ignore_errors=True)
        env = clean_env()
        # uv installs Airflow in seconds where pip takes a minute on a busy machine. pip is seeded into the
        # venv: the wheel itself goes in with pip (install_wheel), as a user installs it.
        run([*UV, "venv", "--quiet", "--seed", "--python", sys.executable, str(path)], env=env, cwd=CACHE)
        python = str(path / "bin" / "python")
        run(
            [
                *UV,
                "pip",
                "install",
                "--quiet",
                "--compile-bytecode",
                "--python",
                python,
                f"apache-airflow=={airflow_version}",
                *requirements,
                "-c",
                str(constraints),
            ],
            env=env,
            cwd=CACHE,
        )
        venv = CompatVenv(airflow_version, path, None)
        home = venv.db_template.parent
        home.mkdir()
        run([python, "-m", "airflow", "db", "migrate"], env=clean_env(AIRFLOW_HOME=str(home)), cwd=home)
        done.write_text(json.dumps({"airflow": airflow_version, "requirements": requirements}))
        yield CompatVenv(airflow_version, path, time.monotonic() - started)

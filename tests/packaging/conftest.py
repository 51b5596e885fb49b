"""The built distribution: `make dist` into a temporary folder, once per session."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Dist:
    wheel: Path
    sdist: Path


@pytest.fixture(scope="package")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Dist:
    """What `make dist` builds (the same target a user runs), in a temporary folder."""
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run(
        ["make", "-s", "dist", f"DIST={out}"], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, f"make dist failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    [wheel] = out.glob("*.whl")
    [sdist] = out.glob("*.tar.gz")
    return Dist(wheel, sdist)

"""The package's layers (twilio_messaging/__init__.py): the provider imports nothing of the application, the
four building blocks import no application module, and no module imports itself through others."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import grimp
import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE = "twilio_messaging"
APPLICATION = (
    "twilio_messaging.batch",
    "twilio_messaging.contract",
    "twilio_messaging.plugin",
    "twilio_messaging.ui",
    "twilio_messaging.workflow",
)
BUILDING_BLOCKS = (
    "twilio_messaging.hooks.twilio",
    "twilio_messaging.operators.twilio",
    "twilio_messaging.sensors.twilio",
    "twilio_messaging.notifications.twilio",
)


def test_import_linter_contracts_are_kept():
    lint_imports = Path(sys.executable).parent / "lint-imports"
    assert lint_imports.exists(), "run `make venv` (import-linter is in requirements-dev.txt)"
    result = subprocess.run(
        [str(lint_imports), "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout and "3 kept" in result.stdout, result.stdout


def test_every_module_is_in_a_layer():
    # A module in neither list would escape the contracts: say which room it lives in.
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    [forbidden] = [contract for contract in config if contract["type"] == "forbidden"]
    rooms = set(forbidden["source_modules"]) | set(forbidden["forbidden_modules"])
    assert set(APPLICATION) <= set(forbidden["forbidden_modules"])
    graph = grimp.build_graph(PACKAGE, cache_dir=None)
    children = {module for module in graph.find_children(PACKAGE)}
    assert children - rooms == set()


def strongly_connected(graph: grimp.ImportGraph) -> list[set[str]]:
    """The module groups that import each other in a circle (Tarjan), at module level."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[set[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in graph.find_modules_directly_imported_by(module):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == module:
                    break
            if len(group) > 1:
                cycles.append(group)

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return cycles


def test_no_import_cycle_in_the_package():
    graph = grimp.build_graph(PACKAGE, cache_dir=None)
    assert len(graph.modules) > 40  # the whole package was read
    # Imports inside functions count: a cycle that works only because one side imports late is still one.
    assert strongly_connected(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    graph = grimp.ImportGraph()
    for a, b in (("p.a", "p.b"), ("p.b", "p.c"), ("p.c", "p.a"), ("p.c", "p.d")):
        graph.add_import(importer=a, imported=b)
    assert strongly_connected(graph) == [{"p.a", "p.b", "p.c"}]


@pytest.mark.parametrize("module", BUILDING_BLOCKS)
def test_a_building_block_imports_no_application_module(module):
    # A fresh interpreter, as a user's DAG file would import it.
    code = f"import json, sys; import {module}; print(json.dumps(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO
    )
    assert result.returncode == 0, result.stderr
    loaded = [name for name in json.loads(result.stdout.splitlines()[-1]) if name.startswith(PACKAGE)]
    assert module in loaded
    assert [name for name in loaded if name.startswith(APPLICATION)] == []

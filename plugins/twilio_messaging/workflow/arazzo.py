"""Read the Arazzo workflow document the DAG implements, and render its description as the DAG's doc_md."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def load_workflow(path: str | Path, workflow_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The Arazzo document and its workflow ``workflow_id``."""
    document = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    for candidate in document.get("workflows", []):
        if candidate.get("workflowId") == workflow_id:
            return document, candidate
    raise KeyError(f"workflow {workflow_id!r} not found in {path}")


def doc_md(path: str | Path, workflow_id: str, extra: str = "") -> str:
    """Markdown for the DAG page: the workflow's description, its steps and inputs, then ``extra``."""
    document, flow = load_workflow(path, workflow_id)
    info = document.get("info", {})
    lines = [
        f"# {info.get('title', workflow_id)}",
        "",
        (flow.get("description") or info.get("description") or "").strip(),
        "",
        f"Arazzo workflow `{workflow_id}` (`{Path(path).name}`, version {info.get('version', '?')}).",
        "",
        "## Steps",
        "",
    ]
    for step in flow.get("steps", []):
        description = " ".join((step.get("description") or "").split())
        lines.append(f"- **{step['stepId']}** (`{step.get('operationId')}`): {description}")
    lines += ["", "## Arazzo inputs", "", "| input | required | description |", "|---|---|---|"]
    inputs = flow.get("inputs", {})
    required = set(inputs.get("required", []))
    for name, schema in inputs.get("properties", {}).items():
        mark = "yes" if name in required else "no"
        lines.append(f"| `{name}` | {mark} | {schema.get('description', '')} |")
    if extra:
        lines += ["", extra.strip()]
    return "\n".join(lines) + "\n"

"""The README's "Use it in your own DAG" examples are the example DAG files, word for word."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = re.compile(r"<!-- example: (?P<path>\S+) -->\n```python\n(?P<code>.*?)\n```", re.S)


def test_readme_examples_are_the_tested_dag_files():
    examples = {m["path"]: m["code"] for m in EXAMPLE.finditer((REPO / "README.md").read_text())}
    assert set(examples) == {
        "dags/example_twilio_send_message.py",
        "dags/example_twilio_message_status.py",
        "dags/example_twilio_deferrable_status.py",
        "dags/example_twilio_notifier.py",
    }
    for path, code in examples.items():
        assert code in (REPO / path).read_text(), f"README example differs from {path}"
        assert len(code.splitlines()) <= 25, path

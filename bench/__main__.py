"""Run every benchmark's ``main()`` in turn (``bench/*_throughput.py``, then the Messages table):
``.venv/bin/python -m bench``."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path


def main() -> int:
    failed = 0
    here = Path(__file__).parent
    for path in [*sorted(here.glob("*_throughput.py")), here / "messages_table.py"]:
        print(f"\n=== bench.{path.stem} ===", flush=True)
        module = importlib.import_module(f"bench.{path.stem}")
        try:
            failed += 1 if module.main() else 0
        except Exception as exc:  # one broken benchmark must not hide the others' figures
            print(f"bench.{path.stem} failed: {exc!r}", file=sys.stderr, flush=True)
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

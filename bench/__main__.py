"""Run every ``bench/*_throughput.py`` benchmark's ``main()`` in turn: ``.venv/bin/python -m bench``."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path


def main() -> int:
    failed = 0
    for path in sorted(Path(__file__).parent.glob("*_throughput.py")):
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

"""``python -m tests.fake_twilio``: deprecated alias of ``python -m sandbox`` (same flags) for one release."""

from __future__ import annotations

import sys

from sandbox.__main__ import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m tests.fake_twilio"))

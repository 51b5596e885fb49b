"""Deprecated alias of ``sandbox.testing`` (``run_sandbox`` starts ``python -m sandbox``), for one release."""

from __future__ import annotations

from sandbox.testing import LISTENING, REPO, Sandbox, run_sandbox

__all__ = ["LISTENING", "REPO", "Sandbox", "run_sandbox"]

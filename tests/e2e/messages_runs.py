"""The runs the Messages tab tests look at, triggered once per session on the shared e2e stack."""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.e2e.conftest import E2E

BATCH_DAG = "twilio_batch_notifications"
SENDER = "+15005550006"
HOSTILE_BODY = "<script>alert(1)</script> {{ 7*7 }}"
DELIVERED_TO = "+15551110001"
UNDELIVERED_TO = "+15551113003"  # sandbox: undelivered, error 30003
INVALID_TO = "+15005550001"  # Twilio's magic number: create fails with 21211
UNCONFIRMED_TO = "+15551117777"  # sandbox: stays `sent` forever, unconfirmed at the status timeout
OUTSIDE_PATH = "../../../../etc/passwd"  # prepare refuses it: not inside the batch data folders
BATCH_SIZE = 1000


@dataclass
class MessageRuns:
    delivered: str
    undelivered: str
    invalid: str
    batch: str
    batch_summary: dict[str, Any]
    prepare_failed: str  # a batch whose prepare refused its recipients_path
    unconfirmed: str  # still running when trigger_all returns: wait_unconfirmed() waits for it


def wait_unconfirmed(e2e: E2E, runs: MessageRuns) -> None:
    """The unconfirmed run ends at the stack's status timeout (STATUS_TIMEOUT after its send)."""
    e2e.wait(runs.unconfirmed, timeout=400)


def batch_recipients(path: Path, n: int = BATCH_SIZE) -> Path:
    """``n`` unique numbers: every 25th undelivered (30003), every 100th failed (30008), one 21211."""
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["to", "name", "date"])
        writer.writeheader()
        for i in range(n):
            suffix = "3003" if i % 25 == 1 else "3008" if i % 100 == 2 else "0001"
            to = INVALID_TO if i == 5 else f"+1556{i:03d}{suffix}"
            writer.writerow({"to": to, "name": f"R{i}", "date": "Monday"})
    return path


def trigger_all(e2e: E2E) -> MessageRuns:
    """Trigger the three workflow runs and the batch at once, wait for all of them."""
    e2e.stack.wait_for_dags([BATCH_DAG])
    e2e.client.unpause(BATCH_DAG)
    runs = {
        name: e2e.trigger({"to": to, "from": SENDER, "body": body}, prefix=f"messages_{name}")
        for name, to, body in (
            ("delivered", DELIVERED_TO, HOSTILE_BODY),
            ("undelivered", UNDELIVERED_TO, "Your code is 1234"),
            ("invalid", INVALID_TO, "never sent"),
        )
    }
    unconfirmed = e2e.trigger(
        {"to": UNCONFIRMED_TO, "from": SENDER, "body": "no receipt"}, prefix="messages_unconfirmed"
    )
    prepare_failed = e2e.run_id("messages_prepare_failed")
    e2e.client.trigger(BATCH_DAG, {"recipients_path": OUTSIDE_PATH, "from": SENDER}, run_id=prepare_failed)
    recipients = batch_recipients(e2e.data_dir / f"recipients_{int(time.time())}.csv")
    batch = e2e.run_id("messages_batch")
    e2e.client.trigger(
        BATCH_DAG, {"recipients_path": str(recipients), "from": SENDER, "opt_out_path": None}, run_id=batch
    )
    for run_id in runs.values():
        e2e.wait(run_id)
    result = e2e.client.wait_for_run(BATCH_DAG, batch, timeout=300, interval=1.0)
    assert result.state == "success", {t: ti["state"] for t, ti in result.tasks.items()}
    summary = e2e.client.xcom(BATCH_DAG, batch, "summary")
    failed = e2e.client.wait_for_run(BATCH_DAG, prepare_failed, timeout=300, interval=1.0)
    assert failed.state == "failed", {t: ti["state"] for t, ti in failed.tasks.items()}
    return MessageRuns(
        **runs, batch=batch, batch_summary=summary, prepare_failed=prepare_failed, unconfirmed=unconfirmed
    )

"""prepare and summary stream: on a 200,000-row file their memory stays far below what holding the rows
takes. Measured in a fresh subprocess (peak RSS via /proc/self/clear_refs + VmHWM), not timed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ROWS = 200_000
# Holding the rows as dicts (the old design: rows, then chunks of [row, to, body] in one XCom) took about
# 150 MiB at this size. Deduplication itself needs one entry per number (about 100 bytes each: ~20 MiB).
PREPARE_BOUND_MIB = 60
SUMMARY_BOUND_MIB = 20

SCRIPT = """
import csv, json, sys, time
from pathlib import Path

def status(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024

def reset_peak():
    Path("/proc/self/clear_refs").write_text("5")

from twilio_messaging.batch import plan, report, track
from twilio_messaging.batch.prepare import prepare_run
from twilio_messaging.batch.layout import RunLayout
from twilio_messaging.batch.records import message_record
from twilio_messaging.settings import BatchSettings

folder, rows = Path(sys.argv[1]), int(sys.argv[2])
source = folder / "recipients.csv"
with source.open("w", newline="") as handle:
    writer = csv.writer(handle)
    writer.writerow(["to", "name", "date"])
    for i in range(rows):
        writer.writerow([f"+1555{i:07d}0", f"Person {i}", "Monday"])
    for i in range(1000):  # duplicates and invalid rows go to storage too
        writer.writerow([f"+1555{i:07d}0" if i % 2 else "12345", "Again", "Monday"])
params = {"recipients_path": str(source), "body_template": "Hi {name}, see you {date}.", "chunk_size": 500,
          "report_format": "csv"}
layout = RunLayout.of("memory_dag", "big_run")
import gc; gc.collect()
before = status("VmRSS"); reset_peak()
started = time.monotonic()
out = prepare_run(params, BatchSettings.from_env(), [folder], layout, "k", map_limit=1024,
                  conn_id="twilio_default")
prepare = {"peak": status("VmHWM") - before, "seconds": time.monotonic() - started, "counts": out["counts"],
           "xcom_bytes": len(json.dumps(out["chunks"]))}
refs = out["chunks"]
del out; gc.collect()
for ref in refs:  # as if every chunk had been sent and tracked
    records = [message_record(r["row"], r["to"], f"SM{r['row']:032x}", "delivered")
               for r in plan.read_manifest(layout, ref)]
    track.write_tracked(layout, ref, records)
del records; gc.collect()
before = status("VmRSS"); reset_peak()
started = time.monotonic()
summary = report.summarise(layout)
peak, seconds = status("VmHWM") - before, time.monotonic() - started
report_bytes = Path(summary["report_path"]).stat().st_size
result = {"prepare": prepare, "summary": {"peak": peak, "seconds": seconds, "rows": summary["rows"],
          "delivered": summary["delivered"], "report_bytes": report_bytes}}
print(json.dumps(result))
"""


def test_prepare_and_summary_memory_does_not_grow_with_the_rows(tmp_path):
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO / "plugins"), str(REPO)]),
        "TWILIO_BATCH_DATA_DIRS": str(tmp_path),
    }
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path), str(ROWS)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    prepare, summary = result["prepare"], result["summary"]
    print(
        f"\nMEMORY {ROWS:,} rows: prepare +{prepare['peak']:.0f} MiB in {prepare['seconds']:.0f} s "
        f"(XCom {prepare['xcom_bytes'] / 1024:.0f} KiB), summary +{summary['peak']:.0f} MiB in "
        f"{summary['seconds']:.0f} s (report {summary['report_bytes'] / 1e6:.0f} MB)"
    )
    assert prepare["counts"]["to_send"] == ROWS and prepare["counts"]["duplicate"] == 500
    assert prepare["counts"]["invalid"] == 500 and prepare["counts"]["chunks"] == ROWS // 500
    assert summary["rows"] == ROWS + 1000 and summary["delivered"] == ROWS
    assert prepare["xcom_bytes"] < 6 * prepare["counts"]["chunks"]  # chunk indices: a few bytes each
    assert prepare["peak"] < PREPARE_BOUND_MIB, prepare
    assert summary["peak"] < SUMMARY_BOUND_MIB, summary

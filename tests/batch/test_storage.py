"""The storage layout of a batch run and atomic writes: a reader sees the old file or the whole new one,
never a part, also when the writer is SIGKILLed half-way."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from airflow.sdk import ObjectStoragePath

from twilio_messaging.batch.layout import RunLayout, ledger_folder, report_path, summary_path
from twilio_messaging.storage import (
    open_atomic,
    read_json,
    run_path,
    safe_name,
    storage_base,
    write_bytes_atomic,
    write_json_atomic,
)

REPO = Path(__file__).resolve().parents[2]
RUN_ID = "manual__2026-12-02T00:52:00+00:00"


def test_base_comes_from_twilio_storage_else_airflow_home(tmp_path):
    assert (
        str(storage_base({"TWILIO_STORAGE": "s3://aws_default@bucket/twilio/"}))
        == "s3://aws_default@bucket/twilio"
    )
    assert storage_base({"AIRFLOW_HOME": str(tmp_path)}).path == str(tmp_path / "twilio_messaging")


def test_run_layout_is_what_the_messages_tab_reads(run_storage):
    folder = run_path("twilio_batch_notifications", RUN_ID)
    assert folder.path == str(
        run_storage / "twilio_batch_notifications" / "manual__2026-12-02T00_52_00_00_00"
    )
    layout = RunLayout.of("twilio_batch_notifications", RUN_ID)
    assert summary_path("twilio_batch_notifications", RUN_ID) == layout.summary == folder / "summary.json"
    assert report_path("twilio_batch_notifications", RUN_ID, "json") == folder / "report.json"
    assert report_path("twilio_batch_notifications", RUN_ID) == folder / "report.csv"
    assert layout.manifest(7) == folder / "manifests" / "chunk-00007.jsonl"
    assert layout.results(7) == folder / "results" / "chunk-00007.json"
    assert layout.tracking(7) == folder / "tracking" / "chunk-00007.json"
    assert layout.tracked(7) == folder / "tracked" / "chunk-00007.jsonl"
    assert ledger_folder("twilio_batch_notifications", "2026-12-02").path == str(
        run_storage / "twilio_batch_notifications" / "_ledger" / "2026-12-02"
    )
    assert safe_name("..") == "_.." and safe_name("a/b:c") == "a_b_c"


def test_atomic_writes_replace_whole_files_and_leave_no_temporaries(tmp_path):
    path = ObjectStoragePath(f"file://{tmp_path}/run/results/chunk-00000.json")
    write_json_atomic(path, {"records": [1, 2]})
    write_json_atomic(path, {"records": [1, 2, 3]})
    assert read_json(path) == {"records": [1, 2, 3]}
    assert read_json(ObjectStoragePath(f"file://{tmp_path}/absent.json"), "default") == "default"

    with pytest.raises(RuntimeError), open_atomic(path) as handle:
        handle.write('{"records": [')  # an error half-way ...
        raise RuntimeError("killed")
    assert read_json(path) == {"records": [1, 2, 3]}  # ... leaves the old file as it was
    assert sorted(p.name for p in (tmp_path / "run" / "results").iterdir()) == ["chunk-00000.json"]

    with open_atomic(ObjectStoragePath(f"file://{tmp_path}/run/manifests/chunk-00000.jsonl")) as handle:
        handle.write('{"row": 1}\n')
    assert (tmp_path / "run" / "manifests" / "chunk-00000.jsonl").read_text() == '{"row": 1}\n'
    write_bytes_atomic(ObjectStoragePath(f"file://{tmp_path}/b.bin"), b"\x00\x01")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"


WRITER = """
import sys, time
from airflow.sdk import ObjectStoragePath
from twilio_messaging.storage import open_atomic
with open_atomic(ObjectStoragePath(sys.argv[1])) as handle:
    for i in range(10_000_000):
        handle.write('{"row": %d, "to": "+15550000000", "body": "x"}\\n' % i)
        if i == 1000:
            handle.flush()
            print("writing", flush=True)
        if i > 1000:
            time.sleep(0.001)
"""


def test_a_writer_killed_half_way_leaves_the_old_file(tmp_path):
    path = f"file://{tmp_path}/manifest.jsonl"
    (tmp_path / "manifest.jsonl").write_text('{"row": 1}\n')
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "plugins"), str(REPO)])}
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, path], stdout=subprocess.PIPE, text=True, env=env
    )
    assert writer.stdout is not None
    while writer.stdout.readline().strip() != "writing":  # Airflow may log a line first
        assert writer.poll() is None, "the writer died before it wrote"
    time.sleep(0.2)
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait(timeout=10)
    assert (tmp_path / "manifest.jsonl").read_text() == '{"row": 1}\n'
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "manifest.jsonl"]
    # The killed writer's temporary sibling may remain (a dot-file); nothing reads it, nothing trusts it.
    assert all(name.startswith(".manifest.jsonl.") and name.endswith(".tmp") for name in leftovers)
    assert json.loads((tmp_path / "manifest.jsonl").read_text()) == {"row": 1}


def test_a_lone_surrogate_is_written_escaped_and_read_back_the_same(tmp_path):
    # Legal in a JSON conf (a recipient's `to`), not encodable as UTF-8: the skipped-rows file and the
    # report must still be written, and the JSON read back must hold the same string.
    target = ObjectStoragePath(f"file://{tmp_path}/skipped.jsonl")
    value = {"to": "+1555\ud800", "reason": "must be valid Unicode text"}
    with open_atomic(target) as handle:
        handle.write(json.dumps(value, ensure_ascii=False) + "\n")
    assert json.loads(target.read_text()) == value

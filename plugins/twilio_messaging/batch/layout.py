"""Where a batch run keeps its data in object storage (``storage.run_path``), one place for every name.

    <TWILIO_STORAGE>/<dag_id>/<run_id>/
        batch.json                 the plan prepare wrote once (``plan.BatchPlan``): sender, concurrency,
                                   pace, chunks, dedupe key, connection id; every later task reads it
        skipped.jsonl              rows not sent (invalid, opted_out, duplicate, already_sent), in row order
        manifests/chunk-00000.jsonl  the rows of chunk 0 to send: {"row", "to", "body"} per line
        results/chunk-00000.json   what send_chunk learned (checkpointed while sending): one record per row
        tracking/chunk-00000.json  the final statuses track_chunk has seen so far (never fetched again)
        tracked/chunk-00000.jsonl  the chunk's final records, written when its tracking is done
        summary.json               the summary (also the summary task's XCom, shortened)
        report.csv | report.json   one line per input row
    <TWILIO_STORAGE>/<dag_id>/_ledger/<dedupe_key>/<run_id>.json
                                   "this run sends under this key": later runs read its results to skip
                                   recipients already sent

The Messages tab and other readers use ``summary_path`` and ``report_path``.
"""

from __future__ import annotations

from dataclasses import dataclass

from airflow.sdk import ObjectStoragePath

from twilio_messaging.contract import SUMMARY_FILE, report_file
from twilio_messaging.storage import run_path, safe_name, storage_base

LEDGER_DIR = "_ledger"


def chunk_name(chunk: int, suffix: str) -> str:
    return f"chunk-{chunk:05d}.{suffix}"


@dataclass(frozen=True)
class RunLayout:
    """The files of one batch run."""

    dag_id: str
    run_id: str
    folder: ObjectStoragePath

    @classmethod
    def of(cls, dag_id: str, run_id: str, base: ObjectStoragePath | None = None) -> RunLayout:
        return cls(dag_id, run_id, run_path(dag_id, run_id, base))

    @property
    def batch(self) -> ObjectStoragePath:
        return self.folder / "batch.json"

    @property
    def skipped(self) -> ObjectStoragePath:
        return self.folder / "skipped.jsonl"

    @property
    def summary(self) -> ObjectStoragePath:
        return self.folder / SUMMARY_FILE

    def report(self, fmt: str) -> ObjectStoragePath:
        return self.folder / report_file(fmt)

    def manifest(self, chunk: int) -> ObjectStoragePath:
        return self.folder / "manifests" / chunk_name(chunk, "jsonl")

    def results(self, chunk: int) -> ObjectStoragePath:
        return self.folder / "results" / chunk_name(chunk, "json")

    def tracking(self, chunk: int) -> ObjectStoragePath:
        return self.folder / "tracking" / chunk_name(chunk, "json")

    def tracked(self, chunk: int) -> ObjectStoragePath:
        return self.folder / "tracked" / chunk_name(chunk, "jsonl")


def ledger_folder(dag_id: str, dedupe_key: str, base: ObjectStoragePath | None = None) -> ObjectStoragePath:
    """The runs that sent under ``dedupe_key``: one small file per run, naming it."""
    return (base or storage_base()) / safe_name(dag_id) / LEDGER_DIR / safe_name(dedupe_key)


def summary_path(dag_id: str, run_id: str) -> ObjectStoragePath:
    """``summary.json`` of a batch run (written by the summary task)."""
    return RunLayout.of(dag_id, run_id).summary


def report_path(dag_id: str, run_id: str, fmt: str = "csv") -> ObjectStoragePath:
    """The per-recipient report of a batch run: ``report.csv`` or ``report.json``."""
    return RunLayout.of(dag_id, run_id).report(fmt)

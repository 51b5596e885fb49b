"""No duplicate across runs: which recipients earlier runs under the same dedupe key already sent to.

prepare registers each run under its key (``_ledger/<key>/<run_id>.json``, see ``layout``). The facts
themselves are the earlier runs' own files, read here chunk by chunk:

- ``tracked/`` or ``results/`` records with a SID: sent (skipped now as ``already_sent``, with that SID);
- rows of a chunk whose results are not ``complete`` and that have no record: that run died mid-chunk and
  may have sent them, so they are sent again only after a look-up (``since``), as a task retry would;
- a chunk without results never started sending: its rows were not sent.

Results are checkpointed while a chunk sends, so this survives a crash mid-chunk. The runs of one DAG never
overlap (``max_active_runs=1``), so an earlier run is finished (or dead) when a later one prepares.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from airflow.sdk import ObjectStoragePath

from twilio_messaging.batch.layout import RunLayout, ledger_folder
from twilio_messaging.batch.records import LedgerEntry
from twilio_messaging.storage import read_json, safe_name, write_json_atomic

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SentBefore:
    run_id: str
    sid: str | None  # None: maybe sent (look up since ``since`` before sending)
    status: str | None = None
    since: str | None = None


def jsonl(item: Mapping[str, Any]) -> str:
    """One line of a JSON-lines file (the runs' manifests, skipped rows and tracked records)."""
    return json.dumps(item, ensure_ascii=False, separators=(",", ":")) + "\n"


def iter_jsonl(path: ObjectStoragePath) -> Iterator[dict[str, Any]]:
    """The JSON objects of a JSON-lines file, one at a time; nothing when it does not exist."""
    try:
        handle = path.open("r", encoding="utf-8")
    except FileNotFoundError:
        return
    with handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


def register(
    dag_id: str, dedupe_key: str, run_id: str, chunks: int, prepared_at: str, base: ObjectStoragePath | None
) -> None:
    entry: LedgerEntry = {"run_id": run_id, "chunks": chunks, "prepared_at": prepared_at}
    write_json_atomic(ledger_folder(dag_id, dedupe_key, base) / f"{safe_name(run_id)}.json", entry)


def earlier_runs(
    dag_id: str, dedupe_key: str, run_id: str, base: ObjectStoragePath | None
) -> list[LedgerEntry]:
    folder = ledger_folder(dag_id, dedupe_key, base)
    if not folder.exists():
        return []
    entries = []
    for path in sorted(folder.iterdir(), key=str):
        if not path.name.endswith(".json") or path.name == f"{safe_name(run_id)}.json":
            continue
        entry = read_json(path)
        if isinstance(entry, dict) and entry.get("run_id") and entry.get("run_id") != run_id:
            entries.append(entry)
    return entries  # type: ignore[return-value]


def sent_before(
    dag_id: str, dedupe_key: str, run_id: str, base: ObjectStoragePath | None = None
) -> dict[str, SentBefore]:
    """Every number an earlier run under ``dedupe_key`` sent (or may have sent), by normalised number."""
    out: dict[str, SentBefore] = {}
    for entry in earlier_runs(dag_id, dedupe_key, run_id, base):
        layout = RunLayout.of(dag_id, entry["run_id"], base)
        found = 0
        for chunk in range(int(entry.get("chunks") or 0)):
            found += _read_chunk(layout, chunk, out)
        log.info("Dedupe key %r: run %s sent %d of these numbers", dedupe_key, entry["run_id"], found)
    return out


def _read_chunk(layout: RunLayout, chunk: int, out: dict[str, SentBefore]) -> int:
    found = 0
    tracked = layout.tracked(chunk)
    if tracked.exists():
        for record in iter_jsonl(tracked):
            if record.get("sid"):
                out[record["to"]] = SentBefore(layout.run_id, record["sid"], record.get("status"))
                found += 1
        return found
    results = read_json(layout.results(chunk))
    if not isinstance(results, dict):
        return 0
    recorded = set()
    for record in results.get("records") or []:
        recorded.add(record["row"])
        if record.get("sid"):
            out[record["to"]] = SentBefore(layout.run_id, record["sid"], record.get("status"))
            found += 1
    if not results.get("complete"):
        for row in iter_jsonl(layout.manifest(chunk)):
            if row["row"] not in recorded and row["to"] not in out:
                out[row["to"]] = SentBefore(layout.run_id, None, since=results.get("started_at"))
                found += 1
    return found

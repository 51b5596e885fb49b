"""Turning recipient rows into sendable rows, one at a time, before anything is sent.

Every row ends up either sendable (exactly once per normalised number) or skipped with an outcome and a
reason: ``invalid`` (bad number, template field missing, body too long, ...), ``opted_out``, ``duplicate``
or ``already_sent`` (an earlier run under the same dedupe key sent it). A bad row never fails the batch; a
bad template or sender does, before any SMS goes out.

``RowFilter`` keeps only what deduplication needs (one entry per number), so ``prepare_run`` (the DAG's
prepare task) streams any number of rows through it into one manifest per chunk, and writes the batch's
plan (``plan.BatchPlan``) that every later task reads.
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypedDict, TypeGuard, cast

from twilio_messaging.batch import ledger
from twilio_messaging.batch.layout import RunLayout
from twilio_messaging.batch.ledger import SentBefore, jsonl
from twilio_messaging.batch.plan import (
    BatchPlan,
    Sender,
    concurrency_from_params,
    sender_from_params,
    write_plan,
)
from twilio_messaging.batch.recipients import (
    TO_FIELD,
    bare_number,
    iter_rows,
    load_opt_out,
    normalise_number,
    resolve_path,
    rows_from_list,
)
from twilio_messaging.batch.records import ChunkRef, ManifestRow, SkippedRow
from twilio_messaging.batch.templating import BodyTemplate, MissingField
from twilio_messaging.batch.throughput import DrainEstimate
from twilio_messaging.contract import ALREADY_SENT, DUPLICATE, INVALID, OPTED_OUT, SKIP_OUTCOMES
from twilio_messaging.settings import BatchSettings, batch_data_dirs
from twilio_messaging.storage import open_atomic
from twilio_messaging.validation import InvalidInput

log = logging.getLogger(__name__)

MAX_CHUNK_SIZE = 5000  # the chunk_size param's maximum: one task's rows stay small in memory and storage
# Without chunk_size: enough chunks to keep the default pool busy (50 slots / 10 per chunk task = 5 at once,
# twice over), none smaller than 500 rows, since every task instance has a fixed cost (seconds on Celery,
# more for a Kubernetes pod), and none larger than the maximum.
AUTO_CHUNKS = 10
AUTO_MIN_CHUNK = 500
SKIPPED_EXAMPLES = 10  # skipped rows named in prepare's XCom and log; skipped.jsonl has them all


@dataclass
class RowFilter:
    """Classifies rows one by one; remembers one entry per number sent (for duplicates), nothing else."""

    template: BodyTemplate
    sender: Sender
    opt_out: frozenset[str] | set[str] = frozenset()
    sent_before: Mapping[str, SentBefore] = field(default_factory=dict)
    first_row_of: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.sender.check()

    def check(self, number: int, row: Mapping[str, Any]) -> ManifestRow | SkippedRow:
        raw_to = row.get(TO_FIELD)
        shown_to = "" if raw_to is None else str(raw_to)
        to = normalise_number(raw_to)
        try:
            if not to:
                raise InvalidInput(TO_FIELD, "is required; the row has no value in the 'to' column")
            request = self.sender.request(to, self.template.render(row))
        except (MissingField, InvalidInput) as exc:
            return {"row": number, "to": shown_to, "outcome": INVALID, "reason": str(exc)}
        if to in self.opt_out or bare_number(to) in self.opt_out:
            return {"row": number, "to": to, "outcome": OPTED_OUT, "reason": "number is on the opt-out list"}
        if to in self.first_row_of:
            first = self.first_row_of[to]
            return {
                "row": number,
                "to": to,
                "outcome": DUPLICATE,
                "reason": f"same number as row {first}, which is sent instead",
            }
        self.first_row_of[to] = number
        before = self.sent_before.get(to)
        if before is not None and before.sid:
            return {
                "row": number,
                "to": to,
                "outcome": ALREADY_SENT,
                "reason": f"already sent by run {before.run_id} under the same dedupe key",
                "sid": before.sid,
                "status": before.status,
            }
        out: ManifestRow = {"row": number, "to": request.to, "body": request.body or ""}
        if before is not None and before.since:
            out["since"] = before.since  # that run died mid-chunk: maybe sent; looked up before sending
        return out


def is_skipped(item: ManifestRow | SkippedRow) -> TypeGuard[SkippedRow]:
    return "outcome" in item


def auto_chunk_size(to_send: int) -> int:
    """About ``AUTO_CHUNKS`` chunks of ``AUTO_MIN_CHUNK``..``MAX_CHUNK_SIZE`` rows, split evenly."""
    if to_send < 1:
        return 1
    size = min(MAX_CHUNK_SIZE, max(AUTO_MIN_CHUNK, math.ceil(to_send / AUTO_CHUNKS)))
    return math.ceil(to_send / math.ceil(to_send / size))


def chunk_size_for(to_send: int, wanted: int | None, max_map_length: int) -> int:
    """The chunk size: ``wanted``, else ``auto_chunk_size``; grown so that the chunks fit in
    ``[core] max_map_length`` mapped tasks.

    Raises ``InvalidInput`` (naming the setting and the numbers) when even ``MAX_CHUNK_SIZE`` cannot fit.
    """
    if wanted is not None and wanted < 1:
        raise InvalidInput("chunk_size", "must be at least 1")
    if wanted is None:
        wanted = auto_chunk_size(to_send)
    needed = math.ceil(to_send / max_map_length) if to_send else 1
    if needed > MAX_CHUNK_SIZE:
        raise InvalidInput(
            "chunk_size",
            f"{to_send:,} messages need {math.ceil(to_send / MAX_CHUNK_SIZE):,} chunks even at the largest "
            f"chunk size of {MAX_CHUNK_SIZE:,}, but Airflow maps at most {max_map_length:,} tasks "
            f"([core] max_map_length, env AIRFLOW__CORE__MAX_MAP_LENGTH): raise that setting to at least "
            f"{math.ceil(to_send / MAX_CHUNK_SIZE):,} or split the list into runs of at most "
            f"{max_map_length * MAX_CHUNK_SIZE:,} recipients",
        )
    return max(wanted, needed)


# ---- the prepare task --------------------------------------------------------------------------------


class PrepareOutput(TypedDict):
    chunks: list[ChunkRef]
    counts: dict[str, int]
    skipped: list[SkippedRow]
    prepared_at: str
    dedupe_key: str


def max_map_length() -> int:
    """``[core] max_map_length``: how many mapped task instances Airflow creates for one task."""
    from airflow.sdk.configuration import conf

    return int(conf.getint("core", "max_map_length"))


def _rows(params: Mapping[str, Any], base_dirs: Sequence[Path]) -> tuple[Iterable[Mapping[str, Any]], str]:
    if params.get("recipients"):
        return rows_from_list(params["recipients"], "recipients"), "conf 'recipients'"
    if params.get("recipients_path"):
        path = resolve_path(params["recipients_path"], base_dirs, batch_data_dirs(base_dirs[0]))
        return iter_rows(path), str(path)
    raise InvalidInput("recipients_path", "give a recipients file path or a 'recipients' list")


def prepare_run(
    params: Mapping[str, Any],
    settings: BatchSettings,
    base_dirs: Sequence[Path],
    layout: RunLayout,
    key: str,
    *,
    conn_id: str,
    map_limit: int | None = None,
    base: Any = None,
) -> PrepareOutput:
    """Stream the recipients: validate, dedupe (within the run and against earlier runs under ``key``),
    opt-out, render, write one manifest per chunk and the skipped rows to storage, then the batch's plan.

    Memory holds one entry per number (for duplicates) and the earlier runs' sent numbers, not the rows.
    Raises ``InvalidInput`` for batch-wide problems, before anything is sent.
    """
    started = time.monotonic()
    rows, source = _rows(params, base_dirs)
    opt_out_path = params.get("opt_out_path")
    allowed = batch_data_dirs(base_dirs[0])
    opt_out = load_opt_out(
        resolve_path(opt_out_path, base_dirs, allowed, "opt_out_path") if opt_out_path else None,
        params.get("opt_out") or (),
    )
    template = BodyTemplate.parse(params.get("body_template") or "")
    sender = sender_from_params(params, settings)
    sender.check()
    concurrency = concurrency_from_params(params, settings)
    sent_before = (
        {} if params.get("allow_resend") else ledger.sent_before(layout.dag_id, key, layout.run_id, base)
    )
    check = RowFilter(template, sender, opt_out, sent_before)
    mps = params.get("sender_mps")
    pace = bool(params.get("pace")) and bool(mps)
    estimate = DrainEstimate(float(mps)) if mps else None
    counts: Counter[str] = Counter()
    examples: list[SkippedRow] = []
    total = to_send = 0
    with tempfile.TemporaryFile("w+", encoding="utf-8") as spool:
        with open_atomic(layout.skipped) as skipped_out:
            for number, row in enumerate(rows, start=1):
                total = number
                item = check.check(number, row)
                if is_skipped(item):
                    counts[item["outcome"]] += 1
                    skipped_out.write(jsonl(item))
                    if len(examples) < SKIPPED_EXAMPLES:
                        examples.append(item)
                    continue
                sendable = cast(ManifestRow, item)
                to_send += 1
                if estimate is not None:
                    offset = estimate.add(sendable["body"])
                    if pace:
                        sendable["offset"] = offset
                spool.write(jsonl(sendable))
            if estimate is not None and not pace and (refusal := estimate.refusal()) is not None:
                raise refusal
        del check, sent_before  # the dedupe memory is not needed for cutting the chunks
        given = params.get("chunk_size")
        wanted = int(given) if given else None
        limit = map_limit or max_map_length()
        size = chunk_size_for(to_send, wanted, limit)
        if wanted is not None and size != wanted:
            log.warning(
                "chunk_size %d would make %d chunks, over [core] max_map_length = %d: using chunks of %d",
                wanted,
                -(-to_send // wanted),
                limit,
                size,
            )
        spool.seek(0)
        chunk_rows = _write_manifests(spool, layout, size)
    refs: list[ChunkRef] = list(range(len(chunk_rows)))
    prepared_at = datetime.now(UTC).isoformat()
    summary_counts = {"rows": total, "to_send": to_send, "chunks": len(refs), "chunk_size": size}
    summary_counts.update({outcome: counts[outcome] for outcome in SKIP_OUTCOMES})
    threshold = params.get("failure_threshold")
    plan = BatchPlan(
        prepared_at=prepared_at,
        dedupe_key=key,
        allow_resend=bool(params.get("allow_resend")),
        conn_id=conn_id,
        account_sid=params.get("accountSid") or None,
        sender=sender,
        concurrency=concurrency,
        pace=pace,
        sender_mps=float(mps) if mps else None,
        segments=estimate.segments if estimate else None,
        chunk_size=size,
        chunk_rows=chunk_rows,
        counts=summary_counts,
        report_format=params.get("report_format") or "csv",
        failure_threshold=None if threshold is None else float(threshold),
    )
    write_plan(layout, plan)
    ledger.register(layout.dag_id, key, layout.run_id, len(refs), prepared_at, base)
    log.info(
        "Recipients from %s: %s; dedupe key %r (%d already sent); %.1f s; manifests in %s",
        source,
        summary_counts,
        key,
        counts[ALREADY_SENT],
        time.monotonic() - started,
        layout.folder,
    )
    if estimate is not None:
        log.info(
            "Sender at %g segments/s: %d segments need %.0f s%s",
            estimate.mps,
            estimate.segments,
            estimate.seconds,
            " (paced)" if pace else "",
        )
    for skipped in examples:
        log.info(
            "Row %s (%s) skipped as %s: %s",
            skipped["row"],
            skipped["to"],
            skipped["outcome"],
            skipped["reason"],
        )
    return {
        "chunks": refs,
        "counts": summary_counts,
        "skipped": examples,
        "prepared_at": prepared_at,
        "dedupe_key": key,
    }


def _write_manifests(spool: Iterable[str], layout: RunLayout, size: int) -> list[int]:
    """One manifest per ``size`` lines; the row count of each."""
    rows: list[int] = []
    lines = iter(spool)
    while True:
        chunk = len(rows)
        count = 0
        first = next(lines, None)
        if first is None:
            return rows
        with open_atomic(layout.manifest(chunk)) as out:
            out.write(first)
            count = 1
            for line in lines:
                out.write(line)
                count += 1
                if count == size:
                    break
        rows.append(count)

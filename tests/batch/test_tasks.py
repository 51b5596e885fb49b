"""The DAG's task callables as plain functions: collecting records after failures, the run verdict."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.batch.inmemory import summarise_records as summarise
from twilio_messaging.batch import failures, ledger, plan, send, track
from twilio_messaging.batch import report as reporting
from twilio_messaging.batch.layout import RunLayout
from twilio_messaging.batch.prepare import prepare_run
from twilio_messaging.batch.records import message_record
from twilio_messaging.batch.track import StorageStore
from twilio_messaging.errors import TwilioAPIError, TwilioConfigError, TwilioUnreachableError
from twilio_messaging.settings import BatchSettings
from twilio_messaging.storage import read_json, write_json_atomic
from twilio_messaging.validation import InvalidInput

REPO = Path(__file__).resolve().parents[2]
ROWS = [
    {"to": "+15550000001", "name": "a"},
    {"to": "+15550000002", "name": "b"},
    {"to": "x", "name": "bad"},
    {"to": "+15550000004", "name": "c"},
    {"to": "+15550000005", "name": "d"},
]
PARAMS = {"recipients": ROWS, "body_template": "Hi {name}", "chunk_size": 2, "report_format": "csv"}


def settings(**changes) -> BatchSettings:
    base = BatchSettings(
        schedule=None, pool="twilio_api", concurrency=10, poke_interval=1, first_fetch_after=30,
        status_timeout=600, send_timeout=60, default_from="+15005550006",
    )  # fmt: skip
    return BatchSettings(**{**base.__dict__, **changes})


def prepared(run_id: str = "run_1", params=None) -> tuple[RunLayout, dict]:
    layout = RunLayout.of("batch_dag", run_id)
    out = prepare_run(
        {**PARAMS, **(params or {})},
        settings(),
        [REPO],
        layout,
        "2026-12-02",
        map_limit=1024,
        conn_id="twilio_default",
    )
    return layout, out


def results(layout: RunLayout, chunk: int, records, complete: bool) -> None:
    write_json_atomic(
        layout.results(chunk),
        {"chunk": chunk, "started_at": "2026-12-02T00:00:00+00:00", "sent_at": None, "complete": complete,
         "records": records},
    )  # fmt: skip


def test_summary_after_a_send_that_died_mid_chunk_and_failed_tracking(tmp_path):
    layout, out = prepared()
    assert out["chunks"] == [0, 1]
    assert [len(plan.read_manifest(layout, chunk)) for chunk in out["chunks"]] == [2, 2]
    assert out["counts"]["invalid"] == 1 and out["counts"]["to_send"] == 4
    delivered = message_record(1, "+15550000001", "SM1", "delivered")
    undelivered = message_record(2, "+15550000002", "SM2", "undelivered", 30003)
    results(layout, 0, [delivered, undelivered], complete=True)
    track.write_tracked(layout, 0, [delivered, undelivered])
    # Chunk 1's send died after row 4; its tracking failed too, but the store knows row 4's final status.
    results(layout, 1, [message_record(4, "+15550000004", "SM4", "queued")], complete=False)
    StorageStore(layout.tracking(1)).save({"SM4": ["delivered", None, None]})

    summary = reporting.summarise(layout)
    with open(summary["report_path"], newline="") as handle:
        report = list(csv.DictReader(handle))
    assert [(int(r["row"]), r["outcome"]) for r in report] == [
        (1, "delivered"), (2, "failed"), (3, "invalid"), (4, "delivered"), (5, "unknown"),
    ]  # fmt: skip
    assert not layout.tracking(1).exists()  # the summary cleans up what tracking left behind
    assert (summary["to_send"], summary["failed"], summary["unknown"]) == (4, 2, 1)
    assert summary["failures_by_code"]["30003"]["count"] == 1
    assert "30003" in summary["failures_by_code"]["30003"]["meaning"]
    assert summary["dedupe_key"] == "2026-12-02" and summary["already_sent"] == 0
    assert read_json(layout.summary) == summary  # summary.json holds what the XCom holds
    assert summary["report_uri"] == str(layout.report("csv"))
    verdict = reporting.failure_verdict(summary, threshold=0.9)
    assert verdict is not None and "1 messages are in chunks whose send task failed" in verdict


def test_failure_verdict_names_the_numbers():
    failed = [message_record(i, f"+1555000{i:04d}", f"SM{i}", "failed", 30008) for i in range(3)]
    records = failed + [message_record(i, f"+1555000{i:04d}", f"SM{i}", "delivered") for i in range(3, 10)]
    summary = summarise(records, "/tmp/r.csv")
    assert reporting.failure_verdict(summary, 0.3) is None
    verdict = reporting.failure_verdict(summary, 0.25)
    assert "3 of 10 messages failed (30.0%)" in verdict and "25.0%" in verdict
    assert "30008: 3" in verdict and "/tmp/r.csv" in verdict


@pytest.mark.parametrize(
    ("exc", "final"),
    [
        (InvalidInput("body_template", "x"), True),
        (TwilioConfigError("no host"), True),
        (TwilioAPIError(401, 20003, "Authenticate"), True),
        (TwilioAPIError(404, 20404, "not found"), True),
        (TwilioAPIError(400, 21211, "bad To"), False),
        (TwilioUnreachableError("down"), False),
        (RuntimeError("?"), False),
    ],
)
def test_final_errors_are_not_retried(exc, final):
    assert failures.is_final_error(exc) is final


def test_concurrency_param_can_lower_but_not_raise():
    assert plan.concurrency_from_params({"concurrency": 3}, settings()) == 3
    assert plan.concurrency_from_params({"concurrency": 50}, settings()) == 10
    assert plan.concurrency_from_params({}, settings()) == 10
    with pytest.raises(InvalidInput, match="concurrency"):
        plan.concurrency_from_params({"concurrency": -1}, settings())


def test_sender_defaults_only_without_from_and_service():
    assert plan.sender_from_params({}, settings()).from_ == "+15005550006"
    service = "MG" + "0" * 32
    sender = plan.sender_from_params({"messagingServiceSid": service}, settings())
    assert (sender.from_, sender.messaging_service_sid) == (None, service)


def test_no_fetch_before_first_fetch_after():
    layout, _ = prepared()
    sent = {"chunk": 0, "sent_at": datetime.now(UTC).isoformat()}
    results(layout, 0, [message_record(1, "+15550000001", "SM1", "queued")], complete=True)
    # No connection is needed (or made) while the chunk is younger than first_fetch_after.
    assert track.track_poke(sent, settings(), layout) == (False, None)
    results(layout, 1, [message_record(4, "+15005550001", None, None, 21211)], complete=True)
    done, value = track.track_poke({**sent, "chunk": 1}, settings(), layout)
    assert done and value == {"chunk": 1, "delivered": 0, "failed": 0, "unconfirmed": 0, "rejected": 1}
    assert [r["outcome"] for r in ledger.iter_jsonl(layout.tracked(1))] == ["rejected"]


def test_settings_from_env(monkeypatch):
    monkeypatch.setenv("TWILIO_BATCH_SCHEDULE", "none")
    monkeypatch.setenv("TWILIO_BATCH_POKE_INTERVAL", "7")
    monkeypatch.delenv("TWILIO_BATCH_FIRST_FETCH_AFTER", raising=False)
    monkeypatch.setenv("TWILIO_BATCH_CONCURRENCY", "25")
    loaded = BatchSettings.from_env()
    assert (loaded.schedule, loaded.poke_interval, loaded.first_fetch_after, loaded.concurrency) == (
        None,
        7,
        7,
        25,
    )
    monkeypatch.setenv("TWILIO_BATCH_POKE_INTERVAL", "soon")
    with pytest.raises(ValueError, match="TWILIO_BATCH_POKE_INTERVAL"):
        BatchSettings.from_env()


def test_chunk_size_grows_to_fit_max_map_length_and_says_so(caplog):
    rows = [{"to": f"+1555069{i:04d}", "name": f"N{i}"} for i in range(100)]
    params = {"recipients": rows, "body_template": "Hi {name}", "chunk_size": 5}
    with caplog.at_level("WARNING"):
        out = prepare_run(
            params, settings(), [REPO], RunLayout.of("d", "grow"), "k", map_limit=16, conn_id="twilio_default"
        )
    layout = RunLayout.of("d", "grow")
    assert [len(plan.read_manifest(layout, chunk)) for chunk in out["chunks"]] == [7] * 14 + [2]
    assert (
        "chunk_size 5 would make 20 chunks, over [core] max_map_length = 16: using chunks of 7" in caplog.text
    )


def test_without_chunk_size_the_chunks_are_an_even_split_of_about_ten():
    from twilio_messaging.batch.prepare import chunk_size_for

    sizes = [chunk_size_for(n, None, 1024) for n in (0, 12, 2_000, 5_001, 12_000, 100_000, 1_000_000)]
    assert sizes == [1, 12, 500, 501, 1_200, 5_000, 5_000]
    assert chunk_size_for(4_000, None, 1) == 4_000  # grown to fit a max_map_length of 1


def test_too_many_recipients_for_max_map_length_are_refused_naming_the_setting():
    from twilio_messaging.batch.prepare import chunk_size_for

    assert chunk_size_for(80_000, 500, 16) == 5000
    with pytest.raises(InvalidInput) as info:
        chunk_size_for(80_001, 500, 16)
    text = str(info.value)
    assert "80,001 messages need 17 chunks" in text and "largest chunk size of 5,000" in text
    assert "[core] max_map_length" in text and "AIRFLOW__CORE__MAX_MAP_LENGTH" in text and "80,000" in text


def test_default_dedupe_key_is_the_day_of_the_run():
    from datetime import datetime

    midnight = datetime(2026, 12, 2, tzinfo=UTC)
    later = datetime(2026, 12, 2, 0, 52, tzinfo=UTC)
    scheduled = plan.dedupe_key({}, midnight, midnight, midnight)
    manual = plan.dedupe_key({}, later, later, later)
    manual_without_date = plan.dedupe_key({"dedupe_key": ""}, None, None, later)
    assert scheduled == manual == manual_without_date == "2026-12-02"
    assert plan.dedupe_key({"dedupe_key": " campaign-7 "}, midnight, None, midnight) == "campaign-7"


def test_a_worker_that_does_not_see_the_storage_fails_instead_of_sending_nothing(monkeypatch, tmp_path):
    layout, out = prepared("shared")
    monkeypatch.setenv("TWILIO_STORAGE", f"file://{tmp_path / 'elsewhere'}")
    elsewhere = RunLayout.of(layout.dag_id, layout.run_id)
    with pytest.raises(plan.StorageMismatch, match="every worker must see the same storage"):
        send.send_chunk(out["chunks"][0], settings(), elsewhere, connection=object())  # type: ignore[arg-type]
    with pytest.raises(plan.StorageMismatch, match="send_chunk of chunk 0"):
        track.track_poke({"chunk": 0, "sent_at": datetime.now(UTC).isoformat()}, settings(), elsewhere)


def test_prepare_writes_the_plan_every_later_task_reads():
    service = "MG" + "1" * 32
    params = {
        "messagingServiceSid": service,
        "statusCallback": "https://cb.example/s",
        "accountSid": "AC" + "2" * 32,
        "concurrency": 3,
        "sender_mps": 50,
        "pace": True,
        "report_format": "json",
        "failure_threshold": 0.25,
    }
    layout, out = prepared("planned", params)
    planned = plan.read_plan(layout)
    assert planned.sender == plan.Sender(None, service, "https://cb.example/s")
    assert (planned.concurrency, planned.pace, planned.sender_mps) == (3, True, 50.0)
    assert (planned.conn_id, planned.account_sid) == ("twilio_default", "AC" + "2" * 32)
    assert (planned.dedupe_key, planned.prepared_at) == ("2026-12-02", out["prepared_at"])
    assert (planned.chunks, planned.chunk_rows, planned.chunk_size) == (2, [2, 2], 2)
    assert (planned.report_format, planned.failure_threshold) == ("json", 0.25)
    assert plan.BatchPlan.from_json(planned.to_json()) == planned
    # The summary reports as planned: the params are not read again.
    for chunk in out["chunks"]:
        results(layout, chunk, [], complete=True)
    summary = reporting.summarise(layout)
    assert summary["report_path"].endswith("report.json") and summary["failure_threshold"] == 0.25


def test_later_tasks_need_the_plan():
    layout = RunLayout.of("batch_dag", "never_prepared")
    with pytest.raises(plan.StorageMismatch, match=r"batch\.json is missing, though prepare wrote it"):
        send.send_chunk(0, settings(), layout, connection=object())  # type: ignore[arg-type]

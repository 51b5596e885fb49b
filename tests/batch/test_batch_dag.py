"""The batch DAG end to end with ``dag.test`` against a real sandbox process."""

from __future__ import annotations

import csv
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
DAG_FILE = REPO / "dags" / "twilio_batch_notifications.py"
DAG_ID = "twilio_batch_notifications"
FROM = "+15005550006"
JINJA = "{{ conn.twilio_default.password }}"


def load_dag():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAG_FILE))
    assert bag.import_errors == {}
    return bag.dags[DAG_ID]


def task_states(run) -> dict[tuple[str, int], str | None]:
    from airflow.models import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = session.query(TaskInstance).filter_by(dag_id=DAG_ID, run_id=run.run_id).all()
        return {
            (ti.task_id, ti.map_index): None
            if ti.state is None
            else str(getattr(ti.state, "value", ti.state))
            for ti in tis
        }


def states_by_task(run) -> dict[str, Counter]:
    out: dict[str, Counter] = {}
    for (task_id, _), state in task_states(run).items():
        out.setdefault(task_id, Counter())[state] += 1
    return out


def xcom(run, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = (
            session.query(XComModel)
            .filter_by(dag_id=DAG_ID, run_id=run.run_id, task_id=task_id, key=key, map_index=map_index)
            .one_or_none()
        )
        return None if row is None else XComModel.deserialize_value(row)


def tracking_variables() -> list[str]:
    from airflow.models import Variable
    from airflow.utils.session import create_session

    with create_session() as session:
        return [
            v.key for v in session.query(Variable).filter(Variable.key.like("twilio_batch_track:%")).all()
        ]


@pytest.fixture
def batch_env(monkeypatch, airflow_db, clean_sandbox, tmp_path):
    monkeypatch.setenv("AIRFLOW_CONN_TWILIO_DEFAULT", clean_sandbox.conn_json())
    monkeypatch.setenv("TWILIO_BATCH_DATA_DIRS", f"{REPO / 'include'}{os.pathsep}{tmp_path}")
    return clean_sandbox


def test_schedule_parses_and_every_param_default_is_valid(airflow_db, monkeypatch):
    from airflow.sdk.definitions.param import ParamsDict

    dag = load_dag()
    dag.timetable.validate()  # raises for a cron expression that does not parse
    assert dag.timetable.expression in ("@daily", "0 0 * * *") and dag.timetable.can_be_scheduled
    assert dag.catchup is False
    # An empty conf must validate (a scheduled DAG needs valid defaults for every param).
    defaults = ParamsDict(dag.params).validate()
    assert defaults["recipients_path"] == "include/recipients_sample.csv"
    assert (
        defaults["chunk_size"] is None  # sized by prepare
        and defaults["concurrency"] == 10
        and defaults["failure_threshold"] == 0.1
    )

    # The defaults also make a usable batch: the sample file, template and opt-out list work together.
    from twilio_messaging.batch.layout import RunLayout
    from twilio_messaging.batch.prepare import prepare_run
    from twilio_messaging.settings import BatchSettings

    layout = RunLayout.of(DAG_ID, "defaults")
    prepared = prepare_run(
        defaults, BatchSettings.from_env(), [REPO, REPO / "dags"], layout, "k", conn_id="twilio_default"
    )
    assert prepared["counts"] == {
        "rows": 16, "to_send": 12, "chunks": 1, "chunk_size": 12, "invalid": 2, "opted_out": 1,
        "duplicate": 1, "already_sent": 0,
    }  # fmt: skip

    monkeypatch.setenv("TWILIO_BATCH_SCHEDULE", "0 6 * * 1-5")
    weekdays = load_dag().timetable
    weekdays.validate()
    assert weekdays.expression == "0 6 * * 1-5"
    monkeypatch.setenv("TWILIO_BATCH_SCHEDULE", "none")
    assert not load_dag().timetable.can_be_scheduled


@pytest.mark.parametrize(
    ("conf", "name"),
    [
        ({"chunk_size": 0}, "chunk_size"),
        ({"concurrency": 11}, "concurrency"),
        ({"failure_threshold": 1.5}, "failure_threshold"),
        ({"report_format": "xml"}, "report_format"),
        ({"from": "not a sender!"}, "from"),
    ],
)
def test_bad_params_are_refused_at_trigger_time(airflow_db, clean_sandbox, conf, name):
    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError, match=name):
        load_dag().test(run_conf=conf)
    assert clean_sandbox.messages() == []


def test_default_run_sends_the_sample(batch_env):
    run = load_dag().test()
    assert run.state == "success"
    summary = xcom(run, "summary")
    assert summary["to_send"] == 12 and summary["delivered"] == 11 and summary["failed"] == 1
    assert sorted(m["to"] for m in batch_env.messages()) == sorted(
        [f"+155501000{i:02d}" for i in (1, 2, 3, 4, 5, 6, 7, 12, 13, 14, 15)] + ["+15550103003"]
    )


def mixed_recipients() -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """About 200 rows: valid, invalid, duplicate, opted out, undelivered/failed endings, magic rejections."""
    rows: list[dict[str, Any]] = []
    expected: dict[str, Any] = {"sent": [], "undelivered": [], "failed": [], "rejected": [], "invalid": 0,
                                "duplicate": 0, "opted_out": 0}  # fmt: skip
    for i in range(150):
        ending = {0: "3003", 1: "3005", 2: "3006", 3: "3008"}.get(i % 10, f"{i:04d}")
        to = f"+1555{i:03d}{ending}"
        rows.append({"to": to, "name": f"Person {i}", "date": "Monday"})
        expected["sent"].append(to)
        if ending in ("3003", "3005", "3006"):
            expected["undelivered"].append(to)
        elif ending == "3008":
            expected["failed"].append(to)
    rows[7]["name"] = JINJA  # a value that looks like Jinja must reach the SMS literally
    for i in range(15):  # duplicates, formatted differently
        to = expected["sent"][i * 9 + 4]
        rows.append({"to": f"{to[:2]} ({to[2:5]}) {to[5:8]}-{to[8:]}", "name": "Dup", "date": "Tuesday"})
        expected["duplicate"] += 1
    invalid = [
        {"to": "5550100", "name": "no plus", "date": "x"},
        {"to": "+0123456789", "name": "leading zero", "date": "x"},
        {"to": "", "name": "empty", "date": "x"},
        {"name": "no to at all", "date": "x"},
        {"to": "+15559990001", "date": "missing name"},
        {"to": "+15559990002", "name": "", "date": "empty name"},
        {"to": "+15559990003", "name": "x" * 1600, "date": "too long"},
        {"to": "sms:+15559990004", "name": "bad channel", "date": "x"},
    ] * 2
    rows.extend(invalid)
    expected["invalid"] = len(invalid)
    for i in range(10):  # opted out: 5 from the file, 5 from the conf list
        rows.append({"to": f"+1555888{i:04d}", "name": "Stop", "date": "x"})
        expected["opted_out"] += 1
    for to in ("+15005550001", "+15005550004"):  # Twilio rejects these at create time (21211, 21610)
        rows.append({"to": to, "name": "Magic", "date": "x"})
        expected["rejected"].append(to)
    return rows, expected


def test_mixed_batch_of_about_200(batch_env, tmp_path):
    rows, expected = mixed_recipients()
    assert 190 <= len(rows) <= 210
    opt_out_file = tmp_path / "stop.txt"
    opt_out_file.write_text("\n".join(f"+1 555 888 {i:04d}" for i in range(5)) + "\n")
    conf = {
        "recipients": rows,
        "from": FROM,
        "body_template": "Hi {name}, your appointment is {date}.",
        "opt_out_path": str(opt_out_file),
        "opt_out": [f"+1555888{i:04d}" for i in range(5, 10)],
        "chunk_size": 40,
        "failure_threshold": 0.5,
        "report_format": "json",
    }
    run = load_dag().test(run_conf=conf)
    assert run.state == "success"

    stored = batch_env.messages()
    # Every valid recipient got exactly one message; nobody else got any.
    assert Counter(m["to"] for m in stored) == Counter(expected["sent"])
    by_to = {m["to"]: m for m in stored}
    assert by_to[rows[7]["to"]]["body"] == f"Hi {JINJA}, your appointment is Monday."

    summary = xcom(run, "summary")
    store_status = Counter(m["status"] for m in stored)
    assert store_status == {"delivered": 150 - 60, "undelivered": 45, "failed": 15}
    for status, count in store_status.items():
        assert summary["by_status"][status] == count
    assert summary["by_status"]["rejected"] == 2
    assert summary["rows"] == len(rows)
    assert summary["to_send"] == 152 and summary["sent"] == 150
    assert summary["delivered"] == store_status["delivered"]
    assert summary["failed"] == store_status["undelivered"] + store_status["failed"] + 2
    assert summary["by_outcome"]["invalid"] == expected["invalid"]
    assert summary["by_outcome"]["duplicate"] == expected["duplicate"]
    assert summary["by_outcome"]["opted_out"] == expected["opted_out"]
    assert summary["error_codes"] == {
        "21211": 1,
        "21610": 1,
        "30003": 15,
        "30005": 15,
        "30006": 15,
        "30008": 15,
    }
    assert summary["failures_total"] == 62
    failure = next(f for f in summary["failures"] if f["error_code"] == 30008)
    assert failure["sid"] in {m["sid"] for m in stored} and "30008" in failure["error_meaning"]

    report = json.loads(Path(summary["report_path"]).read_text())
    assert len(report) == len(rows) and [r["row"] for r in report] == list(range(1, len(rows) + 1))
    sids = {r["sid"] for r in report if r["sid"]}
    assert sids == {m["sid"] for m in stored}

    # Tracking: O(N / chunk) task instances, each message fetched once (zero step delay), state cleaned up.
    tasks = states_by_task(run)
    assert tasks["send_chunk"] == {"success": 4} and tasks["track_chunk"] == {"success": 4}
    assert sum(sum(c.values()) for c in tasks.values()) == 3 + 2 * 4
    assert batch_env.stats()["requests"]["fetch"] == 150
    assert tracking_variables() == []


def test_429_injection_loses_and_duplicates_nothing(batch_env):
    batch_env.set_faults(rate_429=0.2, retry_after=1, seed=11)
    rows = [{"to": f"+1555{i:07d}", "name": f"N{i}", "date": "today"} for i in range(50)]
    run = load_dag().test(run_conf={"recipients": rows, "from": FROM, "chunk_size": 20})
    assert run.state == "success"
    stats = batch_env.stats()
    assert stats["faults"]["429"] > 0
    assert Counter(m["to"] for m in batch_env.messages()) == Counter(r["to"] for r in rows)
    summary = xcom(run, "summary")
    assert summary["delivered"] == 50 and summary["failed"] == 0


def test_failure_rate_over_threshold_fails_the_run(batch_env):
    rows = [{"to": f"+1555{i:03d}{'3008' if i < 3 else '0001'}", "name": "x", "date": "y"} for i in range(10)]
    run = load_dag().test(run_conf={"recipients": rows, "from": FROM, "failure_threshold": 0.2})
    assert run.state == "failed"
    states = task_states(run)
    assert states[("summary", -1)] == "success"
    assert states[("check_failure_rate", -1)] == "failed"
    summary = xcom(run, "summary")
    assert (summary["failed"], summary["to_send"], summary["failure_rate"]) == (3, 10, 0.3)
    with Path(summary["report_path"]).open() as handle:
        report = list(csv.DictReader(handle))
    assert Counter(r["outcome"] for r in report) == {"delivered": 7, "failed": 3}


def test_bad_template_fails_before_anything_is_sent(batch_env):
    run = load_dag().test(run_conf={"body_template": "Hi {name.__class__}", "from": FROM})
    assert run.state == "failed"
    states = task_states(run)
    assert states[("prepare", -1)] == "failed"
    assert states[("check_failure_rate", -1)] == "upstream_failed"
    assert batch_env.messages() == []


def test_tracking_state_survives_reschedules(batch_env, monkeypatch):
    # 7777 stays "sent" for ever: its chunk is poked until the status timeout. The sensor's XComs are cleared
    # at every reschedule, so only the Variable store keeps the other messages from being fetched again.
    monkeypatch.setenv("TWILIO_BATCH_STATUS_TIMEOUT", "4")
    rows = [{"to": f"+1555{i:03d}0001", "name": "x", "date": "y"} for i in range(9)]
    rows.append({"to": "+15550107777", "name": "no receipt", "date": "y"})
    run = load_dag().test(run_conf={"recipients": rows, "from": FROM, "failure_threshold": 0.0})
    assert run.state == "success"  # unconfirmed is not a failure
    fetches = batch_env.stats()["requests"]["fetch"]
    # 9 final messages once each (from storage they are never fetched again), the stuck one at every poke:
    # at least twice within the 4 s, however slowly a loaded machine reschedules.
    assert 9 + 2 <= fetches <= 9 + 8
    summary = xcom(run, "summary")
    assert summary["delivered"] == 9 and summary["unconfirmed"] == 1
    assert summary["by_status"]["sent (delivery unconfirmed)"] == 1
    assert tracking_variables() == []


def test_all_rows_skipped_is_not_a_failure(batch_env):
    rows = [{"to": "12345", "name": "x", "date": "y"}, {"to": "+15550100001", "date": "no name"}]
    run = load_dag().test(run_conf={"recipients": rows, "from": FROM, "opt_out": []})
    assert run.state == "success"
    states = task_states(run)
    assert states[("send_chunk", -1)] == "skipped"  # mapped over zero chunks
    summary = xcom(run, "summary")
    assert (summary["to_send"], summary["skipped_total"]) == (0, 2)
    assert batch_env.messages() == []


def test_bad_credentials_fail_at_once_without_retries(batch_env, monkeypatch):

    conn = json.loads(batch_env.conn_json())
    monkeypatch.setenv("AIRFLOW_CONN_TWILIO_DEFAULT", json.dumps({**conn, "password": "wrong-token"}))
    rows = [{"to": f"+1555{i:07d}", "name": "x", "date": "y"} for i in range(3)]
    run = load_dag().test(run_conf={"recipients": rows, "from": FROM})
    assert run.state == "failed"
    states = task_states(run)
    assert states[("send_chunk", 0)] == "failed"
    assert states[("summary", -1)] == "success" and states[("check_failure_rate", -1)] == "failed"
    summary = xcom(run, "summary")
    assert summary["unknown"] == 3 and "wrong-token" not in json.dumps(summary)
    assert batch_env.messages() == []


def test_chunks_grow_to_fit_max_map_length(batch_env, monkeypatch):
    monkeypatch.setenv("AIRFLOW__CORE__MAX_MAP_LENGTH", "16")
    rows = [{"to": f"+1555066{i:04d}", "name": f"N{i}", "date": "today"} for i in range(100)]
    # chunk_size 5 would need 20 mapped tasks, over the 16 Airflow allows: chunks of 7 instead (15 tasks).
    run = load_dag().test(run_conf={"recipients": rows, "from": FROM, "chunk_size": 5})
    assert run.state == "success"
    tasks = states_by_task(run)
    assert tasks["send_chunk"] == {"success": 15} and tasks["track_chunk"] == {"success": 15}
    summary = xcom(run, "summary")
    assert (summary["chunks"], summary["chunk_size"], summary["delivered"]) == (15, 7, 100)
    assert Counter(m["to"] for m in batch_env.messages()) == Counter(r["to"] for r in rows)
    # send_chunk's XCom is counts; right after sending nothing is called "unconfirmed" (issue 14, point 4).
    sent = xcom(run, "send_chunk", map_index=0)
    assert sent["messages"] == 7 and sent["accepted"] == 7 and "unconfirmed" not in str(sent)
    assert xcom(run, "prepare") == list(range(15))  # chunk indices, not rows
    assert xcom(run, "prepare", "counts")["chunk_size"] == 7 and xcom(run, "prepare", "skipped") is None


def test_a_batch_the_sender_cannot_drain_fails_before_sending(batch_env):
    rows = [{"to": f"+1555067{i:04d}", "name": f"N{i}", "date": "today"} for i in range(400)]
    run = load_dag().test(run_conf={"recipients": rows, "from": FROM, "sender_mps": 0.01})
    assert run.state == "failed"
    states = task_states(run)
    assert states[("prepare", -1)] == "failed" and states[("check_failure_rate", -1)] == "upstream_failed"
    assert batch_env.messages() == []


def test_a_second_run_under_the_same_key_sends_nothing(batch_env):
    rows = [{"to": f"+1555068{i:04d}", "name": f"N{i}", "date": "today"} for i in range(30)]
    conf = {"recipients": rows, "from": FROM, "chunk_size": 10}
    first = load_dag().test(run_conf=conf)
    second = load_dag().test(run_conf=conf)  # same day, so the same default dedupe key
    assert (first.state, second.state) == ("success", "success")
    assert Counter(m["to"] for m in batch_env.messages()) == Counter(r["to"] for r in rows)
    summary = xcom(second, "summary")
    assert (summary["to_send"], summary["already_sent"], summary["skipped_total"]) == (0, 30, 30)
    sids = {m["to"]: m["sid"] for m in batch_env.messages()}
    with Path(summary["report_path"]).open(newline="") as handle:
        report = list(csv.DictReader(handle))
    assert all(r["outcome"] == "already_sent" and r["sid"] == sids[r["to"]] for r in report)
    assert summary["skipped"][0]["sid"] == sids[rows[0]["to"]]
    # A new key sends again.
    third = load_dag().test(run_conf={**conf, "dedupe_key": "second-campaign"})
    assert third.state == "success" and len(batch_env.messages()) == 60


def test_chunks_in_flight_are_tracked_from_the_message_list(batch_env):
    # 1,203 recipients, no chunk_size: 3 chunks of 401, whose statuses come from list pages, not fetches.
    rows = [{"to": f"+1555077{i:04d}", "name": f"N{i}", "date": "today"} for i in range(1200)]
    rows += [{"to": f"+155507{i}3003", "name": "U", "date": "today"} for i in range(3)]  # end undelivered
    run = load_dag().test(run_conf={"recipients": rows, "from": FROM})
    assert run.state == "success"
    summary = xcom(run, "summary")
    assert (summary["chunks"], summary["chunk_size"]) == (3, 401)
    assert (summary["delivered"], summary["failed"], summary["error_codes"]) == (1200, 3, {"30003": 3})
    requests = batch_env.stats()["requests"]
    # A page per chunk, one more where a window's sent-margin (5 s) reaches into the next chunk's messages.
    assert (requests["create"], requests["fetch"]) == (1203, 0) and 3 <= requests["list"] <= 6

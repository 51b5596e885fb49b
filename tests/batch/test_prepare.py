"""Pure batch logic without Airflow: templates, recipients, dedupe, opt-out, chunking, summary."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.batch.inmemory import build_records, chunked, load_rows, prepare_batch
from tests.batch.inmemory import summarise_records as summarise
from twilio_messaging.batch.plan import Sender
from twilio_messaging.batch.recipients import (
    RecipientsError,
    load_opt_out,
    normalise_number,
    resolve_path,
    rows_from_list,
)
from twilio_messaging.batch.records import message_record
from twilio_messaging.batch.report import ReportWriter
from twilio_messaging.batch.templating import BodyTemplate, MissingField, TemplateError
from twilio_messaging.contract import ALREADY_SENT, DUPLICATE, INVALID, OPTED_OUT
from twilio_messaging.settings import batch_data_dirs as allowed_data_dirs
from twilio_messaging.validation import InvalidInput

REPO = Path(__file__).resolve().parents[2]
SENDER = Sender(from_="+15005550006")
JINJA = "{{ conn.twilio_default.password }}"


# --- templating -------------------------------------------------------------------------------------


def test_template_fills_fields_and_keeps_values_literal():
    template = BodyTemplate.parse("Hi {name}, see you {date}. {{literal}}")
    assert template.fields == {"name", "date"}
    body = template.render({"name": JINJA, "date": "{date}"})
    assert body == f"Hi {JINJA}, see you {{date}}. {{literal}}"


def test_template_value_with_format_syntax_is_not_reinterpreted():
    body = BodyTemplate.parse("{a}").render({"a": "{0.__class__} %s ${b}"})
    assert body == "{0.__class__} %s ${b}"


@pytest.mark.parametrize(
    "source",
    ["", "   ", "Hi {", "Hi }", "{0}", "{}", "{name.__class__}", "{name[0]}", "{name!r}", "{name:>99999}"],
)
def test_bad_templates_name_the_param(source):
    with pytest.raises(TemplateError) as info:
        BodyTemplate.parse(source)
    assert info.value.field == "body_template"
    assert "body_template" in str(info.value)


@pytest.mark.parametrize("row", [{}, {"name": None}, {"name": ""}, {"name": "  "}])
def test_missing_or_empty_field_is_reported(row):
    with pytest.raises(MissingField) as info:
        BodyTemplate.parse("Hi {name}").render(row)
    assert "name" in str(info.value)


def test_non_string_values_are_text():
    assert BodyTemplate.parse("{n} {f} {b}").render({"n": 3, "f": 1.5, "b": True}) == "3 1.5 True"


# --- recipients -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+1 (555) 010-0001", "+15550100001"),
        ("0044 20 7946 0000", "+442079460000"),
        (" +1.555.010.0001 ", "+15550100001"),
        ("WhatsApp: +1 555 010 0001", "whatsapp:+15550100001"),
        (15550100001, "15550100001"),
        (None, ""),
    ],
)
def test_normalise_number(raw, expected):
    assert normalise_number(raw) == expected


def test_load_csv_and_json(tmp_path):
    csv_path = tmp_path / "r.csv"
    csv_path.write_text("\ufeffto, name \n+15550100001,Ada\n+15550100002,Grace,extra\n", encoding="utf-8")
    assert load_rows(csv_path) == [
        {"to": "+15550100001", "name": "Ada"},
        {"to": "+15550100002", "name": "Grace"},
    ]
    json_path = tmp_path / "r.json"
    json_path.write_text(json.dumps({"recipients": [{"to": "+15550100001", "x": 1}]}))
    assert load_rows(json_path) == [{"to": "+15550100001", "x": 1}]


@pytest.mark.parametrize(
    ("name", "content", "rule"),
    [
        ("missing.csv", None, "no such file"),
        ("r.txt", "to\n", "must end in .csv, .json or .jsonl"),
        ("r.csv", "phone,name\n1,2\n", "no 'to' column"),
        ("r.json", "{not json", "not valid UTF-8 JSON"),
        ("r.json", '["+1555"]', "must be an object"),
        ("r.json", '{"a": 1}', "must be a list"),
    ],
)
def test_bad_recipient_files_name_the_param(tmp_path, name, content, rule):
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(RecipientsError) as info:
        load_rows(path)
    assert info.value.field == "recipients_path"
    assert rule in str(info.value)


def test_rows_from_list_rejects_non_objects():
    with pytest.raises(RecipientsError, match="recipients"):
        rows_from_list([{"to": "+15550100001"}, "+15550100002"])


def test_opt_out_file_formats(tmp_path):
    txt = tmp_path / "stop.txt"
    txt.write_text("# STOP list\nnumber\n+1 555 010 0001  # replied STOP\n+15550100002,2024-01-01\n\n")
    js = tmp_path / "stop.json"
    js.write_text('["+15550100003"]')
    numbers = load_opt_out(txt, ["+1-555-010-0004"]) | load_opt_out(js)
    assert {"+15550100001", "+15550100002", "+15550100003", "+15550100004"} <= numbers
    assert "number" not in numbers
    with pytest.raises(RecipientsError, match="opt_out_path"):
        load_opt_out(tmp_path / "absent.txt")


def test_resolve_path_prefers_existing_base(tmp_path):
    (tmp_path / "b" / "include").mkdir(parents=True)
    (tmp_path / "b" / "include" / "x.csv").write_text("to\n")
    found = resolve_path("include/x.csv", [tmp_path / "a", tmp_path / "b"])
    assert found == tmp_path / "b" / "include" / "x.csv"
    assert resolve_path(str(tmp_path / "abs.csv"), [tmp_path / "a"]) == tmp_path / "abs.csv"


# --- prepare ----------------------------------------------------------------------------------------


def test_prepare_validates_dedupes_opts_out_and_chunks():
    rows = [
        {"to": "+1 555 010 0001", "name": "Ada"},  # 1 sent
        {"to": "+15550100001", "name": "Ada again"},  # 2 duplicate of 1
        {"to": "12345", "name": "x"},  # 3 invalid number
        {"to": "+15550100003"},  # 4 missing field
        {"to": "+15550100004", "name": JINJA},  # 5 sent, literally
        {"to": "+15550100009", "name": "Stop"},  # 6 opted out
        {"to": "+15550100009", "name": "Stop"},  # 7 opted out, not "duplicate"
        {"name": "no number"},  # 8 invalid
        {"to": "+15550100005", "name": "x" * 1600},  # 9 body too long
        {"to": "whatsapp:+15550100006", "name": "W"},  # 10 sent
        {"to": "+15550100007", "name": "Z"},  # 11 sent
    ]
    prepared = prepare_batch(rows, "Hi {name}", SENDER, load_opt_out(None, ["+15550100009"]), chunk_size=2)
    sent = [row for chunk in prepared.chunks for row in chunk["rows"]]
    assert sent == [
        {"row": 1, "to": "+15550100001", "body": "Hi Ada"},
        {"row": 5, "to": "+15550100004", "body": f"Hi {JINJA}"},
        {"row": 10, "to": "whatsapp:+15550100006", "body": "Hi W"},
        {"row": 11, "to": "+15550100007", "body": "Hi Z"},
    ]
    assert [len(chunk["rows"]) for chunk in prepared.chunks] == [2, 2]
    assert [chunk["chunk"] for chunk in prepared.chunks] == [0, 1]
    outcome = {row["row"]: row["outcome"] for row in prepared.skipped}
    assert outcome == {
        2: DUPLICATE,
        3: INVALID,
        4: INVALID,
        6: OPTED_OUT,
        7: OPTED_OUT,
        8: INVALID,
        9: INVALID,
    }
    reasons = {row["row"]: row["reason"] for row in prepared.skipped}
    assert "row 1" in reasons[2]
    assert "'to'" in reasons[3] and "E.164" in reasons[3]
    assert "field 'name'" in reasons[4]
    assert "'body'" in reasons[9] and "1600" in reasons[9]
    assert prepared.counts() == {
        "rows": 11, "to_send": 4, "chunks": 2, INVALID: 4, OPTED_OUT: 2, DUPLICATE: 1, ALREADY_SENT: 0,
    }  # fmt: skip


def test_invalid_first_row_does_not_block_a_valid_duplicate():
    rows = [{"to": "+15550100001"}, {"to": "+15550100001", "name": "ok"}]
    prepared = prepare_batch(rows, "Hi {name}", SENDER)
    assert prepared.chunks[0]["rows"] == [{"row": 2, "to": "+15550100001", "body": "Hi ok"}]


def test_opting_out_a_number_covers_its_channel_addresses():
    prepared = prepare_batch(
        [{"to": "whatsapp:+15550100009"}], "Hi", SENDER, load_opt_out(None, ["+15550100009"])
    )
    assert prepared.chunks == [] and prepared.skipped[0]["outcome"] == OPTED_OUT


@pytest.mark.parametrize(
    ("sender", "field"),
    [
        (Sender(), "from/messagingServiceSid"),
        (Sender(from_="not a number!"), "from"),
        (Sender(from_="+15005550006", status_callback="ftp://x"), "statusCallback"),
        (Sender(messaging_service_sid="MGnope"), "messagingServiceSid"),
    ],
)
def test_a_bad_sender_stops_the_whole_batch(sender, field):
    with pytest.raises(InvalidInput) as info:
        prepare_batch([{"to": "+15550100001"}], "Hi", sender)
    assert info.value.field == field


def test_chunk_size_must_be_positive():
    with pytest.raises(InvalidInput, match="chunk_size"):
        list(chunked([1], 0))
    assert list(chunked(list(range(5)), 2)) == [[0, 1], [2, 3], [4]]


# --- report -----------------------------------------------------------------------------------------


def test_records_summary_and_report(tmp_path):
    messages = [
        message_record(1, "+15550100001", "SM1", "delivered"),
        message_record(2, "+15550103003", "SM2", "undelivered", 30003, "Unreachable"),
        message_record(3, "+15550100002", "SM3", "sent"),
        message_record(5, "+15005550001", None, None, 21211, "The 'To' number is not valid"),
    ]
    skipped = [{"row": 4, "to": "x", "outcome": INVALID, "reason": "bad"}]
    records = build_records(messages, skipped)
    assert [r["row"] for r in records] == [1, 2, 3, 4, 5]
    summary = summarise(records, "/r.csv")
    assert summary["to_send"] == 4 and summary["sent"] == 3
    assert summary["delivered"] == 1 and summary["failed"] == 2 and summary["unconfirmed"] == 1
    assert summary["failure_rate"] == 0.5
    assert summary["by_status"] == {
        "delivered": 1,
        "undelivered": 1,
        "sent (delivery unconfirmed)": 1,
        "rejected": 1,
    }
    assert summary["error_codes"] == {"30003": 1, "21211": 1}
    meanings = {f["error_code"]: f["error_meaning"] for f in summary["failures"]}
    assert "Unreachable destination handset" in meanings[30003] and "errors/30003" in meanings[30003]
    assert "Invalid 'To'" in meanings[21211]
    assert summary["skipped"] == [{"row": 4, "to": "x", "outcome": INVALID, "reason": "bad"}]

    path = write_report(records, tmp_path / "d" / "r.csv", "csv")
    lines = list(csv.DictReader(path.open(newline="")))
    assert [line["outcome"] for line in lines] == [
        "delivered",
        "failed",
        "unconfirmed",
        "invalid",
        "rejected",
    ]
    data = json.loads(write_report(records, tmp_path / "r.json", "json").read_text())
    assert data[1]["error_code"] == 30003 and data[3]["reason"] == "bad"
    with pytest.raises(ValueError, match="format"):
        write_report(records, tmp_path / "r.xml", "xml")


def write_report(records, path: Path, fmt: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = ReportWriter(handle, fmt)
        for record in records:
            writer.add(record)
        writer.close()
    return path


@given(st.text().filter(str.strip), st.text().filter(str.strip))
def test_any_value_is_inserted_verbatim(first, second):
    # Whatever a value holds (braces, Jinja, format specs), it lands in the body unchanged.
    assert BodyTemplate.parse("A{x}B{y}C").render({"x": first, "y": second}) == f"A{first}B{second}C"


def test_the_json_sample_prepares():
    rows = load_rows(REPO / "include" / "recipients_sample.json")
    prepared = prepare_batch(
        rows, "Hi {name}, {date}", SENDER, load_opt_out(REPO / "include" / "opt_out_sample.txt")
    )
    assert [row["to"] for row in prepared.chunks[0]["rows"]] == [
        "+15550100001",
        "+15550100002",
        "whatsapp:+15550100003",
    ]


@pytest.mark.parametrize("path", ["/etc/passwd.csv", "../../../../etc/hosts.csv", "include/../pyproject.csv"])
def test_files_outside_the_data_folders_are_refused(tmp_path, monkeypatch, path):
    monkeypatch.delenv("TWILIO_BATCH_DATA_DIRS", raising=False)
    (tmp_path / "include").mkdir()
    allowed = allowed_data_dirs(tmp_path)
    assert allowed == [(tmp_path / "include").resolve()]
    with pytest.raises(RecipientsError) as info:
        resolve_path(path, [tmp_path], allowed, "opt_out_path")
    assert info.value.field == "opt_out_path"
    assert "must be a file inside" in str(info.value) and "TWILIO_BATCH_DATA_DIRS" in str(info.value)


def test_data_folders_come_from_the_environment(tmp_path, monkeypatch):
    (tmp_path / "include").mkdir()
    (tmp_path / "include" / "ok.csv").write_text("to\n")
    other = tmp_path / "exports"
    other.mkdir()
    assert (
        resolve_path("include/ok.csv", [tmp_path], allowed_data_dirs(tmp_path)) == tmp_path / "include/ok.csv"
    )
    monkeypatch.setenv("TWILIO_BATCH_DATA_DIRS", str(other))
    assert resolve_path(str(other / "r.csv"), [tmp_path], allowed_data_dirs(tmp_path)) == other / "r.csv"
    with pytest.raises(RecipientsError):
        resolve_path("include/ok.csv", [tmp_path], allowed_data_dirs(tmp_path))

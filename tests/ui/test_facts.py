"""The workflow tab's view model: banner, timeline, inputs, path, from the records of a run."""

from __future__ import annotations

from tests.ui.fixtures import (
    DELIVERED_TIS,
    NOTHING_SENT_TIS,
    SID,
    TIMELINE,
    UNDELIVERED_TIS,
    nothing_sent_xcoms,
    undelivered_xcoms,
)
from twilio_messaging.statuses import UNCONFIRMED_REASON, unconfirmed
from twilio_messaging.ui import facts
from twilio_messaging.ui.masking import mask_number, mask_sid, mask_text, safe_url
from twilio_messaging.ui.task_errors import TaskFailure, error_sentence

CONF = {"to": "+15551233003", "from": "+15005550006", "body": "hello"}


def test_masking():
    assert mask_number("+15551233003") == "+15•••••3003"
    assert mask_number("whatsapp:+15551233003") == "whatsapp:+15•••••3003"
    assert mask_number("+1234") == "•••••"
    assert mask_text("The 'To' number +15005550001 is bad") == "The 'To' number +15•••••0001 is bad"
    assert mask_sid("AC" + "0" * 28 + "cdef") == "AC…cdef"
    assert safe_url("https://user:secret@example.com:8443/cb?token=x") == "https://example.com:8443/cb?…"


def test_undelivered_banner_has_status_code_meaning_and_docs():
    view = facts.workflow_view("d", "r", "failed", CONF, UNDELIVERED_TIS, undelivered_xcoms())
    assert view.banner.kind == "failed"
    assert view.banner.headline == (
        "Not delivered to +15•••••3003: status undelivered, error 30003: "
        "Unreachable destination handset (often temporary: phone off or out of coverage)"
    )
    assert view.banner.error is not None
    assert view.banner.error.docs_url == "https://www.twilio.com/docs/errors/30003"
    assert view.message_sid == SID and view.final_status == "undelivered"


def test_timeline_from_the_end_task_xcom_else_checkstatus_else_storage_else_derived():
    on_end = facts.workflow_view("d", "r", "failed", CONF, UNDELIVERED_TIS, undelivered_xcoms("failed"))
    assert [row.status for row in on_end.timeline] == ["queued", "sent", "undelivered"]
    assert on_end.timeline[-1].error is not None and on_end.timeline[-1].error.code == 30003
    on_sensor = facts.workflow_view(
        "d", "r", "failed", CONF, UNDELIVERED_TIS, undelivered_xcoms("checkStatus")
    )
    assert len(on_sensor.timeline) == 3
    polling = facts.workflow_view("d", "r", "running", CONF, {}, undelivered_xcoms(None), TIMELINE[:2])
    assert [row.status for row in polling.timeline] == ["queued", "sent"]
    assert "still polling" in polling.timeline_source
    derived = facts.workflow_view("d", "r", "failed", CONF, UNDELIVERED_TIS, undelivered_xcoms(None))
    assert [(row.at, row.status) for row in derived.timeline] == [
        ("2026-12-02T01:00:01+00:00", "queued"),
        ("2026-12-02T01:00:09+00:00", "undelivered"),
    ]


def test_nothing_sent_says_the_twilio_error_once_with_the_number_masked():
    view = facts.workflow_view(
        "d", "r", "failed", {**CONF, "to": "+15005550001"}, NOTHING_SENT_TIS, nothing_sent_xcoms()
    )
    assert view.banner.kind == "nothing_sent"
    assert view.banner.headline == "Nothing was sent: Twilio error 21211, Invalid 'To' phone number"
    assert view.banner.detail == "The 'To' number +15•••••0001 is not a valid phone number."
    assert view.message_sid is None
    assert "+15005550001" not in repr(view)


def test_delivered_and_path_taken():
    xcoms = undelivered_xcoms()
    xcoms[("routeByStatus", "outcome")] = {
        "end": "delivered",
        "messageSid": SID,
        "finalStatus": "delivered",
        "errorCode": None,
    }
    view = facts.workflow_view("d", "r", "success", CONF, DELIVERED_TIS, xcoms)
    assert view.banner.kind == "delivered"
    assert view.banner.headline == "Delivered to +15•••••3003: status delivered"
    assert [(s.task_id, s.state, s.taken) for s in view.path] == [
        ("sendMessage", "success", True),
        ("checkStatus", "success", True),
        ("routeByStatus", "success", True),
        ("delivered", "success", True),
        ("failed", "skipped", False),
    ]


def test_running_run_says_where_it_is():
    tis = {
        "sendMessage": {"state": "success"},
        "checkStatus": {"state": "up_for_reschedule"},
        "routeByStatus": {"state": "none"},
        "delivered": {"state": "none"},
    }
    xcoms = {("sendMessage", "messageSid"): SID, ("sendMessage", "initialStatus"): "queued"}
    view = facts.workflow_view("d", "r", "running", CONF, tis, xcoms)
    assert view.banner.kind == "running"
    assert view.banner.headline == "In progress: last status queued (checkStatus up_for_reschedule)"


def test_inputs_show_only_workflow_inputs_masked():
    conf = {
        **CONF,
        "statusCallback": "https://u:p@hooks.example.com/cb?sig=1",
        "accountSid": "AC" + "1" * 32,
        "password": "never shown",
    }
    shown = dict(facts.inputs(conf))
    assert shown == {
        "To": "+15•••••3003",
        "From": "+15005550006",
        "Body": "hello",
        "Status callback": "https://hooks.example.com/cb?…",
        "Account": "AC…1111",
    }
    assert dict(facts.inputs({"to": "+15551230001", "body": "x"}))["From"] == "(the DAG's default sender)"


def test_unconfirmed_says_the_message_may_still_arrive():
    xcoms = undelivered_xcoms()
    xcoms[("routeByStatus", "outcome")] = {
        "end": "failed",
        "messageSid": SID,
        "finalStatus": unconfirmed("sent"),
        "errorCode": None,
        "errorMessage": None,
        "reason": UNCONFIRMED_REASON,
    }
    view = facts.workflow_view("d", "r", "failed", CONF, UNDELIVERED_TIS, xcoms)
    assert view.banner.kind == "unconfirmed"
    assert view.banner.headline == (
        "Delivery to +15•••••3003 unconfirmed: no final status before the status timeout "
        "(last status sent); the message may still arrive"
    )
    assert view.banner.detail == UNCONFIRMED_REASON and "Not delivered" not in view.banner.headline


def test_a_status_seen_again_on_a_retry_is_one_row():
    retried = [
        *TIMELINE[:2],
        {"at": "2026-12-02T01:00:06+00:00", "status": "delivered", "errorCode": None},
        {"at": "2026-12-02T01:00:20+00:00", "status": "delivered", "errorCode": None},  # try 2's first poke
    ]
    rows = facts.timeline_rows(retried)
    assert [(row.status, row.at[-14:-6]) for row in rows] == [
        ("queued", "01:00:02"),
        ("sent", "01:00:04"),
        ("delivered", "01:00:06"),
    ]


def test_a_run_without_an_outcome_shows_the_failed_tasks_own_error():
    failure = TaskFailure("sendMessage", 2, -1, "to: '12' is not an E.164 number", "ValueError", "dags/d/…")
    tis = {"sendMessage": {"state": "failed"}, "checkStatus": {"state": "upstream_failed"}}
    view = facts.workflow_view("d", "r", "failed", CONF, tis, {}, failure=failure)
    assert view.banner.kind == "failed"
    assert view.banner.headline == "The run ended failed: task sendMessage failed (try 2)"
    assert view.banner.detail == "to: '12' is not an E.164 number" and view.banner.failure == failure
    without = facts.workflow_view("d", "r", "failed", CONF, tis, {})
    assert without.banner.kind == "unknown"


def log_lines(*events: dict) -> list[dict]:
    return [{"timestamp": "2026-12-02T01:00:00Z", "level": "info", "event": "start"}, *events]


def test_the_error_sentence_is_the_raised_exceptions_value_masked():
    raised = {
        "level": "error",
        "event": "Task failed with exception",
        "error_detail": [
            {
                "exc_type": "ValueError",
                "exc_value": "recipients_path must be a file inside /x/include",
                "frames": [],
            },
            {"exc_type": "FileNotFoundError", "exc_value": "cause", "is_cause": True, "frames": []},
        ],
    }
    assert error_sentence(log_lines(raised)) == (
        "recipients_path must be a file inside /x/include",
        "ValueError",
    )
    logged = {"level": "error", "event": "Twilio refused +15551234567: 21211"}
    assert error_sentence(log_lines(logged)) == ("Twilio refused +15•••••4567: 21211", "")
    assert error_sentence(log_lines()) == ("", "")
    long = {**raised, "error_detail": [{"exc_type": "E", "exc_value": "x" * 5000}]}
    assert len(error_sentence(log_lines(long))[0]) == 600

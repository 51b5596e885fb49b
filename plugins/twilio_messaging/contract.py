"""The contract between this project's DAGs and the Messages tab: the one home of every name both sides use.

The DAG files and their task functions write under these names; ``twilio_messaging.ui`` reads them. What the
provider's operator and sensor publish is theirs (``outputs``): it is named here, not
redefined.
"""

from __future__ import annotations

from twilio_messaging.outputs import SEND_ERROR_XCOM, SEND_OUTPUTS, TIMELINE_FILE, TIMELINE_XCOM

# ---- the send-and-track workflow (dags/twilio_send_message_track_status.py) ------------------------------

WORKFLOW_DAG_ID = "twilio_send_message_track_status"
SEND_TASK = "sendMessage"
CHECK_TASK = "checkStatus"
BRANCH_TASK = "routeByStatus"
DELIVERED_TASK = "delivered"
FAILED_TASK = "failed"
WORKFLOW_TASKS = (SEND_TASK, CHECK_TASK, BRANCH_TASK, DELIVERED_TASK, FAILED_TASK)
END_TASKS = (DELIVERED_TASK, FAILED_TASK)

RETURN_VALUE = "return_value"  # Airflow's key of a task's return value (checkStatus' status report)
OUTCOME_XCOM = "outcome"  # routeByStatus: the end task, the workflow outputs and the reason
# What both end tasks publish: the Arazzo workflow outputs plus the error code (and the timeline).
WORKFLOW_OUTPUTS = ("messageSid", "finalStatus", "errorCode")

# (task_id, key) of every XCom the Messages tab reads for a workflow run.
WORKFLOW_XCOMS: tuple[tuple[str, str], ...] = (
    *((SEND_TASK, key) for key in SEND_OUTPUTS),
    (SEND_TASK, SEND_ERROR_XCOM),
    (CHECK_TASK, RETURN_VALUE),
    (CHECK_TASK, TIMELINE_XCOM),
    (BRANCH_TASK, OUTCOME_XCOM),
    *((task, key) for task in END_TASKS for key in (*WORKFLOW_OUTPUTS, TIMELINE_XCOM)),
)

# ---- the batch (dags/twilio_batch_notifications.py) ----------------------------------------------------

BATCH_DAG_ID = "twilio_batch_notifications"
PREPARE_TASK = "prepare"
SEND_CHUNK_TASK = "send_chunk"
TRACK_CHUNK_TASK = "track_chunk"
SUMMARY_TASK = "summary"
CHECK_FAILURE_RATE_TASK = "check_failure_rate"

# Outcomes, one per input row of a batch (batch/report.py says what each means).
DELIVERED = "delivered"
FAILED = "failed"
UNCONFIRMED = "unconfirmed"
REJECTED = "rejected"
UNKNOWN = "unknown"
SENT_OUTCOMES = (DELIVERED, FAILED, UNCONFIRMED, REJECTED, UNKNOWN)
FAILED_OUTCOMES = (FAILED, REJECTED, UNKNOWN)
INVALID = "invalid"
OPTED_OUT = "opted_out"
DUPLICATE = "duplicate"
ALREADY_SENT = "already_sent"
SKIP_OUTCOMES = (INVALID, OPTED_OUT, DUPLICATE, ALREADY_SENT)

# The per-recipient report: its columns, in order, and its formats.
REPORT_COLUMNS = ("row", "to", "outcome", "status", "sid", "error_code", "error_meaning", "reason")
REPORT_FORMATS = ("csv", "json")

# ---- files in a run's storage folder (twilio_messaging.storage.run_path) --------------------------------

SUMMARY_FILE = "summary.json"  # the batch summary (also the summary task's XCom)


def report_file(fmt: str) -> str:
    """``report.csv`` or ``report.json``."""
    return f"report.{fmt}"


__all__ = [
    "ALREADY_SENT",
    "BATCH_DAG_ID",
    "BRANCH_TASK",
    "CHECK_FAILURE_RATE_TASK",
    "CHECK_TASK",
    "DELIVERED",
    "DELIVERED_TASK",
    "DUPLICATE",
    "END_TASKS",
    "FAILED",
    "FAILED_OUTCOMES",
    "FAILED_TASK",
    "INVALID",
    "OPTED_OUT",
    "OUTCOME_XCOM",
    "PREPARE_TASK",
    "REJECTED",
    "REPORT_COLUMNS",
    "REPORT_FORMATS",
    "RETURN_VALUE",
    "SEND_CHUNK_TASK",
    "SEND_ERROR_XCOM",
    "SEND_OUTPUTS",
    "SEND_TASK",
    "SENT_OUTCOMES",
    "SKIP_OUTCOMES",
    "SUMMARY_FILE",
    "SUMMARY_TASK",
    "TIMELINE_FILE",
    "TIMELINE_XCOM",
    "TRACK_CHUNK_TASK",
    "UNCONFIRMED",
    "UNKNOWN",
    "WORKFLOW_DAG_ID",
    "WORKFLOW_OUTPUTS",
    "WORKFLOW_TASKS",
    "WORKFLOW_XCOMS",
]

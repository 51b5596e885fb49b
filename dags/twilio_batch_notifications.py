"""Scheduled batch notifications: one SMS per valid recipient, each tracked to its final status.

prepare >> send_chunk[i] >> track_chunk[i] >> summary >> check_failure_rate
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

from airflow.sdk import DAG, Param, PokeReturnValue, TriggerRule, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException

from twilio_messaging.batch import tasks
from twilio_messaging.batch.report import REPORT_DIR_ENV, REPORT_FORMATS
from twilio_messaging.batch.settings import BatchSettings
from twilio_messaging.validation import PARAM_SCHEMAS

# Read when the file is parsed; see twilio_messaging/batch/settings.py for every variable.
SETTINGS = BatchSettings.from_env()
# Relative paths in params: first from the project root (where include/ lives), then from dags/.
BASE_DIRS = (Path(__file__).resolve().parent.parent, Path(__file__).resolve().parent)
DEFAULT_TEMPLATE = "Hi {name}, this is a reminder of your appointment on {date}. Reply STOP to opt out."
DEFAULT_CHUNK_SIZE = 500
DEFAULT_FAILURE_THRESHOLD = 0.1

DOC_MD = f"""
# Twilio batch notifications

Sends one SMS to every valid recipient of a list and follows each message to its final status.

    prepare >> send_chunk[i] >> track_chunk[i] >> summary >> check_failure_rate

- **prepare** loads the recipients (`recipients` list in the conf, else the `recipients_path` CSV/JSON file
  with a `to` column), validates every row, removes duplicate numbers and opted-out numbers, renders
  `body_template` (`{{field}}` placeholders; row values are inserted as plain text, never evaluated) and
  cuts the batch into chunks of `chunk_size`. Bad rows are reported, not sent; a bad template or sender
  fails the run before anything is sent.
- **send_chunk** (one task per chunk, pool `{SETTINGS.pool}`, {SETTINGS.concurrency} slots each) sends its
  chunk with up to `concurrency` requests in flight. A 429 halves the concurrency and waits; nothing is
  dropped and nothing is sent twice (a retry looks a message up before sending it again).
- **track_chunk** (reschedule-mode sensor, every {SETTINGS.poke_interval:g} s, first fetch
  {SETTINGS.first_fetch_after:g} s after sending) fetches the statuses of the chunk's unfinished messages
  concurrently, until all are final or {SETTINGS.status_timeout:g} s have passed (then: unconfirmed).
  Final statuses are kept between pokes in a Variable `twilio_batch_track:<dag>:<run>:<chunk>` (deleted when
  the chunk is done), so a final message is never fetched again.
- **summary** publishes counts by final status, failures with error codes and meanings, the skipped rows,
  and writes the per-recipient report (CSV or JSON) under `${REPORT_DIR_ENV}` (default
  `$AIRFLOW_HOME/reports/twilio_batch/<dag_id>/<run_id>.<format>`); its path is in the summary XCom.
- **check_failure_rate** fails the run when (failed + rejected + unknown) / messages to send is over
  `failure_threshold`, or when a chunk's send task failed.

Needs the pool: `airflow pools set {SETTINGS.pool} 50 "Twilio API concurrency"`.
"""


@contextmanager
def final_errors() -> Iterator[None]:
    """Fail at once, without retries, on errors a retry cannot fix (bad input, credentials, account)."""
    try:
        yield
    except Exception as exc:
        if tasks.is_final_error(exc):
            raise AirflowFailException(str(exc)) from None
        raise


with DAG(
    dag_id="twilio_batch_notifications",
    schedule=SETTINGS.schedule,
    start_date=datetime(2024, 1, 1),
    catchup=False,
    max_active_runs=1,
    doc_md=DOC_MD,
    tags=["twilio", "sms", "batch"],
    default_args={"owner": "messaging"},
    params={
        "recipients_path": Param(
            "include/recipients_sample.csv",
            type=["null", "string"],
            title="Recipients file",
            description=(
                "CSV with a 'to' column or JSON list of objects, relative to the project root; "
                "it must lie in include/ (or a folder in $TWILIO_BATCH_DATA_DIRS)."
            ),
        ),
        "recipients": Param(
            None,
            type=["null", "array"],
            items={"type": "object"},
            title="Recipients (list)",
            description='Instead of the file: [{"to": "+15551234567", "name": "Ada", ...}, ...].',
        ),
        "body_template": Param(
            DEFAULT_TEMPLATE,
            type="string",
            minLength=1,
            maxLength=1600,
            title="Body template",
            description="Message text with {field} placeholders filled from each row; {{ and }} for braces.",
        ),
        "from": Param(
            None,
            **{
                **PARAM_SCHEMAS["from"],
                "description": (
                    f"Sender number, short code or sender ID. Empty with no Messaging Service: "
                    f"$TWILIO_BATCH_FROM ({SETTINGS.default_from})."
                ),
            },
        ),
        "messagingServiceSid": Param(None, **PARAM_SCHEMAS["messagingServiceSid"]),
        "accountSid": Param(None, **PARAM_SCHEMAS["accountSid"]),
        "statusCallback": Param(None, **PARAM_SCHEMAS["statusCallback"]),
        "opt_out_path": Param(
            "include/opt_out_sample.txt",
            type=["null", "string"],
            title="Opt-out file",
            description="Numbers never to message: one per line (or first CSV cell), or a JSON list.",
        ),
        "opt_out": Param(
            [],
            type="array",
            items={"type": "string"},
            title="Opt-out numbers",
            description="More opted-out numbers.",
        ),
        "chunk_size": Param(
            DEFAULT_CHUNK_SIZE,
            type="integer",
            minimum=1,
            maximum=5000,
            title="Chunk size",
            description=f"Recipients per send/track task (default {DEFAULT_CHUNK_SIZE}).",
        ),
        "concurrency": Param(
            SETTINGS.concurrency,
            type="integer",
            minimum=1,
            maximum=SETTINGS.concurrency,
            title="Concurrency per chunk",
            description=(
                f"Twilio requests in flight per chunk task (default and maximum {SETTINGS.concurrency}: the "
                f"pool slots each task holds, env TWILIO_BATCH_CONCURRENCY)."
            ),
        ),
        "failure_threshold": Param(
            DEFAULT_FAILURE_THRESHOLD,
            type="number",
            minimum=0,
            maximum=1,
            title="Failure threshold",
            description="The run fails when the share of failed messages is above this (0.1 = 10%).",
        ),
        "report_format": Param("csv", enum=list(REPORT_FORMATS), title="Report format"),
    },
) as dag:

    @task
    def prepare() -> list[dict]:
        """Validate, dedupe, opt-out, render and chunk; returns the chunks (skipped rows: XCom 'skipped')."""
        context = get_current_context()
        with final_errors():
            prepared = tasks.prepare(context["params"], SETTINGS, BASE_DIRS)
        ti = context["ti"]
        # Separate keys: the chunks are mapped over, each chunk task pulls only its own item.
        ti.xcom_push(key="counts", value=prepared["counts"])
        ti.xcom_push(key="skipped", value=prepared["skipped"])
        ti.xcom_push(key="prepared_at", value=prepared["prepared_at"])
        return prepared["chunks"]

    @task(
        pool=SETTINGS.pool,
        pool_slots=SETTINGS.concurrency,
        retries=2,  # only after Twilio stayed unreachable; the retry looks messages up before sending
        retry_delay=timedelta(minutes=1),
        map_index_template="chunk {{ task.op_kwargs['chunk']['chunk'] }}",
    )
    def send_chunk(chunk: dict, prepared_at: str) -> dict:
        """Send one chunk concurrently (bounded, 429-aware, duplicate-safe)."""
        context = get_current_context()
        with final_errors():
            return tasks.send_chunk(
                chunk,
                context["params"],
                SETTINGS,
                prepared_at=prepared_at,
                try_number=context["ti"].try_number,
            )

    @task.sensor(
        mode="reschedule",
        poke_interval=SETTINGS.poke_interval,
        # The poke itself ends tracking at the status timeout; this is only a safety net.
        timeout=SETTINGS.status_timeout + 5 * SETTINGS.poke_interval + 600,
        retries=3,  # apache/airflow#71172: reschedule sensors fail at random without retries
        retry_delay=timedelta(seconds=5),
        pool=SETTINGS.pool,
        pool_slots=SETTINGS.concurrency,
        map_index_template="chunk {{ task.op_kwargs['sent']['chunk'] }}",
    )
    def track_chunk(sent: dict) -> PokeReturnValue:
        """Fetch the statuses of the chunk's unfinished messages; done when all are final."""
        context = get_current_context()
        store = tasks.VariableStore(context["dag"].dag_id, context["run_id"], sent["chunk"])
        with final_errors():
            done, value = tasks.track_poke(sent, context["params"], SETTINGS, store)
        return PokeReturnValue(is_done=done, xcom_value=value)

    @task(trigger_rule=TriggerRule.ALL_DONE)
    def summary(chunks: list | None, sent: list, tracked: list) -> dict:
        """Counts by final status, failures with meanings, skipped rows; writes the per-recipient report."""
        context = get_current_context()
        ti, dag_id, run_id = context["ti"], context["dag"].dag_id, context["run_id"]
        if chunks is None:
            raise AirflowFailException("prepare did not finish, so nothing was sent; see its log")
        records = tasks.collect_records(
            chunks,
            ti.xcom_pull(task_ids="prepare", key="skipped") or [],
            list(sent or []),
            list(tracked or []),
            store_for=lambda chunk: tasks.VariableStore(dag_id, run_id, chunk),
        )
        return tasks.summarise(records, context["params"], dag_id, run_id)

    @task
    def check_failure_rate(result: dict) -> None:
        """Fail the run (so alerts fire) when too many messages failed."""
        reason = tasks.failure_verdict(result, float(get_current_context()["params"]["failure_threshold"]))
        if reason:
            raise AirflowFailException(reason)

    chunks = prepare()
    sent = send_chunk.partial(prepared_at=chunks["prepared_at"]).expand(chunk=chunks)
    tracked = track_chunk.expand(sent=sent)
    check_failure_rate(summary(chunks, sent, tracked))

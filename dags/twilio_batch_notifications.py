"""Scheduled batch notifications: one SMS per valid recipient, each tracked to its final status.

prepare >> send_chunk[i] >> track_chunk[i] >> summary >> check_failure_rate
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, Param, PokeReturnValue, TriggerRule, task
from airflow.sdk.exceptions import AirflowFailException
from airflow.sdk.types import DagRunProtocol, RuntimeTaskInstanceProtocol

from twilio_messaging.batch import prepare as preparing
from twilio_messaging.batch import report, send, track
from twilio_messaging.batch.failures import final_errors
from twilio_messaging.batch.layout import RunLayout
from twilio_messaging.batch.plan import dedupe_key
from twilio_messaging.batch.prepare import AUTO_CHUNKS, AUTO_MIN_CHUNK, MAX_CHUNK_SIZE
from twilio_messaging.batch.records import ChunkRef, SendCounts
from twilio_messaging.contract import BATCH_DAG_ID, REPORT_FORMATS
from twilio_messaging.hooks.twilio import TwilioHook
from twilio_messaging.settings import STORAGE_ENV, BatchSettings
from twilio_messaging.validation import BODY_MAX_CHARS, PARAM_SCHEMAS

# Read when the file is parsed; twilio_messaging/settings.py lists every variable.
SETTINGS = BatchSettings.from_env()
CONN_ID = TwilioHook.default_conn_name  # written into the batch's plan; every task uses it
# Relative paths in params: first from the project root (where include/ lives), then from dags/.
BASE_DIRS = (Path(__file__).resolve().parent.parent, Path(__file__).resolve().parent)
DEFAULT_TEMPLATE = "Hi {name}, this is a reminder of your appointment on {date}. Reply STOP to opt out."
DEFAULT_FAILURE_THRESHOLD = 0.1

DOC_MD = f"""
# Twilio batch notifications

Sends one SMS to every valid recipient of a list and follows each message to its final status. Rows live
in object storage (`${STORAGE_ENV}`, default `file://$AIRFLOW_HOME/twilio_messaging`, one folder per run);
XCom carries chunk indices and counts.

    prepare >> send_chunk[i] >> track_chunk[i] >> summary >> check_failure_rate

- **prepare** streams the recipients (`recipients` list in the conf, else the `recipients_path` CSV, JSON
  or JSON-lines file with a `to` column), validates every row, removes duplicate and opted-out numbers and
  numbers already sent under the run's `dedupe_key` by an earlier run (default: the run's day, so a
  scheduled and a manual run on the same day send each recipient once; `allow_resend` sends again),
  renders `body_template` (`{{field}}` placeholders; row values are inserted as plain text, never
  evaluated) and writes one manifest per chunk (`chunk_size`; by default about {AUTO_CHUNKS} chunks of
  {AUTO_MIN_CHUNK:,}–{MAX_CHUNK_SIZE:,} rows; grown when the chunks would exceed `[core] max_map_length`).
  With `sender_mps` it refuses a batch the sender cannot drain within Twilio's ValidityPeriod (10 h), unless
  `pace` spreads the sends at that rate. A bad template or sender fails the run before anything is sent;
  bad rows are reported, not sent.
- **send_chunk** (one task per chunk, pool `{SETTINGS.pool}`, {SETTINGS.concurrency} slots each) reads only
  its own manifest and sends it with up to `concurrency` requests in flight, checkpointing its results to
  storage. A 429 halves the concurrency and waits; nothing is dropped and nothing is sent twice (a retry
  skips what an earlier try recorded and looks the rest up before sending). Its XCom is counts.
- **track_chunk** (reschedule-mode sensor, every {SETTINGS.poke_interval:g} s, first fetch
  {SETTINGS.first_fetch_after:g} s after sending) reads the statuses of the chunk's unfinished messages,
  until all are final or {SETTINGS.status_timeout:g} s have passed (then: unconfirmed). With many in
  flight it lists the chunk's window of Twilio's message list (up to 1,000 statuses per request) and
  fetches by SID, concurrently, only what the list did not show. Final statuses are kept next to the chunk
  in storage, so a final message is never fetched again.
- **summary** streams the chunks into the counts by final status, the failures by error code with their
  meanings, and the per-recipient report (`report.csv` or `report.json` in the run's folder); the report's
  path and URI, the dedupe key and the number already sent are in its XCom and in `summary.json`.
- **check_failure_rate** fails the run when (failed + rejected + unknown) / messages to send is over
  `failure_threshold`, or when a chunk's send task failed.

Needs the pool: `airflow pools set {SETTINGS.pool} 50 "Twilio API concurrency"`.
"""

with DAG(
    dag_id=BATCH_DAG_ID,
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
                "CSV with a 'to' column, JSON Lines (.jsonl, one object per line) or a JSON list of "
                "objects, relative to the project root; "
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
            maxLength=BODY_MAX_CHARS,
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
            None,
            type=["null", "integer"],
            minimum=1,
            maximum=MAX_CHUNK_SIZE,
            title="Chunk size",
            description=(
                f"Recipients per send/track task. Empty (the default): about {AUTO_CHUNKS} chunks of "
                f"{AUTO_MIN_CHUNK:,}-{MAX_CHUNK_SIZE:,} rows, split evenly. Grown automatically when the "
                "chunks would exceed Airflow's [core] max_map_length."
            ),
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
        "dedupe_key": Param(
            None,
            type=["null", "string"],
            maxLength=200,
            title="Dedupe key",
            description=(
                "A recipient already sent under this key by an earlier run of this DAG is skipped "
                "(outcome already_sent). Empty: the run's UTC day, so a scheduled and a manual run on the "
                "same day send once."
            ),
        ),
        "allow_resend": Param(
            False,
            type="boolean",
            title="Allow resend",
            description="Send to every recipient again, even those already sent under the dedupe key.",
        ),
        "sender_mps": Param(
            None,
            type=["null", "number"],
            exclusiveMinimum=0,
            title="Sender throughput (segments/s)",
            description=(
                "What the sender drains: about 1 for a US long code, 100+ for a short code, the sum for a "
                "Messaging Service. Set, a batch that would wait longer than Twilio's ValidityPeriod "
                "(10 h) in the sender's queue is refused before sending."
            ),
        ),
        "pace": Param(
            False,
            type="boolean",
            title="Pace to the sender",
            description="With sender_mps: spread the sends at that rate instead of queueing them at Twilio.",
        ),
    },
) as dag:

    @task(multiple_outputs=False)
    def prepare(
        params: dict[str, Any], dag_run: DagRunProtocol, ti: RuntimeTaskInstanceProtocol
    ) -> list[ChunkRef]:
        """Stream, validate, dedupe, opt-out, render; one manifest per chunk in storage, references out."""
        key = dedupe_key(params, dag_run.logical_date, dag_run.data_interval_end, dag_run.run_after)
        layout = RunLayout.of(dag_run.dag_id, dag_run.run_id)
        with final_errors():
            prepared = preparing.prepare_run(params, SETTINGS, BASE_DIRS, layout, key, conn_id=CONN_ID)
        # The counts and the first skipped rows under their own keys, for the XCom tab (the dedupe key is in
        # the summary); the chunk indices are what send_chunk maps over. Nothing repeats what the return
        # value says, so prepare's XCom stays near a kilobyte at 200 chunks.
        ti.xcom_push(key="counts", value={k: v for k, v in prepared["counts"].items() if k != "chunks"})
        if prepared["skipped"]:
            ti.xcom_push(key="skipped", value=prepared["skipped"])
        return prepared["chunks"]

    @task(
        multiple_outputs=False,
        pool=SETTINGS.pool,
        pool_slots=SETTINGS.concurrency,
        retries=2,  # only after Twilio stayed unreachable; the retry resumes from the stored results
        retry_delay=timedelta(minutes=1),
        map_index_template="chunk {{ task.op_kwargs['chunk'] }}",
    )
    def send_chunk(chunk: ChunkRef, dag_run: DagRunProtocol) -> SendCounts:
        """Send one chunk from its manifest, as planned (bounded, 429-aware, duplicate-safe); counts out."""
        with final_errors():
            return send.send_chunk(chunk, SETTINGS, RunLayout.of(dag_run.dag_id, dag_run.run_id))

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
    def track_chunk(sent: SendCounts, dag_run: DagRunProtocol) -> PokeReturnValue:
        """Fetch the statuses of the chunk's unfinished messages; done when all are final."""
        with final_errors():
            done, counts = track.track_poke(sent, SETTINGS, RunLayout.of(dag_run.dag_id, dag_run.run_id))
        return PokeReturnValue(is_done=done, xcom_value=counts)

    @task(trigger_rule=TriggerRule.ALL_DONE, multiple_outputs=False)
    def summary(chunks: list[ChunkRef] | None, dag_run: DagRunProtocol) -> dict[str, Any]:
        """Counts by final status, failures by error code with meanings; writes the per-recipient report."""
        if chunks is None:
            raise AirflowFailException("prepare did not finish, so nothing was sent; see its log")
        return report.summarise(RunLayout.of(dag_run.dag_id, dag_run.run_id))

    @task
    def check_failure_rate(result: dict[str, Any]) -> None:
        """Fail the run (so alerts fire) when too many messages failed (the threshold prepare planned)."""
        reason = report.failure_verdict(result, float(result["failure_threshold"]))
        if reason:
            raise AirflowFailException(reason)

    # TaskFlow's decorators type a call as the plain function: mypy sees neither the context arguments
    # Airflow injects (params, dag_run, ti) nor that an XComArg stands for the upstream's value.
    chunks = prepare()  # type: ignore[call-arg]
    sent = send_chunk.expand(chunk=chunks)
    tracked = track_chunk.expand(sent=sent)
    result = summary(chunks)  # type: ignore[call-arg, arg-type]
    tracked >> result
    check_failure_rate(result)  # type: ignore[arg-type]

"""The compose topology, natively: CeleryExecutor on PostgreSQL and Redis with two workers, and the sandbox.

1. Twenty workflow runs reach their expected end states, and their tasks run on both workers.
2. A batch of 500 recipients completes although one worker is SIGKILLed while it is sending a chunk: the
   chunk task is retried by Airflow on the other worker, and every recipient gets exactly one message.

Throughput figures (for the README's Scaling section) are printed, not asserted; run with ``-s`` to see them.
"""

from __future__ import annotations

import re
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.celery.conftest import (
    BATCH_CONCURRENCY,
    BATCH_DAG,
    POOL_SLOTS,
    SANDBOX_FLAGS,
    WORKER_CONCURRENCY,
    WORKERS,
    WORKFLOW_DAG,
    Topology,
)

pytestmark = pytest.mark.celery

FROM = "+15005550006"
RUN_TIMEOUT = 240.0
WORKFLOW_RUNS = 20
# Last four digits decide the sandbox outcome: 3003/3005 undelivered, 3008 failed, anything else delivered.
# Run index -> (To, expected finalStatus); every other run is delivered.
WORKFLOW_FAILING = {
    3: ("+15550213003", "undelivered"),
    9: ("+15550213008", "failed"),
    15: ("+15550213005", "undelivered"),
}
BATCH_SIZE = 500
CHUNK_SIZE = 50
BATCH_FAILING = 5  # the last five recipients end undelivered (30006): a 1% failure rate, under the 10% limit
SEND_TASK = "send_chunk"

# "[<celery id>] Executing workload in Celery: ... ti=TaskInstance(id=..., dag_version_id=..., task_id='x',
# dag_id='y', run_id='z', try_number=1, map_index=-1, ...)"
WORKLOAD_LINE = re.compile(
    r"Executing workload in Celery:.*?task_id='(?P<task_id>[^']+)'.*?dag_id='(?P<dag_id>[^']+)'"
    r".*?run_id='(?P<run_id>[^']+)'.*?try_number=(?P<try_number>\d+).*?map_index=(?P<map_index>-?\d+)"
)

# Filled by the tests, printed at the end of each one.
METRICS: dict[str, Any] = {}


def _workflow_case(index: int) -> tuple[str, str]:
    return WORKFLOW_FAILING.get(index, (f"+1555021{1000 + index:04d}", "delivered"))


def _batch_recipients() -> list[dict[str, str]]:
    rows = [
        {"to": f"+1555031{i:04d}", "name": f"Customer {i}", "order": f"A-{i:05d}"} for i in range(BATCH_SIZE)
    ]
    for k in range(BATCH_FAILING):
        rows[BATCH_SIZE - BATCH_FAILING + k]["to"] = f"+155504{k}3006"
    return rows


def _executions(topology: Topology) -> dict[str, list[dict[str, Any]]]:
    """Every workload each worker's own log says it executed (task, run, try, map index)."""
    found: dict[str, list[dict[str, Any]]] = {}
    for name, worker in topology.workers.items():
        found[name] = [
            {**m.groupdict(), "try_number": int(m["try_number"]), "map_index": int(m["map_index"])}
            for m in WORKLOAD_LINE.finditer(worker.log())
        ]
    return found


def _tries(
    topology: Topology, dag_id: str, run_id: str, task_id: str, map_index: int
) -> list[dict[str, Any]]:
    suffix = f"{task_id}/{map_index}/tries" if map_index >= 0 else f"{task_id}/tries"
    path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{suffix}"
    return topology.client.request("GET", path).json()["task_instances"]


def _seconds_after(iso: str | None, moment: datetime) -> str:
    if not iso:
        return "?"
    return f"{(datetime.fromisoformat(iso.replace('Z', '+00:00')) - moment).total_seconds():+.1f}"


def _print_placement(title: str, tis: list[dict[str, Any]]) -> None:
    by_worker: dict[str, Counter[str]] = defaultdict(Counter)
    for ti in tis:
        by_worker[ti.get("hostname") or "(none)"][ti["task_id"]] += 1
    print(f"\n[celery] {title}: task instances by worker (task instance hostname)", flush=True)
    for host in sorted(by_worker):
        tasks = ", ".join(f"{task} x{n}" for task, n in sorted(by_worker[host].items()))
        print(f"[celery]   {host}: {sum(by_worker[host].values())} TIs: {tasks}", flush=True)


def _print_metrics() -> None:
    print("\n[celery] throughput (2-core machine, " + " ".join(SANDBOX_FLAGS) + "):", flush=True)
    for key, value in METRICS.items():
        print(f"[celery]   {key}: {value}", flush=True)


def test_workflow_runs_reach_their_end_states_on_both_workers(celery_topology: Topology) -> None:
    topology, client = celery_topology, celery_topology.client
    started = time.monotonic()
    runs: dict[str, tuple[str, str]] = {}
    for i in range(WORKFLOW_RUNS):
        run_id = f"celery_wf_{i:02d}_{int(time.time())}"
        to, final_status = _workflow_case(i)
        client.trigger(
            WORKFLOW_DAG, {"to": to, "from": FROM, "body": f"Celery test message {i}"}, run_id=run_id
        )
        runs[run_id] = (to, final_status)

    results = {}
    for run_id in runs:
        topology.check_alive()
        remaining = max(10.0, RUN_TIMEOUT - (time.monotonic() - started))
        results[run_id] = client.wait_for_run(WORKFLOW_DAG, run_id, timeout=remaining, interval=1.0)
    wall = time.monotonic() - started

    problems = []
    all_tis: list[dict[str, Any]] = []
    for run_id, (to, final_status) in runs.items():
        result = results[run_id]
        all_tis.extend(result.tasks.values())
        states = {task: ti["state"] for task, ti in result.tasks.items()}
        fails = final_status != "delivered"
        expected_run, end, other = (
            ("failed", "failed", "delivered") if fails else ("success", "delivered", "failed")
        )
        expected_end_state = "failed" if fails else "success"
        if (result.state, states.get(end), states.get(other)) != (
            expected_run,
            expected_end_state,
            "skipped",
        ):
            problems.append(f"{run_id} (to {to}): run {result.state}, tasks {states}")
            continue
        final = client.xcom(WORKFLOW_DAG, run_id, end, key="finalStatus")
        if final != final_status:
            problems.append(f"{run_id} (to {to}): finalStatus {final!r}")
    assert not problems, (
        "runs not in their expected end state:\n" + "\n".join(problems) + ("\n" + topology.diagnostics())
    )

    # Exactly one message per run, none twice.
    recipients = [to for to, _ in runs.values()]
    per_to = Counter(m["to"] for m in topology.sandbox.messages() if m["to"] in recipients)
    assert per_to == Counter(recipients), f"messages per recipient: {per_to}"

    hosts = {ti.get("hostname") for ti in all_tis if ti["state"] in ("success", "failed")}
    _print_placement(f"{WORKFLOW_RUNS} workflow runs", [ti for ti in all_tis if ti["state"] != "skipped"])
    executions = _executions(topology)
    for name, items in executions.items():
        mine = Counter(e["task_id"] for e in items if e["dag_id"] == WORKFLOW_DAG)
        print(
            f"[celery]   {name} log: {sum(mine.values())} executions {dict(sorted(mine.items()))}", flush=True
        )
    assert set(WORKERS) <= hosts, f"tasks ran only on {hosts}, expected both of {WORKERS}"
    # The worker logs agree with the hostnames Airflow recorded: a TI's last run is in its worker's log.
    for ti in all_tis:
        if ti["state"] in ("success", "failed") and ti.get("hostname") in WORKERS:
            logged = {(e["run_id"], e["task_id"]) for e in executions[ti["hostname"]]}
            assert (ti["dag_run_id"], ti["task_id"]) in logged, (
                f"{ti['task_id']} of {ti['dag_run_id']} not in its log"
            )

    METRICS["workflow runs"] = WORKFLOW_RUNS
    METRICS["workflow wall time (first trigger to last run done)"] = f"{wall:.1f} s"
    METRICS["workflow runs/min"] = f"{WORKFLOW_RUNS / wall * 60:.1f}"
    _print_metrics()


def test_batch_of_500_survives_a_worker_kill_without_duplicates(celery_topology: Topology) -> None:
    topology, client, sandbox = celery_topology, celery_topology.client, celery_topology.sandbox
    assert all(w.alive() for w in topology.workers.values()), "both workers must be up before the batch"
    recipients = _batch_recipients()
    tos = [row["to"] for row in recipients]
    chunks = [set(tos[i : i + CHUNK_SIZE]) for i in range(0, BATCH_SIZE, CHUNK_SIZE)]
    conf = {
        "recipients": recipients,
        "recipients_path": None,
        "opt_out_path": None,
        "body_template": "Hi {name}, your order {order} has shipped.",
        "from": FROM,
        "chunk_size": CHUNK_SIZE,
        "concurrency": BATCH_CONCURRENCY,
    }
    run_id = f"celery_batch_{int(time.time())}"
    started = time.monotonic()
    client.trigger(BATCH_DAG, conf, run_id=run_id)

    # Watch until a worker is in the middle of sending a chunk, then SIGKILL that worker.
    killed: dict[str, Any] | None = None
    first_message_at: float | None = None
    all_sent_at: float | None = None
    run_state = "queued"
    while time.monotonic() - started < RUN_TIMEOUT:
        topology.check_alive()
        sent_tos = {m["to"] for m in sandbox.messages()} & set(tos)
        now = time.monotonic()
        if sent_tos and first_message_at is None:
            first_message_at = now
        if len(sent_tos) == BATCH_SIZE and all_sent_at is None:
            all_sent_at = now
        if killed is not None and "chunk_sent_5s_after_kill" not in killed and now - killed["at"] >= 5:
            # Long before the heartbeat timeout, so no retry yet: what the dead try managed to send.
            killed["chunk_sent_5s_after_kill"] = len(chunks[killed["map_index"]] & sent_tos)
        if killed is None:
            for ti in client.task_instances(BATCH_DAG, run_id):
                if ti["task_id"] != SEND_TASK or ti["state"] != "running" or ti["map_index"] < 0:
                    continue
                if ti["hostname"] not in WORKERS:
                    continue
                done_in_chunk = len(chunks[ti["map_index"]] & sent_tos)
                # In the middle of the batch (two chunks' worth sent) and of this chunk.
                if len(sent_tos) >= 2 * CHUNK_SIZE and 0 < done_in_chunk < CHUNK_SIZE - 5:
                    processes = topology.kill_worker(ti["hostname"])
                    # Look again: the poll above is a moment old, and the chunk kept sending until now.
                    sent_tos = {m["to"] for m in sandbox.messages()} & set(tos)
                    done_in_chunk = len(chunks[ti["map_index"]] & sent_tos)
                    killed = {
                        "worker": ti["hostname"],
                        "map_index": ti["map_index"],
                        "try_number": ti["try_number"],
                        "chunk_sent_before_kill": done_in_chunk,
                        "batch_sent_before_kill": len(sent_tos),
                        "at": time.monotonic(),
                        "wall": datetime.now(UTC),
                        "elapsed": time.monotonic() - started,
                    }
                    print(
                        f"\n[celery] SIGKILLed {killed['worker']} ({processes} processes) while it was "
                        f"sending chunk {killed['map_index']} ({done_in_chunk}/{CHUNK_SIZE} sent; "
                        f"{len(sent_tos)}/{BATCH_SIZE} in the batch) {killed['elapsed']:.1f}s after trigger",
                        flush=True,
                    )
                    break
        run_state = client.get_run(BATCH_DAG, run_id)["state"]
        if run_state in ("success", "failed"):
            break
        time.sleep(0.25 if killed is None else 1.0)
    wall = time.monotonic() - started
    tis = {(ti["task_id"], ti["map_index"]): ti for ti in client.task_instances(BATCH_DAG, run_id)}
    states = {f"{task}[{index}]": ti["state"] for (task, index), ti in sorted(tis.items())}

    assert killed is not None, (
        f"never saw a send_chunk task mid-chunk, so no worker was killed (run {run_state}, {states})"
    )
    assert run_state == "success", f"batch run ended {run_state!r}: {states}\n{topology.diagnostics()}"

    # Exactly one message per recipient: nothing lost, nothing sent twice.
    per_to = Counter(m["to"] for m in sandbox.messages() if m["to"] in set(tos))
    duplicates = {to: n for to, n in per_to.items() if n > 1}
    assert not duplicates, f"{len(duplicates)} recipients got more than one message: {duplicates}"
    assert len(per_to) == BATCH_SIZE, f"{BATCH_SIZE - len(per_to)} recipients got no message"

    summary = client.xcom(BATCH_DAG, run_id, "summary")
    assert summary is not None, "the summary task published no result"
    counts = {k: summary[k] for k in ("to_send", "delivered", "failed", "unconfirmed", "unknown")}
    assert counts == {
        "to_send": BATCH_SIZE,
        "delivered": BATCH_SIZE - BATCH_FAILING,
        "failed": BATCH_FAILING,
        "unconfirmed": 0,
        "unknown": 0,
    }, counts

    # The killed chunk: try 1 on the dead worker, retried by Airflow and finished on the survivor.
    # The kill really stopped the chunk: at most the requests in flight at that moment reached Twilio
    # (their responses were lost - the case the retry's look-up exists for).
    after = killed["chunk_sent_5s_after_kill"]
    print(
        f"[celery] chunk {killed['map_index']}: {killed['chunk_sent_before_kill']} messages at the kill, "
        f"{after} five seconds later, {CHUNK_SIZE} at the end",
        flush=True,
    )
    assert after - killed["chunk_sent_before_kill"] <= BATCH_CONCURRENCY, killed
    assert after < CHUNK_SIZE, f"the killed try finished its chunk anyway: {killed}"
    survivor = next(name for name in WORKERS if name != killed["worker"])
    victim = tis[(SEND_TASK, killed["map_index"])]
    tries = _tries(topology, BATCH_DAG, run_id, SEND_TASK, killed["map_index"])
    history = [(t["try_number"], t["state"], t["hostname"]) for t in tries]
    for t in tries:
        start, end = (_seconds_after(t.get(k), killed["wall"]) for k in ("start_date", "end_date"))
        print(
            f"[celery] chunk {killed['map_index']} try {t['try_number']} on {t['hostname']}: {t['state']}, "
            f"started {start} s and ended {end} s relative to the kill",
            flush=True,
        )
    assert victim["state"] == "success" and victim["try_number"] > killed["try_number"], victim
    assert victim["hostname"] == survivor, f"killed chunk finished on {victim['hostname']}, not {survivor}"
    assert (killed["try_number"], killed["worker"]) in {(t, h) for t, _, h in history}, history
    # The retry on the other worker resumed from the dead try's results in the shared storage: rows that
    # try recorded were kept as they were, every other row was looked up before sending.
    stats = sandbox.stats()["requests"]
    path = f"/api/v2/dags/{BATCH_DAG}/dagRuns/{run_id}/taskInstances/{SEND_TASK}/xcomEntries/return_value"
    resumed = client.request("GET", path, params={"map_index": killed["map_index"]}).json()["value"]
    print(f"[celery] the retry kept {resumed['reused']} rows the killed try had recorded", flush=True)
    assert resumed["messages"] == CHUNK_SIZE and resumed["reused"] <= killed["chunk_sent_before_kill"]
    assert stats.get("list", 0) >= CHUNK_SIZE - resumed["reused"], f"no look-ups before resending: {stats}"
    # Manifests, results and the report are in the storage both workers share, one folder per run.
    from twilio_messaging.batch.layout import RunLayout
    from twilio_messaging.storage import read_json, storage_base

    layout = RunLayout.of(
        BATCH_DAG, run_id, storage_base({"TWILIO_STORAGE": topology.stack.env()["TWILIO_STORAGE"]})
    )
    assert len(list((layout.folder / "manifests").iterdir())) == len(chunks)
    assert all(read_json(layout.results(index))["complete"] for index in range(len(chunks)))
    assert summary["report_uri"] == str(layout.report("csv"))
    assert len(layout.report("csv").read_text().splitlines()) == 1 + BATCH_SIZE

    # The dead worker's own log shows it had started the killed try.
    executions = _executions(topology)
    dead_log = {
        (e["task_id"], e["map_index"], e["try_number"])
        for e in executions[killed["worker"]]
        if e["run_id"] == run_id
    }
    assert (SEND_TASK, killed["map_index"], killed["try_number"]) in dead_log, dead_log
    _print_placement("batch run", list(tis.values()))
    for name, items in executions.items():
        mine = Counter(e["task_id"] for e in items if e["run_id"] == run_id)
        print(
            f"[celery]   {name} log: {sum(mine.values())} executions {dict(sorted(mine.items()))}", flush=True
        )
    print(f"[celery] sandbox requests: {stats}", flush=True)

    assert first_message_at is not None and all_sent_at is not None
    chunk_seconds = []
    for index in range(len(chunks)):
        path = f"/api/v2/dags/{BATCH_DAG}/dagRuns/{run_id}/taskInstances/{SEND_TASK}/xcomEntries/return_value"
        value = client.request("GET", path, params={"map_index": index}).json()["value"]
        chunk_seconds.append(float(value["seconds"]))
    METRICS["send_chunk task: time in the send loop per chunk of 50"] = (
        f"min {min(chunk_seconds):.1f} s, max {max(chunk_seconds):.1f} s, "
        f"= {CHUNK_SIZE * len(chunks) / sum(chunk_seconds):.1f} messages/s per chunk task"
    )
    pre_kill = killed["at"] - first_message_at
    METRICS["batch"] = (
        f"{BATCH_SIZE} recipients, chunks of {CHUNK_SIZE}, {BATCH_CONCURRENCY} requests in flight per chunk, "
        f"pool twilio_api={POOL_SLOTS}, {len(WORKERS)} workers x concurrency {WORKER_CONCURRENCY}"
    )
    METRICS["batch send rate before the kill"] = (
        f"{killed['batch_sent_before_kill'] / pre_kill:.1f} messages/s" if pre_kill > 0 else "n/a"
    )
    METRICS["batch send phase (first to last message, incl. kill recovery)"] = (
        f"{all_sent_at - first_message_at:.1f} s"
    )
    METRICS["batch wall time (trigger to run success, incl. kill recovery)"] = f"{wall:.1f} s"
    METRICS["batch end to end"] = f"{BATCH_SIZE / wall:.1f} messages/s"
    METRICS["kill to all messages sent"] = f"{all_sent_at - killed['at']:.1f} s"
    _print_metrics()


def test_status_callback_receiver_on_the_api_server_writes_the_shared_store(
    celery_topology: Topology,
) -> None:
    """Twilio's callbacks reach the api-server's receiver, which checks them with the connection's token
    (read from Airflow as the api-server reads it) and writes the Redis store the workers read."""
    import uuid

    import httpx
    from twilio.request_validator import RequestValidator

    from twilio_messaging.callbacks.store import store_from_url

    topology = celery_topology
    url = topology.stack.base_url + "/twilio-messages/status-callback"
    validator = RequestValidator(topology.sandbox.auth_token)
    sid = "SM" + uuid.uuid4().hex
    store = store_from_url(topology.callback_store, 3600)

    def post(status: str, *, signed: bool = True, token: str | None = None) -> int:
        form = {"MessageSid": sid, "MessageStatus": status, "AccountSid": topology.sandbox.account_sid}
        headers = {"I-Twilio-Idempotency-Token": token or uuid.uuid4().hex}
        if signed:
            headers["X-Twilio-Signature"] = validator.compute_signature(url, form)
        return httpx.post(url, data=form, headers=headers, timeout=30, trust_env=False).status_code

    assert post("delivered", signed=False) == 403
    assert store.get(sid) is None
    assert post("delivered", token="t-1") == 204
    assert post("sent") == 204  # late and out of order
    assert post("failed", token="t-1") == 204  # a replay of t-1: acknowledged, ignored
    assert store.get(sid).status == "delivered"

    # End to end: the sandbox calls the api-server back; checkStatus on a worker reads Redis, not Twilio.
    fetches = topology.sandbox.stats()["requests"]["fetch"]
    run_id = f"celery_callbacks_{int(time.time())}"
    topology.client.trigger(
        WORKFLOW_DAG, {"to": "+15550219999", "from": FROM, "body": "by callback"}, run_id=run_id
    )
    result = topology.client.wait_for_run(WORKFLOW_DAG, run_id, timeout=RUN_TIMEOUT, interval=1.0)
    assert result.state == "success" and result.task_state("delivered") == "success"
    [message] = [m for m in topology.sandbox.messages() if m["body"] == "by callback"]
    assert store.get(message["sid"]).status == "delivered"
    assert topology.sandbox.stats()["requests"]["fetch"] == fetches  # no status request: the callback did it
    store.close()

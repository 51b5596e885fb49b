"""The batch DAG with callbacks on (dag.test; the sandbox calls the receiver on loopback): its tracking
takes the called-back statuses and asks Twilio only for the failures' error texts; the summary is
polling's."""

from __future__ import annotations

import os

from tests.batch.test_batch_dag import REPO, load_dag, xcom

SUMMARY_KEYS = ("to_send", "delivered", "failed")


def test_batch_tracks_by_callbacks_with_the_outcome_of_polling(
    monkeypatch, airflow_db, clean_sandbox, receiver_server, store_url, tmp_path
):
    from twilio_messaging.callbacks.receiver import auth_tokens

    monkeypatch.setenv("AIRFLOW_CONN_TWILIO_DEFAULT", clean_sandbox.conn_json())
    monkeypatch.setenv("TWILIO_BATCH_DATA_DIRS", f"{REPO / 'include'}{os.pathsep}{tmp_path}")
    monkeypatch.setenv("TWILIO_CALLBACK_STORE", store_url)
    auth_tokens.forget()
    polled = xcom(load_dag().test(), "summary")
    polling_requests = clean_sandbox.stats()["requests"]
    assert polling_requests["fetch"] + polling_requests["list"] >= 1

    clean_sandbox.reset()
    monkeypatch.setenv("TWILIO_CALLBACK_BASE_URL", f"http://127.0.0.1:{receiver_server.port}")
    monkeypatch.setenv("TWILIO_BATCH_SCHEDULE", "none")
    run = load_dag().test(run_conf={"dedupe_key": "callbacks"})  # the sample again, under its own key
    summary = xcom(run, "summary")
    assert run.state == "success"
    assert {k: summary[k] for k in SUMMARY_KEYS} == {k: polled[k] for k in SUMMARY_KEYS}
    stats = clean_sandbox.stats()
    assert stats["callbacks"]["sent"] >= summary["to_send"]
    # Only the one undelivered message is asked for (its error text); the delivered are not polled.
    assert stats["requests"]["fetch"] + stats["requests"]["list"] <= summary["failed"]

"""Guarantee 5 (dag.test side): after every failure path, the auth token is in no log line, no XCom, no
rendered template field and no exception message. The e2e module checks the same on a real stack."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from tests.reliability.conftest import (
    SENDER,
    TOKEN,
    WRONG_TOKEN,
    TwilioSwitch,
    count_secrets,
    load_dag,
    stored_text,
    xcom,
)


def log_files_text(home: Path) -> str:
    return "".join(
        p.read_text(errors="replace") for p in home.rglob("*") if p.is_file() and p.suffix in (".log", "")
    )


def test_no_failure_path_leaks_the_token(rel, monkeypatch, capfd, fast_backoff, airflow_db):
    def fresh_dag():
        # A fresh parse per run: in-process runs share Param objects, so an optional conf value of one run
        # would otherwise show up in the next (a dag.test artifact; real workers parse the file anew).
        dag = load_dag()
        dag.get_task("sendMessage").retry_delay = timedelta(seconds=1)
        return dag

    runs = {}
    texts = []

    def run(name: str, conf: dict) -> None:
        runs[name] = fresh_dag().test(run_conf={"from": SENDER, "body": f"secret scan {name}", **conf})
        outcome = xcom(runs[name], "routeByStatus", "outcome") or {}
        from twilio_messaging.workflow.outcome import failure_text

        texts.append(failure_text(outcome) if outcome.get("end") == "failed" else "")
        texts.append(json.dumps(xcom(runs[name], "sendMessage", "sendError")))

    run("delivered", {"to": "+15553100001"})
    run("undelivered", {"to": "+15553103003"})
    run("invalid-to-21211", {"to": "+15005550001"})
    run("wrong-account-20404", {"to": "+15553100002", "accountSid": "AC" + "e" * 32})
    run("invalid-input", {"to": "+15553100003", "messagingServiceSid": "MG" + "a" * 32})
    run(
        "jinja",
        {"to": "+15553100004", "body": "{{ conn.twilio_default.password }} {{ conn.twilio_default }}"},
    )
    rel.set_faults(rate_lost_response=1.0, lost_response_mode="drop")
    run("lost-response", {"to": "+15553100005"})
    rel.clear_faults()
    monkeypatch.setenv(
        "AIRFLOW_CONN_TWILIO_DEFAULT", json.dumps({**json.loads(rel.conn_json()), "password": WRONG_TOKEN})
    )
    run("bad-credentials-20003", {"to": "+15553100006"})
    switch = TwilioSwitch(rel.port)  # never switched on: connection refused on every attempt
    monkeypatch.setenv("AIRFLOW_CONN_TWILIO_DEFAULT", switch.conn_json(rel))
    try:
        run("unreachable", {"to": "+15553100007"})
    finally:
        switch.close()
    monkeypatch.setenv("AIRFLOW_CONN_TWILIO_DEFAULT", rel.conn_json())

    captured = capfd.readouterr()
    output = captured.out + captured.err
    assert "sendMessage" in output, "the task output was not captured: searching it would prove nothing"
    # The control: a conf key holding the token is echoed in the refusal (it is the user's own input), so
    # the same search over the same places must find it there.
    control = fresh_dag().test(run_conf={"to": "+15553100008", "from": SENDER, "body": "control", TOKEN: "x"})
    assert count_secrets(stored_text(control)) > 0, "the search does not see XComs"
    log_files = [p for p in airflow_db.rglob("*") if p.is_file()]
    found = {
        "run output (task logs of dag.test)": count_secrets(output),
        "log files under AIRFLOW_HOME": count_secrets(log_files_text(airflow_db)),
        "XComs and rendered fields": sum(count_secrets(stored_text(r)) for r in runs.values()),
        "failure messages and sendError": count_secrets("".join(texts)),
        "sandbox store": count_secrets(json.dumps(rel.messages())),
    }
    print(
        f"\nSECRETS dag.test: {len(runs)} runs ({', '.join(runs)}); {len(output)} chars of output and "
        f"{len(log_files)} files searched; token occurrences {found}"
    )
    assert sum(found.values()) == 0, found
    states = {name: str(r.state) for name, r in runs.items()}
    assert states["delivered"].endswith("success") and states["jinja"].endswith("success"), states
    assert sum(s.endswith("failed") for s in states.values()) == len(runs) - 3, (
        states
    )  # lost-response delivers

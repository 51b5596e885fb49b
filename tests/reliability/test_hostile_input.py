"""Guarantee 6 (and the Jinja half of 5): hostile and malformed input.

Each generated conf goes the exact way a trigger takes it: the serialized DAG's Params (``deep_merge`` +
``validate``, what ``create_dagrun`` does, so REST answers 400), then the task's own validation. It is either
refused before any HTTP request with an error naming the field, or, when it is in fact valid, sent, and the
sandbox's store shows exactly what was asked for. Anything else (a crash, a refusal naming no field, a valid
conf that Twilio refuses) fails the test.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.reliability.conftest import (
    BATCH_DAG,
    DAGS,
    REPO,
    SECRETS,
    SENDER,
    TOKEN,
    WORKFLOW_DAG,
    load_dag,
    stored_text,
    xcom,
)

EXAMPLES = 250
HYPOTHESIS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,  # the same examples on every CI run
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
WORKFLOW_FIELDS = ("to", "from", "body", "mediaUrl", "statusCallback", "accountSid", "messagingServiceSid")
JINJA = (
    "{{ conn.twilio_default.password }}",
    "{{ var.value.secret }}",
    "{% for x in range(9) %}x{% endfor %}",
)

nasty_text = st.one_of(
    st.text(max_size=40),  # any unicode, control characters included
    st.sampled_from(
        [
            "",
            " ",
            "\x00",
            "\u200b",  # zero-width space
            "\u202e+15551234567",  # right-to-left override
            "\ud800",  # a lone surrogate: not encodable as UTF-8
            "whatsapp:\udfff",
            "+١٥٥٥١٢٣٤٥٦٧",  # Arabic-Indic digits
            "＋１５５５１２３４５６７",  # full-width
            "+1 555 123 4567",
            "5551234567",
            "+0123456789",
            "+1234567890123456",
            "+15551234567\n",
            "sms:+15551234567",
            "ftp://example.com/a.png",
            "javascript:alert(1)",
            "http://exa_mple.com/cb",
            "http://",
            "https://example.com/" + "a" * 2100,
            "x" * 1601,
            "x" * 1600,
            "AC" + "0" * 31,
            "MG" + "g" * 32,
            *JINJA,
        ]
    ),
)
nasty_value = st.one_of(
    nasty_text,
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.lists(nasty_text, max_size=4),
    st.lists(st.just("https://example.com/a.png"), min_size=11, max_size=2000),  # huge lists
    st.dictionaries(st.text(max_size=5), nasty_text, max_size=3),
)
good_value = st.sampled_from(
    [
        ("to", "+15552600001"),
        ("to", "whatsapp:+15552600002"),
        ("from", "+15005550006"),
        ("from", "MyBrand"),
        ("from", "12345"),
        ("body", "Plain text"),
        ("body", "Grüße 😀 {{ conn.twilio_default.password }}"),
        ("body", "x" * 1600),
        ("mediaUrl", ["https://example.com/a.png"]),
        ("mediaUrl", "https://example.com/b.png"),
        ("statusCallback", "https://example.com/cb?x=1"),
        ("accountSid", None),
        # Unicode edge cases in otherwise well-formed values: a lone surrogate is not UTF-8 (JSON allows
        # "\\ud800"), NUL, zero-width and right-to-left characters, combining marks.
        ("body", "a\ud800b"),
        ("body", "nul\x00byte"),
        ("body", "zero\u200bwidth \u202eevil e\u0301"),
        ("to", "whatsapp:+1555\udfff"),
        ("statusCallback", "https://example.com/\ud800"),
        ("mediaUrl", ["https://example.com/\udc00.png"]),
    ]
)


@st.composite
def workflow_confs(draw) -> dict[str, Any]:
    conf: dict[str, Any] = {"to": "+15552600001", "from": SENDER, "body": "hello"}
    for _ in range(draw(st.integers(1, 3))):
        action = draw(st.sampled_from(["set", "set", "set", "good", "drop", "extra"]))
        if action == "set":
            conf[draw(st.sampled_from(WORKFLOW_FIELDS))] = draw(nasty_value)
        elif action == "good":
            key, value = draw(good_value)
            conf[key] = value
        elif action == "drop":
            conf.pop(draw(st.sampled_from(WORKFLOW_FIELDS)), None)
        else:
            conf[draw(st.text(min_size=1, max_size=12))] = draw(nasty_value)
    return conf


def trigger_params(dag_id: str):
    """The Params as the scheduler and the API server hold them (the serialized DAG)."""
    from airflow.serialization.serialized_objects import DagSerialization

    return DagSerialization.deserialize_dag(DagSerialization.serialize_dag(load_dag(dag_id))).params


def named_param(error: Exception, conf: dict[str, Any], params) -> str:
    found = re.search(r"Invalid input for param (\S+?):", str(error))
    assert found, f"refusal names no param: {error}"
    assert found.group(1) in params, str(error)
    return found.group(1)


@pytest.fixture(scope="module")
def workflow_params(airflow_db):
    return trigger_params(WORKFLOW_DAG)


@pytest.fixture(scope="module")
def batch_params(airflow_db):
    return trigger_params(BATCH_DAG)


def test_malformed_workflow_confs_are_refused_naming_the_field_or_sent_exactly(rel, workflow_params):
    from airflow.sdk.exceptions import ParamValidationError

    from twilio_messaging.client import TwilioClient
    from twilio_messaging.connection import TwilioConnection
    from twilio_messaging.operators.twilio import resolve_account_sid
    from twilio_messaging.validation import InvalidInput
    from twilio_messaging.workflow.inputs import check_inputs

    connection = TwilioConnection(base_url=rel.base_url, username=rel.account_sid, secret=TOKEN)
    seen = {"examples": 0, "param_refused": 0, "task_refused": 0, "sent": 0}

    @HYPOTHESIS
    @given(conf=workflow_confs())
    def check(conf: dict[str, Any]) -> None:
        seen["examples"] += 1
        requests_before = sum(rel.stats()["requests"].values())
        try:
            params = workflow_params.deep_merge(conf).validate()
        except ParamValidationError as exc:
            named_param(exc, conf, workflow_params)
            seen["param_refused"] += 1
            return
        try:
            request, account_input = check_inputs(params, conf)
            account = resolve_account_sid(account_input, connection)
        except InvalidInput as exc:
            unknown = ", ".join(sorted(key for key in conf if key not in WORKFLOW_FIELDS))
            known = {*WORKFLOW_FIELDS, "from/messagingServiceSid", "body/mediaUrl"}
            assert exc.field in known or exc.field == unknown, exc
            assert exc.field in str(exc) and exc.rule in str(exc)
            assert sum(rel.stats()["requests"].values()) == requests_before  # refused before any request
            seen["task_refused"] += 1
            return
        rel.reset()
        with TwilioClient(connection, account_sid=account) as client:
            created = client.create_message(request)
        [stored] = rel.messages()
        assert stored["sid"] == created["sid"]
        assert (stored["to"], stored["from"], stored["body"]) == (
            request.to,
            request.from_,
            request.body or "",
        )
        assert int(stored["num_media"]) == len(request.media_urls)
        seen["sent"] += 1

    check()
    print(f"\nHOSTILE workflow confs: {seen}")
    assert seen["examples"] >= 200
    assert seen["param_refused"] and seen["task_refused"] and seen["sent"]


row_value = st.one_of(nasty_value, st.sampled_from(["+15552700001", "+1 (555) 270-0002", "00442079460000"]))


BATCH_KEYS = (
    "body_template", "body_template", "recipients_path", "chunk_size", "concurrency", "failure_threshold",
    "report_format", "from", "messagingServiceSid", "statusCallback", "accountSid", "opt_out",
)  # fmt: skip
batch_special = st.sampled_from(
    [
        "Hi {name}", "{name.__class__}", "{0}", "{name!r}", "{name:>999999999}", "{", "}", "{to}",
        "{{ conn.twilio_default.password }} {name}", "x" * 1601, 0, -1, 10**9, 0.5, 1, 3, "json",
        "/etc/passwd", "../../../../etc/hosts", "include/recipients_sample.csv", "include/missing.csv",
    ]
)  # fmt: skip
templates = st.sampled_from(
    [
        "Hi {name}", "Hi {name}, {extra}", "{name.__class__}", "{0}", "{}", "{name!r}", "{name:>999999999}",
        "{", "}", "{to}", "{{ conn.twilio_default.password }} {name}", "{name[0]}", "😀 {name} €",
    ]
)  # fmt: skip
paths = st.sampled_from(
    [
        "include/recipients_sample.csv", "include/missing.csv", "/etc/passwd", "../../../../etc/hosts",
        "include", "", "include/opt_out_sample.txt", str(REPO / "pyproject.toml"),
    ]
)  # fmt: skip
row = st.fixed_dictionaries({"to": row_value}, optional={"name": nasty_value, "extra": nasty_value})


@st.composite
def batch_confs(draw) -> dict[str, Any]:
    if draw(st.integers(0, 9)) == 0:
        rows: Any = draw(nasty_value)  # not a list of objects at all
    else:
        rows = draw(
            st.lists(st.one_of(row, row, row, st.dictionaries(st.text(max_size=6), nasty_value)), max_size=30)
        )
        if rows and draw(st.integers(0, 9)) == 0:
            rows.insert(draw(st.integers(0, len(rows))), draw(nasty_value))  # one row that is not an object
    conf: dict[str, Any] = {
        "recipients": rows,
        "from": SENDER,
        "body_template": draw(templates),
        "opt_out_path": None,
    }
    if draw(st.integers(0, 3)) == 0:
        del conf["recipients"]  # the recipients file instead
        conf["recipients_path"] = draw(paths)
    for _ in range(draw(st.integers(0, 2))):
        key = draw(st.sampled_from(BATCH_KEYS))
        conf[key] = draw(st.one_of(batch_special, batch_special, nasty_value))
    if draw(st.integers(0, 4)) == 0:
        conf["unexpected_" + draw(st.text(max_size=5))] = draw(nasty_value)
    return conf


def test_malformed_batch_confs_are_refused_naming_the_field_or_prepared_validly(rel, batch_params):
    from airflow.sdk.exceptions import ParamValidationError

    from twilio_messaging.batch import ledger, plan
    from twilio_messaging.batch.layout import RunLayout
    from twilio_messaging.batch.prepare import prepare_run
    from twilio_messaging.settings import BatchSettings
    from twilio_messaging.validation import InvalidInput, validate_message

    settings_ = BatchSettings.from_env()
    seen = {
        "examples": 0,
        "param_refused": 0,
        "task_refused": 0,
        "prepared": 0,
        "rows_sendable": 0,
        "rows_skipped": 0,
    }

    @HYPOTHESIS
    @given(conf=batch_confs())
    def check(conf: dict[str, Any]) -> None:
        seen["examples"] += 1
        try:
            params = batch_params.deep_merge(conf).validate()
        except ParamValidationError as exc:
            name = named_param(exc, conf, batch_params)
            seen["param_refused"] += 1
            seen.setdefault("refused_" + name, 0)
            seen["refused_" + name] += 1
            return
        layout = RunLayout.of(BATCH_DAG, f"hostile_{seen['examples']}")
        try:
            prepared = prepare_run(
                params,
                settings_,
                [REPO, DAGS],
                layout,
                layout.run_id,
                map_limit=1024,
                conn_id="twilio_default",
            )
        except InvalidInput as exc:
            assert exc.field in batch_params or exc.field in ("to", "chunk_size"), exc
            assert exc.field in str(exc)
            seen["task_refused"] += 1
            return
        seen["prepared"] += 1
        counts = prepared["counts"]
        # Rows are in storage (one manifest per chunk, the skipped rows), XCom has references.
        sendable = [row for ref in prepared["chunks"] for row in plan.read_manifest(layout, ref)]
        skipped = list(ledger.iter_jsonl(layout.skipped))
        assert counts["to_send"] == len(sendable)
        assert counts["rows"] == len(sendable) + len(skipped)
        for to, body in (
            (row["to"], row["body"]) for row in sendable
        ):  # what send_chunk sends passes the rules
            validate_message(to=to, from_=params.get("from") or settings_.default_from, body=body)
            (to + body).encode("utf-8")  # and can go on the wire
            assert not any(secret in body for secret in SECRETS)
        for row in skipped:
            assert row["outcome"] in ("invalid", "opted_out", "duplicate") and row["reason"]
        seen["rows_sendable"] += len(sendable)
        seen["rows_skipped"] += len(skipped)
        json.dumps(prepared)  # it must fit in XCom

    check()
    print(f"\nHOSTILE batch confs: {seen}")
    assert seen["examples"] >= 200
    assert seen["param_refused"] and seen["task_refused"] and seen["prepared"] and seen["rows_skipped"]


# Expected segment counts worked out by hand, not with the sandbox's code:
# GSM-7 holds 160 septets in one SMS, 153 per part when split; UCS-2 70 / 67 UTF-16 units. A GSM-7 extension
# character (€) takes 2 septets and an emoji 2 UTF-16 units, and neither is ever split across parts.
SEGMENT_CASES = [
    pytest.param("a" * 1600, 11, id="1600-gsm7"),  # ceil(1600 / 153)
    pytest.param("a" * 160, 1, id="160-gsm7"),
    pytest.param("€" * 765, 11, id="765-euro"),  # 1530 septets, but 76 € per part: ceil(765 / 76)
    pytest.param("Ж" * 1600, 24, id="1600-ucs2"),  # ceil(1600 / 67)
    pytest.param("Ж" * 70, 1, id="70-ucs2"),
    pytest.param("😀" * 100, 4, id="100-emoji"),  # 33 emoji (66 units) per part: ceil(100 / 33)
    pytest.param("Grüße, José! 😀 ok", 1, id="short-emoji"),
]


def test_unicode_and_1600_char_bodies_through_the_dag(rel):
    dag = load_dag()
    results = []
    for index, param in enumerate(SEGMENT_CASES):
        body, segments = param.values
        to = f"+155528{index:05d}"
        run = dag.test(run_conf={"to": to, "from": SENDER, "body": body})
        [stored] = [m for m in rel.messages() if m["to"] == to]
        results.append((param.id, run.state, stored["body"] == body, int(stored["num_segments"]), segments))
    print(f"\nSEGMENTS (case, run, body intact, num_segments, expected): {results}")
    assert all(state == "success" and intact and got == want for _, state, intact, got, want in results), (
        results
    )


@pytest.mark.parametrize("text", JINJA)
def test_jinja_in_the_conf_is_sent_literally_never_rendered(rel, monkeypatch, text):
    monkeypatch.setenv("AIRFLOW_VAR_SECRET", TOKEN)
    run = load_dag().test(
        run_conf={"to": "+15552900001", "from": SENDER, "body": f"literal {text}", "statusCallback": None}
    )

    assert run.state == "success"
    [stored] = rel.messages()
    assert stored["body"] == f"literal {text}"
    assert xcom(run, "delivered", "finalStatus") == "delivered"
    assert TOKEN not in stored_text(run)


def test_jinja_in_batch_rows_and_template_is_never_rendered(rel, monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_SECRET", TOKEN)
    rows = [{"to": "+15552900002", "name": JINJA[0]}, {"to": "+15552900003", "name": JINJA[1]}]
    run = load_dag(BATCH_DAG).test(
        run_conf={
            "recipients": rows,
            "from": SENDER,
            "body_template": "Hi {name} {{ var.value.secret }}",
            "opt_out_path": None,
        }
    )

    assert run.state == "success"
    bodies = sorted(m["body"] for m in rel.messages())
    # Row values go in as they are; the template's {{ }} is its escaped brace, never a Jinja expression.
    assert bodies == sorted(f"Hi {r['name']} {{ var.value.secret }}" for r in rows)
    assert not any(secret in "".join(bodies) + stored_text(run) for secret in SECRETS)

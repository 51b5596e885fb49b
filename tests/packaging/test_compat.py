"""The built wheel in a clean venv with only Airflow and its HTTP provider, on every Airflow it claims.

For the oldest supported Airflow (twilio_messaging.version_compat.MIN_AIRFLOW_VERSION, the floor in the
wheel's metadata) and the one this project pins, the wheel is installed outside the checkout
(tests/packaging/compat.py). There, the example DAGs and the workflow DAG run with ``dag.test`` against the
sandbox (started from the checkout: it is not part of the wheel), the Airflow CLI lists the provider, its
connection type and the plugin, and a real api-server serves the Messages tab of the runs.
"""

from __future__ import annotations

import json
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from sandbox.testing import run_sandbox
from scripts.airflow_stack import AirflowStack
from tests.packaging.compat import REPO, CompatVenv, clean_env, compat_venv, json_listing, newest_airflow, run
from tests.packaging.conftest import Dist
from twilio_messaging.version_compat import MIN_AIRFLOW_VERSION

PACKAGE = "airflow-provider-twilio-messaging"
PLUGIN = "twilio_messages"
WORKFLOW_DAG = "twilio_send_message_track_status"
EXAMPLES = sorted(p.name for p in (REPO / "dags").glob("example_twilio_*.py"))
FROM = "+15005550006"
TO = "+15551230042"
# [dag_id, conf] run in this order; the notifier runs twice (no SMS on success, one on failure).
RUNS: list[tuple[str, dict[str, Any] | None]] = [
    ("example_twilio_send_message", None),
    ("example_twilio_message_status", None),
    ("example_twilio_notifier", {"fail": False}),
    ("example_twilio_notifier", {"fail": True}),
    (WORKFLOW_DAG, {"to": TO, "from": FROM, "body": "compat check"}),
]
# The modules of the application layer: the DAGs' own logic, the batch and the UI.
APPLICATION_LAYER = (
    "twilio_messaging.workflow",
    "twilio_messaging.contract",
    "twilio_messaging.batch",
    "twilio_messaging.ui",
)
BUILDING_BLOCKS = (
    "twilio_messaging.hooks.twilio",
    "twilio_messaging.operators.twilio",
    "twilio_messaging.sensors.twilio",
    "twilio_messaging.notifications.twilio",
)


@dataclass
class Installed:
    """Everything observed of the wheel in one clean venv."""

    venv: CompatVenv
    driver: dict[str, Any]
    messages: list[dict[str, Any]]
    cli: dict[str, Any]
    imported: list[str]
    pages: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, Any] = field(default_factory=dict)

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        return [r for r in self.driver["runs"] if r["dag_id"] == dag_id]


def _timed(seconds: dict[str, Any], name: str, started: float) -> float:
    now = time.monotonic()
    seconds[name] = round(now - started, 1)
    return now


def observe(airflow_version: str, dist: Dist, work: Path) -> Installed:
    """Install the wheel into the clean venv for ``airflow_version`` and observe it, in ``work``."""
    with compat_venv(airflow_version, dist.wheel) as venv:
        return _observe(venv, dist, work)


def _observe(venv: CompatVenv, dist: Dist, work: Path) -> Installed:
    seconds: dict[str, Any] = {"venv (built)": round(venv.built_in, 1)} if venv.built_in else {}
    t = time.monotonic()
    home, dags, plugins = work / "home", work / "dags", work / "plugins"
    for folder in (home, dags, plugins):
        folder.mkdir()
    venv.install_wheel(dist.wheel, cwd=work)
    shutil.copy(venv.db_template, home / "airflow.db")
    for name in [*EXAMPLES, f"{WORKFLOW_DAG}.py"]:
        shutil.copy(REPO / "dags" / name, dags / name)
    shutil.copytree(REPO / "dags" / "workflows", dags / "workflows")  # the Arazzo file the DAG's doc reads
    shutil.copy(Path(__file__).with_name("compat_driver.py"), work / "compat_driver.py")
    t = _timed(seconds, "install wheel", t)

    with run_sandbox("--step-delay", "0") as sandbox:
        conn = json.dumps(
            {
                "conn_type": "twilio",
                "host": "127.0.0.1",
                "port": sandbox.port,
                "schema": "http",
                "login": sandbox.account_sid,
                "password": sandbox.auth_token,
            }
        )
        twilio_env = {
            "TWILIO_POKE_INTERVAL": "1",
            "TWILIO_STATUS_TIMEOUT": "60",
            "TWILIO_STORAGE": f"file://{work / 'storage'}",
        }
        env = clean_env(
            AIRFLOW_HOME=str(home),
            AIRFLOW__CORE__DAGS_FOLDER=str(dags),
            AIRFLOW__CORE__PLUGINS_FOLDER=str(plugins),
            AIRFLOW__CORE__LOAD_EXAMPLES="False",
            AIRFLOW_CONN_TWILIO_DEFAULT=conn,
            **twilio_env,
        )
        python = str(venv.python)

        def cli(*args: str) -> Any:
            return json_listing(run([python, "-m", "airflow", *args, "-o", "json"], env=env, cwd=work))

        blocks = "; ".join(f"import {m}" for m in BUILDING_BLOCKS)
        probe = f"import json, sys; {blocks}; print(json.dumps(sorted(sys.modules)))"
        out = work / "driver.json"
        driver_argv = [python, "-I", "compat_driver.py", str(dags), json.dumps(RUNS), str(out)]
        with ThreadPoolExecutor(5) as pool:  # independent processes: run them side by side
            futures = {
                "providers": pool.submit(cli, "providers", "list"),
                "hooks": pool.submit(cli, "providers", "hooks"),
                "plugins": pool.submit(cli, "plugins"),
                "imported": pool.submit(run, [python, "-I", "-c", probe], env=env, cwd=work),
                "driver": pool.submit(run, driver_argv, env=env, cwd=work),
            }
            results = {name: f.result() for name, f in futures.items()}
        driver = json.loads(out.read_text())
        seconds["dag.test runs"] = [r["seconds"] for r in driver["runs"]]
        t = _timed(seconds, "CLI and dag.test", t)

        installed = Installed(
            venv=venv,
            driver=driver,
            messages=sandbox.messages(),
            cli={k: results[k] for k in ("providers", "hooks", "plugins")},
            imported=json.loads(results["imported"]),
            seconds=seconds,
        )

        # The api-server of the clean venv, on the same metadata DB; provider plugins discovered eagerly
        # too ([core] lazy_discover_providers = False), so a second registration would show as an error.
        stack = AirflowStack(
            work / "home",
            python=python,
            components=("api-server",),
            dags_folder=dags,
            plugins_folder=plugins,
            twilio_conn=conn,
            pools={},
            # PYTHONPATH emptied: nothing of the checkout may reach the clean venv's api-server.
            extra_env={"AIRFLOW__CORE__LAZY_DISCOVER_PROVIDERS": "False", "PYTHONPATH": "", **twilio_env},
            log=lambda line: None,
        )
        stack.start(timeout=240)
        try:
            client = stack.client()
            pages = installed.pages
            pages["plugins"] = client.request("GET", "/api/v2/plugins").json()
            pages["plugin_errors"] = client.request("GET", "/api/v2/plugins/importErrors").json()
            pages["browse"] = client.request("GET", "/twilio-messages/").text
            for record in driver["runs"]:
                path = f"/twilio-messages/dags/{record['dag_id']}/runs/{quote(record['run_id'], safe='')}/"
                response = client.request("GET", path, ok=(200, 404, 500))
                pages.setdefault("tabs", []).append(
                    {"run_id": record["run_id"], "status": response.status_code, "html": response.text}
                )
        finally:
            stack.stop()
        _timed(seconds, "api-server", t)
        return installed


VERSIONS = (MIN_AIRFLOW_VERSION, newest_airflow())


@pytest.fixture(scope="module")
def observed(dist: Dist, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Installed]:
    """Every version side by side: much of the time is waiting (process start-ups, sensor pokes)."""
    started = time.monotonic()
    with ThreadPoolExecutor(len(VERSIONS)) as pool:
        # The work folders are outside the checkout.
        futures = {v: pool.submit(observe, v, dist, tmp_path_factory.mktemp(f"compat-{v}")) for v in VERSIONS}
        found = {v: f.result() for v, f in futures.items()}
    print(
        f"compat checks: {time.monotonic() - started:.1f}s; "
        + "; ".join(f"{v}: {i.seconds}" for v, i in found.items())
    )
    return found


@pytest.fixture(params=VERSIONS, ids=lambda v: f"airflow-{v}")
def installed(request: pytest.FixtureRequest, observed: dict[str, Installed]) -> Installed:
    return observed[request.param]


def test_runs_the_example_dags_and_the_workflow_dag_against_the_sandbox(installed: Installed) -> None:
    driver = installed.driver
    assert driver["airflow"] == installed.venv.airflow_version
    assert driver["import_errors"] == {}
    states = [(r["dag_id"], r["state"]) for r in driver["runs"]]
    expected = ["success", "success", "success", "failed", "success"]
    assert states == [(dag_id, state) for (dag_id, _), state in zip(RUNS, expected, strict=True)], driver
    sent, status, quiet, failing, workflow = driver["runs"]
    by_sid = {m["sid"]: m for m in installed.messages}

    reminder = by_sid[sent["xcoms"]["send_reminder"]["messageSid"]]
    assert reminder["body"].startswith("Reminder: the report for ") and reminder["from"] == FROM
    assert status["xcoms"]["wait_for_delivery"]["return_value"] == {
        "status": "delivered",
        "errorCode": None,
        "errorMessage": None,
    }
    alerts = [m["body"] for m in installed.messages if "task nightly_export failed" in m["body"]]
    assert len(alerts) == 1 and f"run {failing['run_id']}" in alerts[0], alerts
    assert not any(quiet["run_id"] in m["body"] for m in installed.messages)

    assert workflow["tasks"]["delivered"] == "success" and workflow["tasks"]["failed"] == "skipped"
    message = by_sid[workflow["xcoms"]["delivered"]["messageSid"]]
    assert (message["to"], message["body"]) == (TO, "compat check")
    assert workflow["xcoms"]["delivered"]["finalStatus"] == "delivered"
    bodies = [m["body"] for m in installed.messages]
    assert len(bodies) == len(set(bodies)), bodies  # nothing sent twice


def test_providers_list_shows_the_package_at_its_version(installed: Installed, dist: Dist) -> None:
    [entry] = [p for p in installed.cli["providers"] if p["package_name"] == PACKAGE]
    assert entry["version"] == dist.wheel.name.split("-")[1]


def test_the_twilio_connection_type_is_registered_with_its_hook(installed: Installed) -> None:
    hooks = {h["connection_type"]: h for h in installed.cli["hooks"]}
    assert hooks["twilio"]["class"] == "twilio_messaging.hooks.twilio.TwilioHook", hooks.get("twilio")
    assert hooks["twilio"]["package_name"] == PACKAGE and hooks["twilio"]["hook_name"] == "Twilio"


def test_airflow_plugins_lists_the_messages_plugin_from_the_entry_point(installed: Installed) -> None:
    [plugin] = [p for p in installed.cli["plugins"] if p["name"] == PLUGIN]
    assert f"{PACKAGE}==" in plugin["source"] and "group='airflow.plugins'" in plugin["source"]
    views = {v["destination"]: v for v in plugin["external_views"]}
    assert views["dag_run"]["name"] == "Messages" and views["nav"]["category"] == "browse"


def test_the_api_server_mounts_the_plugin_once_and_renders_the_messages_tab(installed: Installed) -> None:
    pages = installed.pages
    names = [p["name"] for p in pages["plugins"]["plugins"]]
    assert names.count(PLUGIN) == 1, names
    assert pages["plugin_errors"]["total_entries"] == 0, pages["plugin_errors"]
    assert "<html" in pages["browse"].lower()

    tabs = {t["run_id"]: t for t in pages["tabs"]}
    for record in installed.driver["runs"]:
        tab = tabs[record["run_id"]]
        assert tab["status"] == 200, (record["dag_id"], tab["status"], tab["html"][-1000:])
    workflow = installed.runs(WORKFLOW_DAG)[0]
    html = tabs[workflow["run_id"]]["html"]
    assert workflow["xcoms"]["delivered"]["messageSid"] in html and "delivered" in html
    other = tabs[installed.runs("example_twilio_send_message")[0]["run_id"]]["html"]
    assert "No messages in this run" in other


def test_the_building_blocks_import_no_application_module(installed: Installed) -> None:
    loaded = [m for m in installed.imported if m.startswith(APPLICATION_LAYER)]
    assert any(m.startswith("twilio_messaging.hooks") for m in installed.imported)  # the probe really ran
    assert loaded == [], loaded

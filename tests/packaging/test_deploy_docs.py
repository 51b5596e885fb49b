"""docs/deploy.md: each snippet marked `<!-- check: NAME -->` is checked against what `make dist` builds."""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.packaging.conftest import REPO, Dist
from twilio_messaging.settings import API_POOL
from twilio_messaging.version_compat import MIN_AIRFLOW_VERSION

DOC = REPO / "docs" / "deploy.md"
BLOCK = re.compile(r"<!-- check: (?P<name>[\w-]+) -->\n```\w*\n(?P<code>.*?)\n```", re.S)
PROJECT = tomllib.loads((REPO / "plugins" / "pyproject.toml").read_text())["project"]["name"]
CONN_ENV = "AIRFLOW_CONN_TWILIO_DEFAULT"


def blocks() -> dict[str, str]:
    found = [(m["name"], m["code"]) for m in BLOCK.finditer(DOC.read_text())]
    names = [name for name, _ in found]
    assert len(names) == len(set(names)), names
    return dict(found)


def wheel_version(dist: Dist) -> str:
    return dist.wheel.name.split("-")[1]


def instructions(dockerfile: str) -> list[str]:
    joined = re.sub(r"\\\n", " ", dockerfile)
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.startswith("#")]


def command_argv(snippet: str) -> list[str]:
    return shlex.split(re.sub(r"\\\n", " ", snippet))


def assert_requires_the_built_wheel(requirement: str, dist: Dist) -> None:
    req = Requirement(requirement)
    assert canonicalize_name(req.name) == canonicalize_name(PROJECT)
    assert req.specifier.contains(wheel_version(dist)), f"{requirement} does not accept {dist.wheel.name}"


def test_every_checked_snippet_has_a_check() -> None:
    """Each marked block has the test of the same name below (a new block needs a new test)."""
    tests = {name.removeprefix("test_").replace("_", "-") for name in globals() if name.startswith("test_")}
    assert set(blocks()) == tests - {"every-checked-snippet-has-a-check"}


def test_connection_json(airflow_db: Any) -> None:
    from airflow.models.connection import Connection
    from airflow.providers_manager import ProvidersManager

    conn = Connection.from_json(blocks()["connection-json"], conn_id="twilio_default")
    assert conn.conn_type == "twilio" and conn.login.startswith("AC") and conn.password
    assert conn.host is None and conn.schema is None  # TwilioHook's defaults: api.twilio.com over https
    assert ProvidersManager().hooks["twilio"] is not None


def test_astronomer_requirements(dist: Dist) -> None:
    [line] = blocks()["astronomer-requirements"].splitlines()
    assert_requires_the_built_wheel(line, dist)


def test_helm_dockerfile(dist: Dist) -> None:
    steps = instructions(blocks()["helm-dockerfile"])
    image, version = steps[0].removeprefix("FROM ").split(":")
    assert image == "apache/airflow" and Version(version) >= Version(MIN_AIRFLOW_VERSION)
    [copy_wheel] = [s for s in steps if s.startswith("COPY") and ".whl" in s]
    source, target = shlex.split(copy_wheel)[1:]
    assert source == f"dist/{dist.wheel.name}", "the file `make dist` writes"
    [install] = [s for s in steps if s.startswith("RUN")]
    argv = shlex.split(install)
    assert argv[1:4] == ["pip", "install", "--no-cache-dir"]
    assert f"apache-airflow=={version}" in argv, "pin Airflow to the image's version"
    assert target.rstrip("/") + "/" + dist.wheel.name in argv
    storage = urlsplit(helm_env()["TWILIO_STORAGE"])
    needs = {"s3": "apache-airflow-providers-amazon[s3fs]", "gs": "apache-airflow-providers-google"}
    assert needs[storage.scheme] in argv, "the filesystem of TWILIO_STORAGE must be installed"


def helm_secret() -> dict[str, Any]:
    return yaml.safe_load(blocks()["helm-secret"])


def helm_env() -> dict[str, str]:
    values = yaml.safe_load(blocks()["helm-values"])
    return {e["name"]: e["value"] for e in values["env"]}


def test_helm_secret() -> None:
    secret = helm_secret()
    assert (secret["apiVersion"], secret["kind"]) == ("v1", "Secret")
    assert json.loads(secret["stringData"][CONN_ENV]) == json.loads(blocks()["connection-json"])


def test_helm_values() -> None:
    values = yaml.safe_load(blocks()["helm-values"])
    assert isinstance(values["images"]["airflow"]["tag"], str)
    [from_secret] = values["secret"]
    assert from_secret == {
        "envName": CONN_ENV,
        "secretName": helm_secret()["metadata"]["name"],
        "secretKey": next(iter(helm_secret()["stringData"])),
    }
    storage = urlsplit(helm_env()["TWILIO_STORAGE"])
    assert storage.scheme in ("s3", "gs") and storage.username and storage.hostname, storage


def test_helm_pool(airflow_cli: Any) -> None:
    argv = command_argv(blocks()["helm-pool"])
    assert argv[:2] == ["kubectl", "exec"]
    airflow = argv[argv.index("--") + 1 :]
    assert airflow[0] == "airflow"
    args = airflow_cli.parse_args(airflow[1:])
    assert (args.pool, int(args.slots)) == (API_POOL, 50)


def test_mwaa_requirements(dist: Dist) -> None:
    [line] = blocks()["mwaa-requirements"].splitlines()
    assert line == f"/usr/local/airflow/plugins/{dist.wheel.name}", "plugins.zip holds the wheel at its root"


def test_composer_install(dist: Dist) -> None:
    argv = command_argv(blocks()["composer-install"])
    assert argv[:4] == ["gcloud", "composer", "environments", "update"]
    assert_requires_the_built_wheel(argv[argv.index("--update-pypi-package") + 1], dist)


@pytest.fixture(scope="module")
def airflow_cli() -> Any:
    from airflow.cli.cli_parser import get_parser

    return get_parser()

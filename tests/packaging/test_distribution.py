"""What `make dist` builds: every run-time file, the metadata a package index shows, the entry points."""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from email.message import Message
from email.parser import Parser

import pytest

import twilio_messaging
from tests.packaging.compat import json_listing
from tests.packaging.conftest import REPO, Dist
from twilio_messaging import version_compat
from twilio_messaging.version_compat import MIN_AIRFLOW_VERSION, AirflowTooOld, check_airflow_version

PLUGINS = REPO / "plugins"
PACKAGE_DIR = PLUGINS / "twilio_messaging"
PYPROJECT = tomllib.loads((PLUGINS / "pyproject.toml").read_text())


def package_files() -> set[str]:
    """Every file of the package on disk (modules, templates, markers), as paths inside the wheel."""
    return {
        p.relative_to(PLUGINS).as_posix()
        for p in PACKAGE_DIR.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }


def wheel_metadata(dist: Dist) -> tuple[Message, list[str]]:
    with zipfile.ZipFile(dist.wheel) as zf:
        info = next(n.split("/")[0] for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = Parser().parsestr(zf.read(f"{info}/METADATA").decode())
        return metadata, zf.namelist()


def test_the_wheel_holds_every_file_of_the_package(dist: Dist) -> None:
    _, names = wheel_metadata(dist)
    in_wheel = {n for n in names if n.startswith("twilio_messaging/")}
    expected = package_files()
    assert {
        "twilio_messaging/ui/templates/workflow.html",
        "twilio_messaging/ui/templates/chart.svg",
    } <= expected
    assert in_wheel == expected, {"missing": expected - in_wheel, "extra": in_wheel - expected}


def test_the_sdist_holds_the_package_its_readme_licence_and_build_file(dist: Dist) -> None:
    with tarfile.open(dist.sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n and tar.getmember(n).isfile()}
    assert package_files() <= names, package_files() - names
    assert {"README.md", "LICENSE", "pyproject.toml"} <= names


def test_metadata_has_version_readme_licence_classifiers_and_the_airflow_floor(dist: Dist) -> None:
    metadata, names = wheel_metadata(dist)
    assert metadata["Name"] == PYPROJECT["project"]["name"] == "airflow-provider-twilio-messaging"
    assert metadata["Version"] == twilio_messaging.__version__
    assert (
        dist.wheel.name
        == f"airflow_provider_twilio_messaging-{twilio_messaging.__version__}-py3-none-any.whl"
    )
    assert metadata["License-Expression"] == "Apache-2.0"
    [licence] = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
    with zipfile.ZipFile(dist.wheel) as zf:
        assert zf.read(licence).decode() == (PLUGINS / "LICENSE").read_text()
    assert "Apache License" in (PLUGINS / "LICENSE").read_text()[:200]
    assert metadata["Description-Content-Type"] == "text/markdown"
    assert metadata.get_payload().strip() == (PLUGINS / "README.md").read_text().strip()
    classifiers = metadata.get_all("Classifier") or []
    assert {"Framework :: Apache Airflow", "Framework :: Apache Airflow :: Provider"} <= set(classifiers)
    assert metadata["Requires-Python"] == ">=3.11"
    requires = metadata.get_all("Requires-Dist") or []
    assert f"apache-airflow>={MIN_AIRFLOW_VERSION}" in requires, requires
    assert any(r.startswith("apache-airflow-providers-http") for r in requires), requires


def test_entry_points_register_the_provider_and_the_plugin(dist: Dist) -> None:
    with zipfile.ZipFile(dist.wheel) as zf:
        [name] = [n for n in zf.namelist() if n.endswith(".dist-info/entry_points.txt")]
        text = zf.read(name).decode()
    assert (
        "[apache_airflow_provider]\nprovider_info = twilio_messaging.get_provider_info:get_provider_info"
        in text
    )
    assert "[airflow.plugins]\ntwilio_messages = twilio_messaging.plugin:TwilioMessagesPlugin" in text
    from twilio_messaging.plugin import TwilioMessagesPlugin

    assert TwilioMessagesPlugin.name == "twilio_messages"


def test_the_plugin_is_registered_once_in_this_projects_dev_setup() -> None:
    """The editable install's entry point is the only registration: nothing in plugins/ registers it again."""
    listing = [sys.executable, "-m", "airflow", "plugins", "-o", "json"]
    proc = subprocess.run(listing, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    plugins = json_listing(proc.stdout)
    assert [p["name"] for p in plugins].count("twilio_messages") == 1, plugins
    assert "group='airflow.plugins'" in next(p["source"] for p in plugins if p["name"] == "twilio_messages")
    # A second registration is skipped and reported as a plugin import error, which the listing omits.
    errors = "from airflow import plugins_manager as m; print(m.get_import_errors())"
    proc = subprocess.run([sys.executable, "-c", errors], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "{}", proc.stdout
    assert not list(PLUGINS.glob("*.py")), "a plugin file in the plugins folder would register it twice"
    assert not list(PLUGINS.glob("*.egg-info")), "metadata in the plugins folder: rm -r plugins/*.egg-info"


def test_the_package_refuses_an_airflow_older_than_its_floor_with_the_reason() -> None:
    with pytest.raises(AirflowTooOld, match=r"needs Apache Airflow 3\.2\.0 or newer, found 3\.1\.8"):
        check_airflow_version("3.1.8")
    for version in (MIN_AIRFLOW_VERSION, f"{MIN_AIRFLOW_VERSION}rc1", "3.3.2", "4.0.0"):
        check_airflow_version(version)


def test_the_floor_is_said_once_in_the_metadata_and_once_in_the_check() -> None:
    [requirement] = [r for r in PYPROJECT["project"]["dependencies"] if re.match(r"apache-airflow[<>=]", r)]
    assert requirement == f"apache-airflow>={version_compat.MIN_AIRFLOW_VERSION}"
    assert PYPROJECT["project"]["dynamic"] == ["version"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "twilio_messaging.__version__"}


def test_the_package_readme_example_is_a_tested_dag_file() -> None:
    readme = (PLUGINS / "README.md").read_text()
    [code] = re.findall(r"```python\n(.*?)\n```", readme, re.S)
    assert code in (REPO / "dags" / "example_twilio_message_status.py").read_text()


def test_the_install_commands_name_the_wheel_make_dist_builds(dist: Dist) -> None:
    for page in (REPO / "README.md", PLUGINS / "README.md", REPO / "docs" / "deploy.md"):
        named = set(re.findall(r"airflow_provider_twilio_messaging-[^\s/]+?\.whl", page.read_text()))
        assert named == {dist.wheel.name}, (page.name, named)

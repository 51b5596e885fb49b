"""Static checks of the docker-compose stack (no Docker engine runs in CI).

The file is validated against the Compose specification's JSON schema (shipped in ./compose-spec with its
licence), then checked for what the stack needs to work: the services, their wiring, the commands (parsed by
Airflow's own CLI parser), the health checks, the Twilio connection and the variables that .env must provide.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

from sandbox import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yaml"
ENV_EXAMPLE = REPO / ".env.example"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
SCHEMA_FILE = Path(__file__).parent / "compose-spec" / "compose-spec.json"

AIRFLOW_VERSION = "3.3.2"
APISERVER = "airflow-apiserver"
INIT = "airflow-init"
WORKER = "airflow-worker"
SANDBOX = "twilio-sandbox"
SANDBOX_PROFILE = "sandbox"
POOL = "twilio_api"
AIRFLOW_LONG_RUNNING = (APISERVER, "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer", WORKER)
AIRFLOW_SERVICES = (*AIRFLOW_LONG_RUNNING, INIT)
LONG_RUNNING = (*AIRFLOW_LONG_RUNNING, "postgres", "redis", SANDBOX)
TWILIO_ENV = {"TWILIO_ACCOUNT_SID": "AC" + "1" * 32, "TWILIO_AUTH_TOKEN": "t0ken"}


# --- Compose variable interpolation (https://github.com/compose-spec/compose-spec/blob/main/spec.md) --------

_VARIABLE = re.compile(r"\$(?:(?P<escaped>\$)|\{(?P<braced>[^}]*)\}|(?P<named>[A-Za-z_][A-Za-z0-9_]*))")
_BRACED = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:-|-|:\?|\?|:\+|\+)(?P<arg>.*))?", re.S)


class MissingVariable(Exception):
    """A `${VAR:?message}` variable is unset (or empty), as `docker compose` would report it."""


def _parse_braced(body: str) -> tuple[str, str | None, str]:
    match = _BRACED.fullmatch(body)
    if match is None or "$" in (match["arg"] or ""):
        raise ValueError(f"unsupported interpolation '${{{body}}}' (nested or malformed)")
    return match["name"], match["op"], match["arg"] or ""


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """Substitute variables in one string exactly as Compose does for the forms this project uses."""

    def substitute(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        if match["named"]:
            return env.get(match["named"], "")
        name, op, arg = _parse_braced(match["braced"])
        current = env.get(name)
        if op is None:
            return current or ""
        if op == ":-":
            return current if current else arg
        if op == "-":
            return current if current is not None else arg
        if op in (":?", "?"):
            if current is None or (op == ":?" and not current):
                raise MissingVariable(f"{name}: {arg}")
            return current
        # ":+" / "+": the alternative value when set.
        return arg if (current if op == ":+" else current is not None) else ""

    return _VARIABLE.sub(substitute, value)


def interpolate_tree(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, dict):
        return {key: interpolate_tree(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolate_tree(item, env) for item in node]
    return node


def strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings(item)


def variables_used(document: Any) -> dict[str, str | None]:
    """Every variable the file reads, mapped to its operator (None for plain `${VAR}` / `$VAR`)."""
    used: dict[str, str | None] = {}
    for text in strings(document):
        for match in _VARIABLE.finditer(text):
            if match["named"]:
                used.setdefault(match["named"], None)
            elif match["braced"] is not None:
                name, op, _ = _parse_braced(match["braced"])
                if used.get(name) in (None, "+", ":+"):
                    used[name] = op
    return used


def read_env_file(path: Path) -> dict[str, str]:
    """Active KEY=VALUE lines of a dotenv file (comments and blank lines skipped)."""
    env: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not a KEY=VALUE line: {line!r}"
        env[key.strip()] = value.strip().strip("'\"")
    return env


# --- Fixtures -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    # safe_load resolves anchors and `<<` merge keys the way Compose's YAML parser does.
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    return read_env_file(ENV_EXAMPLE)


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA_FILE.read_text())
    # The schema declares "https://json-schema.org/draft-07/schema", a spelling jsonschema does not map to
    # Draft 7 (it would silently fall back to the latest draft), so pick the validator from the declaration.
    assert schema["$schema"].rstrip("#").endswith("//json-schema.org/draft-07/schema"), schema["$schema"]
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


@pytest.fixture(scope="module")
def airflow_cli():
    from airflow.cli.cli_parser import get_parser

    return get_parser()


def parse_airflow(parser, argv: list[str]):
    """Parse an Airflow command line with Airflow's own parser; a typo fails the test with its message."""
    if argv and argv[0] == "airflow":
        argv = argv[1:]
    try:
        return parser.parse_args(argv)
    except SystemExit as exc:
        pytest.fail(f"`airflow {' '.join(argv)}` is not a valid Airflow {AIRFLOW_VERSION} command ({exc})")


def env_of(service: dict[str, Any]) -> dict[str, str]:
    environment = service.get("environment", {})
    assert isinstance(environment, dict), "use the mapping form of `environment` (needed for the merges)"
    return {key: str(value) for key, value in environment.items()}


def healthcheck_command(service: dict[str, Any]) -> str:
    test = service["healthcheck"]["test"]
    if isinstance(test, str):
        return test
    assert test[0] in ("CMD", "CMD-SHELL"), test
    return " ".join(test[1:]) if test[0] == "CMD" else test[1]


# --- The Compose specification ------------------------------------------------------------------------------


def test_schema_is_the_shipped_draft7_compose_spec(validator) -> None:
    assert isinstance(validator, jsonschema.Draft7Validator)
    assert validator.schema["title"] == "Compose Specification"
    for name in ("LICENSE", "SOURCE.md"):
        assert (SCHEMA_FILE.parent / name).is_file(), f"ship {name} beside the schema"


def test_compose_file_matches_the_compose_spec(compose, validator) -> None:
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(compose)]
    assert errors == []


def test_interpolated_compose_file_matches_the_compose_spec(compose, validator, env_example) -> None:
    rendered = interpolate_tree(compose, env_example)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(rendered)]
    assert errors == []


def _set(path: tuple[str, ...], value: Any):
    def mutate(document: dict[str, Any]) -> None:
        node = document
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return mutate


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(_set(("services", "redis", "healthchek"), {"test": ["CMD", "true"]}), id="unknown-key"),
        pytest.param(_set(("services", WORKER, "restart"), 5), id="wrong-type"),
        pytest.param(_set(("services", APISERVER, "ports"), "8080:8080"), id="ports-not-a-list"),
        pytest.param(
            _set(("services", APISERVER, "depends_on", INIT, "condition"), "service_ready"),
            id="bad-condition",
        ),
        pytest.param(_set(("service",), {}), id="unknown-top-level-key"),
        pytest.param(_set(("services", SANDBOX, "profiles"), SANDBOX_PROFILE), id="profiles-not-a-list"),
        pytest.param(
            _set(("services", INIT, "depends_on"), {"postgres": {"condition": 1}}), id="condition-int"
        ),
    ],
)
def test_a_broken_compose_file_fails_validation(compose, validator, mutate) -> None:
    broken = copy.deepcopy(compose)
    mutate(broken)
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(broken)


def _compose_client() -> list[str] | None:
    """`docker compose` (v2) if installed, else the standalone `docker-compose`; neither needs an engine."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    standalone = shutil.which("docker-compose")
    return [standalone] if standalone else None


def test_a_real_compose_client_renders_the_file_like_these_tests(compose, env_example, tmp_path) -> None:
    """Cross-check the schema and the interpolation above with a real Compose implementation."""
    client = _compose_client()
    if client is None:
        pytest.skip(
            "no Compose client: install the docker-compose-plugin (Docker's apt repository) or Debian's "
            "docker-compose package to also check the file with `docker compose config`"
        )
    argv = [*client, "-f", str(COMPOSE_FILE), "--env-file", str(ENV_EXAMPLE), "--profile", SANDBOX_PROFILE]
    # Only .env.example may fill the variables: not TWILIO_* settings of the shell (or of the test session).
    hermetic = {k: v for k, v in os.environ.items() if not k.startswith("TWILIO_")}
    result = subprocess.run([*argv, "config"], capture_output=True, text=True, cwd=REPO, env=hermetic)
    assert result.returncode == 0, result.stderr
    rendered = yaml.safe_load(result.stdout)["services"]
    ours = interpolate_tree(compose, env_example)["services"]
    assert set(rendered) == set(ours)
    for name in AIRFLOW_SERVICES:
        theirs = {key: str(value) for key, value in rendered[name]["environment"].items()}
        assert theirs == env_of(ours[name]), name
    # Without the Twilio credentials Compose must refuse to start, naming the variable.
    empty_env = tmp_path / "empty.env"
    empty_env.write_text("")
    bare = subprocess.run(
        [*client, "-f", str(COMPOSE_FILE), "--env-file", str(empty_env), "config", "-q"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={"PATH": os.environ["PATH"]},
    )
    assert bare.returncode != 0 and "TWILIO_ACCOUNT_SID" in bare.stderr, bare.stderr


# --- Services and wiring ------------------------------------------------------------------------------------


def test_the_stack_has_every_service(compose, services) -> None:
    assert "x-airflow-common" in compose
    assert set(LONG_RUNNING) | {INIT} <= set(services)
    assert services["postgres"]["image"] == "postgres:16"
    assert services["redis"]["image"] == "redis:7.2-bookworm"


def test_airflow_services_share_the_common_block(compose, services) -> None:
    common = compose["x-airflow-common"]
    for name in AIRFLOW_SERVICES:
        service = services[name]
        assert service["build"] == common["build"] == "."
        assert service["image"] == common["image"]
        # The merged mapping must carry every common variable (a service that overrides `environment`
        # without `<<: *airflow-common-env` would lose them).
        assert common["environment"].items() <= service["environment"].items(), name


def dockerfile_stages() -> list[list[str]]:
    """The Dockerfile's instructions (continuations joined, comments dropped), one list per build stage."""
    text = DOCKERFILE.read_text()
    instructions = [line.strip() for line in re.sub(r"\\\n", " ", text).splitlines()]
    stages: list[list[str]] = []
    for line in instructions:
        if line and not line.startswith("#"):
            if line.startswith("FROM "):
                stages.append([])
            stages[-1].append(line)
    return stages


def test_dockerfile_extends_the_official_image_with_our_pins() -> None:
    *_, instructions = dockerfile_stages()
    assert instructions[0] == f"FROM apache/airflow:{AIRFLOW_VERSION}"
    pinned = (REPO / "requirements.txt").read_text()
    assert f"apache-airflow=={AIRFLOW_VERSION}" in pinned, "the image and requirements.txt disagree"
    installs = [line for line in instructions if line.startswith("RUN") and "pip install" in line]
    assert len(installs) == 1, installs
    argv = shlex.split(installs[0])
    assert f"apache-airflow=={AIRFLOW_VERSION}" in argv
    requirement_files = {Path(argv[i + 1]).name for i, arg in enumerate(argv) if arg == "-r"}
    assert requirement_files == {"requirements.txt", "requirements-celery.txt"}
    assert Path(argv[argv.index("-c") + 1]).name == "constraints.txt"
    copied = " ".join(line for line in instructions if line.startswith("COPY"))
    for name in ("requirements.txt", "requirements-celery.txt", "constraints.txt"):
        assert name in copied and (REPO / name).is_file(), name
    compose = yaml.safe_load(COMPOSE_FILE.read_text())
    for name, service in compose["services"].items():
        assert "_PIP_ADDITIONAL_REQUIREMENTS" not in service.get("environment", {}), name


def test_the_image_installs_the_built_wheel_not_the_checkout() -> None:
    """Stage 1 builds the wheel from plugins/ as `make dist` does; the image pip-installs that wheel."""
    builder, image = dockerfile_stages()
    assert builder[0] == f"FROM apache/airflow:{AIRFLOW_VERSION} AS provider-wheel"
    [copy_source] = [line for line in builder if line.startswith("COPY")]
    source, target = shlex.split(copy_source)[-2:]
    assert source == "plugins/" and (REPO / "plugins" / "pyproject.toml").is_file()
    [build] = [line for line in builder if line.startswith("RUN")]
    dev_requirements = (REPO / "requirements-dev.txt").read_text().split()
    pinned_build = next(r for r in dev_requirements if r.startswith("build=="))
    assert f'"{pinned_build}"' in build, "the image builds with another `build` than make dist"
    assert f"python -m build --outdir /tmp/dist {target.rstrip('/')}" in build

    [copy_wheel] = [line for line in image if line.startswith("COPY --from=provider-wheel")]
    wheel_dir = shlex.split(copy_wheel)[-1]
    [install] = [line for line in image if line.startswith("RUN") and "pip install" in line]
    argv = shlex.split(install)
    project = tomllib.loads((REPO / "plugins" / "pyproject.toml").read_text())["project"]["name"]
    wheel = f"{wheel_dir.rstrip('/')}/{project.replace('-', '_')}-*.whl"
    assert wheel in argv, argv
    assert "-e" not in argv and "--editable" not in argv
    assert not any("plugins" in line for line in image if line.startswith("COPY")), "no checkout in the image"


def test_dockerignore_keeps_secrets_out_of_the_build_context() -> None:
    patterns = {line.strip() for line in DOCKERIGNORE.read_text().splitlines()}
    assert {".env", ".venv", ".git"} <= patterns


def test_every_airflow_service_runs_the_celery_executor(services) -> None:
    for name in AIRFLOW_SERVICES:
        assert env_of(services[name])["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name


def test_execution_api_url_points_at_the_api_server(services) -> None:
    apiserver = services[APISERVER]
    container_ports = {str(port).rsplit(":", 1)[-1] for port in apiserver["ports"]}
    for name in AIRFLOW_SERVICES:
        url = urlsplit(env_of(services[name])["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
        assert url.scheme == "http" and url.hostname == APISERVER, name
        assert str(url.port) in container_ports, f"{name}: the api-server does not listen on {url.port}"
        assert url.path == "/execution/", name
    assert ":8080/" in healthcheck_command(apiserver) and "8080" in container_ports


def test_database_broker_and_result_backend_point_at_the_services(services) -> None:
    postgres = env_of(services["postgres"])
    for name in AIRFLOW_SERVICES:
        env = env_of(services[name])
        for key, scheme in (
            ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "postgresql+psycopg2"),
            ("AIRFLOW__CELERY__RESULT_BACKEND", "db+postgresql+psycopg2"),
        ):
            url = urlsplit(env[key])
            assert url.scheme == scheme and url.hostname == "postgres", (name, key)
            assert (url.username, url.password) == (postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"])
            assert url.path == f"/{postgres['POSTGRES_DB']}", (name, key)
        broker = urlsplit(env["AIRFLOW__CELERY__BROKER_URL"])
        assert broker.scheme == "redis" and broker.hostname == "redis" and broker.port == 6379, name
        assert 6379 in services["redis"]["expose"] or "6379" in services["redis"]["expose"]


def test_project_folders_are_mounted_on_every_airflow_service(services) -> None:
    for name in AIRFLOW_SERVICES:
        mounts = {}
        for volume in services[name]["volumes"]:
            source, target = interpolate(volume, {}).split(":")[:2]
            mounts[target] = source
        for folder in ("dags", "plugins", "include", "logs", "config", "storage"):
            assert mounts.get(f"/opt/airflow/{folder}") == f"./{folder}", (name, folder)
        for folder in ("dags", "plugins", "include"):
            assert (REPO / folder).is_dir(), folder
        storage = interpolate(env_of(services[name])["TWILIO_STORAGE"], {})
        assert storage == "file:///opt/airflow/storage", "batch run data must be on the mount all share"
        assert services[name]["user"] == ("0:0" if name == INIT else "${AIRFLOW_UID:-50000}:0"), name


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("postgres", "pg_isready"),
        ("redis", "redis-cli ping"),
        (APISERVER, "curl --fail http://localhost:8080/api/v2/version"),
        ("airflow-scheduler", "curl --fail http://localhost:8974/health"),
        ("airflow-dag-processor", "airflow jobs check --job-type DagProcessorJob"),
        ("airflow-triggerer", "airflow jobs check --job-type TriggererJob"),
        (WORKER, "inspect ping"),
        (SANDBOX, "/_sandbox/health"),
    ],
)
def test_every_long_running_service_has_a_health_check(services, name, expected) -> None:
    service = services[name]
    assert not service["healthcheck"].get("disable", False)
    assert expected in healthcheck_command(service)
    assert service.get("restart") == "always"


def test_health_check_commands_are_real_airflow_commands(services, airflow_cli) -> None:
    for name in ("airflow-dag-processor", "airflow-triggerer"):
        argv = shlex.split(interpolate(healthcheck_command(services[name]), {}))
        args = parse_airflow(airflow_cli, argv)
        assert args.job_type == {"airflow-dag-processor": "DagProcessorJob"}.get(name, "TriggererJob")
    assert env_of(services["airflow-scheduler"])["AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK"] == "true"
    worker_check = healthcheck_command(services[WORKER])
    assert "--app airflow.providers.celery.executors.celery_executor.app" in worker_check
    from airflow.providers.celery.executors.celery_executor import app  # noqa: F401 - the path must import


def test_service_commands_are_real_airflow_commands(services, airflow_cli) -> None:
    expected = {
        APISERVER: "api_server",
        "airflow-scheduler": "scheduler",
        "airflow-dag-processor": "dag_processor",
        "airflow-triggerer": "triggerer",
        WORKER: "worker",
    }
    for name, func in expected.items():
        command = services[name]["command"]
        argv = shlex.split(command) if isinstance(command, str) else command
        assert parse_airflow(airflow_cli, argv).func.__name__ == func, name


def test_services_wait_for_their_dependencies(services) -> None:
    for name in AIRFLOW_SERVICES:
        depends = services[name]["depends_on"]
        assert depends["postgres"]["condition"] == "service_healthy", name
        assert depends["redis"]["condition"] == "service_healthy", name
        if name != INIT:
            assert depends[INIT]["condition"] == "service_completed_successfully", name
    assert services[WORKER]["depends_on"][APISERVER]["condition"] == "service_healthy"
    for name, service in services.items():
        for dependency, spec in service.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            if spec["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], f"{dependency} has no health check"
            assert "profiles" not in services[dependency], f"{name} must not need a profiled service"


def test_worker_can_be_scaled(services) -> None:
    worker = services[WORKER]
    assert "container_name" not in worker and "hostname" not in worker
    for port in worker.get("ports", []):
        assert ":" not in str(port), f"fixed host port {port} stops `--scale {WORKER}=N`"
    assert env_of(worker)["DUMB_INIT_SETSID"] == "0"
    assert int(interpolate(env_of(worker)["AIRFLOW__CELERY__WORKER_CONCURRENCY"], {})) > 0


def test_auth_manager_login_is_known(services) -> None:
    common = env_of(services[APISERVER])
    assert common["AIRFLOW__CORE__AUTH_MANAGER"].endswith(".SimpleAuthManager")
    users = interpolate(common["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"], {})
    assert users == "airflow:admin"
    passwords_file = common["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]
    assert passwords_file.startswith("/opt/airflow/config/"), "must be on the shared config volume"
    init = services[INIT]
    script = init["command"][-1]
    assert "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE" in script
    assert {"_AIRFLOW_WWW_USER_USERNAME", "_AIRFLOW_WWW_USER_PASSWORD"} <= set(env_of(init))


# --- airflow-init -------------------------------------------------------------------------------------------


def _init_commands(services) -> list[list[str]]:
    """The init script's Airflow invocations, as argv lists (continuation lines joined)."""
    init = services[INIT]
    # Compose interpolates first (turning $$ into $), then bash expands the container's environment.
    script = interpolate(init["command"][-1], {})
    script = interpolate(script, {k: interpolate(v, TWILIO_ENV) for k, v in env_of(init).items()})
    script = script.replace("\\\n", " ")
    commands = []
    for line in script.splitlines():
        argv = shlex.split(line, comments=True)
        while argv and "=" in argv[0]:  # leading VAR=value assignments
            argv = argv[1:]
        if argv[:2] == ["/entrypoint", "airflow"]:
            redirect = next((i for i, arg in enumerate(argv) if arg[:1] in (">", "|", "&")), len(argv))
            commands.append(argv[1:redirect])
    return commands


def test_init_migrates_the_database_and_creates_the_pool(services, airflow_cli) -> None:
    init = services[INIT]
    assert init["entrypoint"] == "/bin/bash" and init["command"][0] == "-c"
    assert env_of(init)["_AIRFLOW_DB_MIGRATE"] == "true"
    commands = _init_commands(services)
    pool_sets = [argv for argv in commands if argv[1:3] == ["pools", "set"]]
    assert len(pool_sets) == 1, commands
    args = parse_airflow(airflow_cli, pool_sets[0])
    assert args.pool == POOL
    slots_default = interpolate(env_of(init)["TWILIO_API_POOL_SLOTS"], {})
    assert int(args.slots) == int(slots_default) == 50
    assert "$${TWILIO_API_POOL_SLOTS}" in COMPOSE_FILE.read_text(), "slots must come from the environment"
    for argv in commands:
        parse_airflow(airflow_cli, argv)


def test_pool_fits_the_batch_dag(services, env_example, monkeypatch) -> None:
    """The init pool is the one the batch DAG uses, and it can hold a chunk task's slots."""
    from twilio_messaging.settings import BatchSettings

    init_env, worker_env = env_of(services[INIT]), env_of(services[WORKER])
    for env in ({}, env_example):
        monkeypatch.delenv("TWILIO_BATCH_POOL", raising=False)
        monkeypatch.setenv(
            "TWILIO_BATCH_CONCURRENCY", interpolate(worker_env["TWILIO_BATCH_CONCURRENCY"], env)
        )
        settings = BatchSettings.from_env()
        assert settings.pool == POOL
        slots = int(interpolate(init_env["TWILIO_API_POOL_SLOTS"], env))
        assert slots >= settings.concurrency, "a chunk task needs more slots than the pool has: it never runs"
    for name in (*AIRFLOW_LONG_RUNNING, INIT):
        assert "TWILIO_BATCH_CONCURRENCY" in env_of(services[name]), name


def test_the_trigger_forms_from_default_reaches_every_airflow_service(services, env_example) -> None:
    """TWILIO_DEFAULT_FROM (the workflow form's `from`) is passed through, and .env.example's is valid."""
    from twilio_messaging.validation import validate_message

    for name in (*AIRFLOW_LONG_RUNNING, INIT):
        value = interpolate(env_of(services[name])["TWILIO_DEFAULT_FROM"], env_example)
        assert value == env_example["TWILIO_DEFAULT_FROM"], name
    validate_message(to="+15551234567", from_=env_example["TWILIO_DEFAULT_FROM"], body="x")


# --- The Twilio sandbox -------------------------------------------------------------------------------------


def test_sandbox_runs_under_its_profile_from_the_same_image(services) -> None:
    sandbox = services[SANDBOX]
    assert sandbox["profiles"] == [SANDBOX_PROFILE]
    assert sandbox["image"] == services[APISERVER]["image"] and sandbox["build"] == "."
    assert sandbox["command"][:3] == ["python", "-m", "sandbox"]
    argv = sandbox["command"]
    assert argv[argv.index("--host") + 1] == "0.0.0.0"
    mounts = [interpolate(volume, {}).split(":") for volume in sandbox["volumes"]]
    assert ["./sandbox", "/opt/airflow/sandbox", "ro"] in mounts
    assert sandbox["working_dir"] == "/opt/airflow"
    for name, service in services.items():
        if name != SANDBOX:
            assert "profiles" not in service, f"{name} must start without a profile"


def test_env_example_points_the_connection_at_the_sandbox(services, env_example) -> None:
    argv = services[SANDBOX]["command"]
    assert env_example["TWILIO_API_HOST"] == SANDBOX
    assert env_example["TWILIO_API_PORT"] == argv[argv.index("--port") + 1]
    assert env_example["TWILIO_API_SCHEMA"] == "http"
    # The sandbox runs with its built-in test account, so .env.example must carry exactly that one.
    assert "--auth-token" not in argv and "--account-sid" not in argv
    assert (env_example["TWILIO_ACCOUNT_SID"], env_example["TWILIO_AUTH_TOKEN"]) == (
        DEFAULT_ACCOUNT_SID,
        DEFAULT_AUTH_TOKEN,
    )


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_sandbox_command_serves_its_health_check(services) -> None:
    """Run the service's own command (on loopback and a free port) and call its health-check URL."""
    sandbox = services[SANDBOX]
    argv = list(sandbox["command"])
    port = _free_port()
    argv[argv.index("--host") + 1] = "127.0.0.1"
    argv[argv.index("--port") + 1] = str(port)
    health = healthcheck_command(sandbox).split()[-1].replace("localhost:8099", f"127.0.0.1:{port}")
    process = subprocess.Popen([sys.executable, *argv[1:]], cwd=REPO, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(health, timeout=2) as response:
                    assert response.status == 200
                    assert json.load(response) == {"status": "ok"}
                    break
            except OSError:
                assert process.poll() is None, f"`{' '.join(argv)}` exited with {process.returncode}"
                assert time.monotonic() < deadline, f"{health} did not answer within 20 s"
                time.sleep(0.2)
    finally:
        process.terminate()
        process.wait(timeout=10)


# --- The twilio_default connection and the variables --------------------------------------------------------


def _conn(services, env: Mapping[str, str]) -> dict[str, Any]:
    raw = interpolate(env_of(services[WORKER])["AIRFLOW_CONN_TWILIO_DEFAULT"], env)
    return json.loads(raw)


def test_twilio_connection_defaults_to_live_twilio_over_https(services) -> None:
    from airflow.models.connection import Connection

    env = TWILIO_ENV
    conn = _conn(services, env)
    assert conn == {
        "conn_type": "http",
        "host": "api.twilio.com",
        "schema": "https",
        "port": None,
        "login": env["TWILIO_ACCOUNT_SID"],
        "password": env["TWILIO_AUTH_TOKEN"],
    }
    airflow_conn = Connection.from_json(json.dumps(conn), conn_id="twilio_default")
    assert (airflow_conn.conn_type, airflow_conn.schema, airflow_conn.host) == (
        "http",
        "https",
        "api.twilio.com",
    )


def test_twilio_connection_follows_env_example_to_the_sandbox(services, env_example) -> None:
    conn = _conn(services, env_example)
    assert (conn["host"], conn["schema"], conn["port"]) == (SANDBOX, "http", 8099)
    assert (conn["login"], conn["password"]) == (DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN)


@pytest.mark.parametrize("missing", ["TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN"])
def test_twilio_credentials_are_required(services, missing) -> None:
    env = {**TWILIO_ENV, missing: ""}
    with pytest.raises(MissingVariable, match=missing):
        _conn(services, env)


def test_no_twilio_secret_is_written_into_the_compose_file(services) -> None:
    text = COMPOSE_FILE.read_text()
    assert not re.search(r"\b(AC|SK)[0-9a-fA-F]{32}\b", text), "a literal Account/API key SID"
    assert DEFAULT_AUTH_TOKEN not in text
    conn = _conn(services, {"TWILIO_ACCOUNT_SID": "sid-from-env", "TWILIO_AUTH_TOKEN": "token-from-env"})
    assert (conn["login"], conn["password"]) == ("sid-from-env", "token-from-env"), "must be pure ${VAR}s"
    for name, service in services.items():
        for key, value in env_of(service).items() if "environment" in service else ():
            if key.startswith("TWILIO_") and re.search(r"TOKEN|SECRET|SID", key):
                assert re.fullmatch(r"\$\{[A-Z_]+(:?[?-][^}]*)?\}", value), (name, key)


def test_every_variable_has_a_default_or_an_env_example_entry(compose, env_example) -> None:
    used = variables_used(compose)
    assert {"AIRFLOW_UID", "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_API_POOL_SLOTS"} <= set(used)
    undocumented = [name for name, op in used.items() if op not in (":-", "-") and name not in env_example]
    assert undocumented == []
    required_but_empty = [n for n, op in used.items() if op in (":?", "?") and not env_example.get(n)]
    assert required_but_empty == []
    unused = sorted(set(env_example) - set(used))
    assert unused == [], ".env.example documents settings that docker-compose.yaml never reads"


def test_interpolation_helper_follows_compose_rules() -> None:
    env = {"SET": "v", "EMPTY": ""}
    assert interpolate("$$HOME ${SET} $SET ${UNSET:-d} ${EMPTY:-d} ${EMPTY-d} ${SET:+alt}", env) == (
        "$HOME v v d d  alt"
    )
    with pytest.raises(MissingVariable, match="EMPTY: needed"):
        interpolate("${EMPTY:?needed}", env)
    assert variables_used({"a": ["$${NOT_A_VAR} ${A:-x}", {"b": "$B ${C:?e}"}]}) == {
        "A": ":-",
        "B": None,
        "C": ":?",
    }

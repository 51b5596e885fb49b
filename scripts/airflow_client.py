"""A small client for the Airflow 3 REST API (v2): JWT auth, DAGs, runs, task instances, XComs, pools.

``wait_for_run`` polls a run to its end and records every task state it saw, which the demo prints as
progress and the end-to-end tests check (e.g. that checkStatus went through ``up_for_reschedule``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

TERMINAL_RUN_STATES = frozenset({"success", "failed"})


class APIError(RuntimeError):
    """A non-2xx answer from the Airflow REST API."""

    def __init__(self, method: str, path: str, status_code: int, detail: Any) -> None:
        self.method, self.path, self.status_code, self.detail = method, path, status_code, detail
        super().__init__(f"{method} {path} -> HTTP {status_code}: {detail}")


@dataclass
class Observation:
    """One task instance state seen while polling a run."""

    at: float
    task_id: str
    state: str | None
    try_number: int


@dataclass
class RunResult:
    """What a finished (or timed-out) run looked like."""

    dag_id: str
    run_id: str
    state: str
    tasks: dict[str, dict[str, Any]]
    observations: list[Observation] = field(default_factory=list)
    seconds: float = 0.0

    def task_state(self, task_id: str) -> str | None:
        return self.tasks.get(task_id, {}).get("state")

    def try_number(self, task_id: str) -> int:
        return int(self.tasks.get(task_id, {}).get("try_number") or 0)

    def states_seen(self, task_id: str) -> list[tuple[str | None, int]]:
        """Distinct consecutive (state, try_number) pairs observed for ``task_id``, in order."""
        seen: list[tuple[str | None, int]] = []
        for obs in self.observations:
            if obs.task_id == task_id and (not seen or seen[-1] != (obs.state, obs.try_number)):
                seen.append((obs.state, obs.try_number))
        return seen


class AirflowClient:
    """Airflow REST API v2 with a JWT from ``/auth/token`` (refreshed once on 401)."""

    def __init__(self, base_url: str, username: str, password: str, *, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._username, self._password = username, password
        # trust_env=False: never route loopback calls through a proxy from the environment.
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, trust_env=False)
        self._token: str | None = None

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AirflowClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- auth and plumbing ------------------------------------------------------------------------------
    def token(self) -> str:
        """A fresh access token for the configured user."""
        resp = self._http.post("/auth/token", json={"username": self._username, "password": self._password})
        if resp.status_code not in (200, 201):
            raise APIError("POST", "/auth/token", resp.status_code, _detail(resp))
        self._token = resp.json()["access_token"]
        return self._token

    def request(self, method: str, path: str, *, ok: Iterable[int] = (200,), **kwargs: Any) -> httpx.Response:
        """Send an authenticated request; raise APIError unless the status is in ``ok``."""
        if self._token is None:
            self.token()
        resp = self._http.request(method, path, headers={"Authorization": f"Bearer {self._token}"}, **kwargs)
        if resp.status_code == 401:
            self.token()
            resp = self._http.request(
                method, path, headers={"Authorization": f"Bearer {self._token}"}, **kwargs
            )
        if resp.status_code not in tuple(ok):
            raise APIError(method, path, resp.status_code, _detail(resp))
        return resp

    def health(self) -> dict[str, Any]:
        resp = self._http.get("/api/v2/monitor/health")
        resp.raise_for_status()
        return resp.json()

    # -- DAGs and runs ----------------------------------------------------------------------------------
    def get_dag(self, dag_id: str) -> dict[str, Any]:
        return self.request("GET", f"/api/v2/dags/{dag_id}").json()

    def dag_details(self, dag_id: str) -> dict[str, Any]:
        return self.request("GET", f"/api/v2/dags/{dag_id}/details").json()

    def import_errors(self) -> list[dict[str, Any]]:
        return self.request("GET", "/api/v2/importErrors").json().get("import_errors", [])

    def unpause(self, dag_id: str) -> dict[str, Any]:
        return self.request("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False}).json()

    def trigger(self, dag_id: str, conf: Mapping[str, Any], *, run_id: str | None = None) -> dict[str, Any]:
        """Trigger a run now. ``logical_date`` must be present (null) or Airflow answers 422."""
        body: dict[str, Any] = {"logical_date": None, "conf": dict(conf)}
        if run_id:
            body["dag_run_id"] = run_id
        return self.request("POST", f"/api/v2/dags/{dag_id}/dagRuns", json=body).json()

    def get_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}").json()

    def list_runs(self, dag_id: str, *, limit: int = 100) -> list[dict[str, Any]]:
        resp = self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns", params={"limit": limit})
        return resp.json()["dag_runs"]

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances"
        return self.request("GET", path).json()["task_instances"]

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        """The XCom value, or None if the task did not push ``key``."""
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}"
        resp = self.request("GET", path, ok=(200, 404))
        return resp.json().get("value") if resp.status_code == 200 else None

    def xcoms(self, dag_id: str, run_id: str, task_id: str) -> dict[str, Any]:
        """All XComs that ``task_id`` pushed in the run, as {key: value}."""
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries"
        entries = self.request("GET", path).json().get("xcom_entries", [])
        return {entry["key"]: self.xcom(dag_id, run_id, task_id, entry["key"]) for entry in entries}

    def set_pool(self, name: str, slots: int, description: str = "") -> None:
        """Create the pool, or update its slots if it exists (same as ``airflow pools set``)."""
        body = {"name": name, "slots": slots, "description": description, "include_deferred": False}
        resp = self.request("POST", "/api/v2/pools", json=body, ok=(200, 201, 409))
        if resp.status_code == 409:
            self.request("PATCH", f"/api/v2/pools/{name}", json=body)

    def wait_for_run(
        self,
        dag_id: str,
        run_id: str,
        *,
        timeout: float = 300.0,
        interval: float = 0.5,
        on_change: Callable[[float, str, str | None, int], None] | None = None,
    ) -> RunResult:
        """Poll the run and its task instances until the run is success/failed (or ``timeout``).

        Every poll is recorded as an Observation, so callers can check the states a task went through
        (e.g. ``up_for_reschedule``). ``on_change(elapsed, task_id, state, try_number)`` is called for
        each task whose state or try number changed (task_id "<run>" for the run itself).
        """
        start = time.monotonic()
        last: dict[str, tuple[str | None, int]] = {}
        observations: list[Observation] = []
        run_state = "unknown"
        tasks: dict[str, dict[str, Any]] = {}
        while True:
            elapsed = time.monotonic() - start
            run_state = self.get_run(dag_id, run_id)["state"]
            tis = self.task_instances(dag_id, run_id)
            tasks = {ti["task_id"]: ti for ti in tis}
            for ti in tis:
                key = (ti["state"], int(ti.get("try_number") or 0))
                observations.append(Observation(elapsed, ti["task_id"], *key))
                if last.get(ti["task_id"]) != key:
                    last[ti["task_id"]] = key
                    if on_change:
                        on_change(elapsed, ti["task_id"], *key)
            if last.get("<run>") != (run_state, 0):
                last["<run>"] = (run_state, 0)
                if on_change:
                    on_change(elapsed, "<run>", run_state, 0)
            if run_state in TERMINAL_RUN_STATES or elapsed > timeout:
                break
            time.sleep(interval)
        return RunResult(dag_id, run_id, run_state, tasks, observations, time.monotonic() - start)


def _detail(resp: httpx.Response) -> Any:
    try:
        return resp.json().get("detail", resp.json())
    except (ValueError, AttributeError):
        return resp.text[:500]

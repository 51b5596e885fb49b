"""The FastAPI app the plugin mounts on the API server: the Messages tab of every DAG run.

Every route depends on Airflow's own security dependencies: the caller must be an authenticated Airflow
user (the UI's JWT cookie, which the tab's iframe sends, or a Bearer token) whom the auth manager allows
to read the DAG's runs, task instances and XComs. Pages are Jinja2 templates with autoescaping on, so
whatever a run carries (a body such as ``<script>`` or ``{{ 7*7 }}``) is shown as text.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_dag
from fastapi import Depends, FastAPI, HTTPException, Request, status
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, StreamingResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from twilio_messaging import contract
from twilio_messaging.callbacks.receiver import router as status_callback_router
from twilio_messaging.errors import error_info
from twilio_messaging.ui import batch_view, facts, store
from twilio_messaging.ui.masking import mask_number, mask_text
from twilio_messaging.ui.report_table import PAGE_SIZES, SORTABLE, Query, table_page

WORKFLOW_DAG = contract.WORKFLOW_DAG_ID
BATCH_DAG = contract.BATCH_DAG_ID
URL_PREFIX = "/twilio-messages"
RECENT_LIMIT = 50
RECENT_FAILURES_READ = 20  # failed runs without an outcome on the recent page whose task log is read
FINISHED = frozenset({"success", "failed"})
# From a run's tab (<base>/twilio-messages/dags/<dag>/runs/<run>/) back to the Airflow UI's base URL;
# relative, so the links stay right behind a reverse proxy with a path prefix.
UI_ROOT_FROM_TAB = "../../../../../"
UI_ROOT_FROM_RECENT = "../"
STREAM_CHUNK = 1 << 16
TEMPLATES = Path(__file__).parent / "templates"

templates = Environment(
    loader=FileSystemLoader(TEMPLATES), autoescape=True, undefined=StrictUndefined, trim_blocks=True
)
templates.globals.update(mask_number=mask_number, mask_text=mask_text, error_info=error_info)

# What the tab reads of a run: its runs, task instances and XComs, each checked by the auth manager.
RUN_READ = [
    Depends(requires_access_dag("GET", DagAccessEntity.RUN)),
    Depends(requires_access_dag("GET", DagAccessEntity.TASK_INSTANCE)),
    Depends(requires_access_dag("GET", DagAccessEntity.XCOM)),
]

app = FastAPI(
    title="Twilio Messages",
    description="The Messages tab of the Twilio DAG runs (HTML pages and their JSON).",
    docs_url=None,
    redoc_url=None,
)
app.include_router(status_callback_router)  # the one route without Airflow auth: Twilio signs instead


def kind_of_run(dag_id: str, tis: Mapping[str, Any]) -> str:
    """workflow | batch | other, by DAG id first, else by the tasks a run has."""
    if dag_id == WORKFLOW_DAG or {contract.SEND_TASK, contract.CHECK_TASK} <= tis.keys():
        return "workflow"
    if dag_id == BATCH_DAG or {contract.SEND_CHUNK_TASK, contract.SUMMARY_TASK} <= tis.keys():
        return "batch"
    return "other"


def _html(name: str, **context: Any) -> HTMLResponse:
    return HTMLResponse(templates.get_template(name).render(**context))


def run_page(dag_id: str, run_id: str, leaf: str = "") -> str:
    """Airflow's own page of a run (``leaf``: e.g. ``plugin/messages``), relative to the UI's base URL."""
    return f"dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}" + (f"/{leaf}" if leaf else "")


def not_sent_reason(outcome: Mapping[str, Any], error: Any) -> str:
    """Why a workflow run's message was not delivered, without what the Error column already says."""
    detail = str(outcome.get("errorMessage") or "")
    if error is not None:
        # errorMessage is Twilio's own sentence; the Error column shows the code and docs link.
        detail = detail.strip()
        return "" if error.meaning.startswith(detail.rstrip(".")) else mask_text(detail)
    return mask_text(str(outcome.get("reason") or detail))


def run_page_context(run: store.RunRecord) -> dict[str, Any]:
    """What every page of one run gets besides its view: the run, and the way back to Airflow's pages."""
    return {"run": run, "ui_root": UI_ROOT_FROM_TAB, "run_href": run_page(run.dag_id, run.run_id)}


def may_read_logs(user: BaseUser, dag_id: str) -> bool:
    """The auth manager's word on this user reading the DAG's task logs (the tab quotes their errors)."""
    return get_auth_manager().is_authorized_dag(
        method="GET", access_entity=DagAccessEntity.TASK_LOGS, details=DagDetails(id=dag_id), user=user
    )


def _failure(session: SessionDep, run: store.RunRecord, user: BaseUser, missing_outputs: bool) -> Any:
    """The failed task's error, for a finished run that lacks its normal outputs; else None."""
    if run.state not in FINISHED or not missing_outputs:
        return None
    return store.task_failure(session, run.dag_id, run.run_id, read_log=may_read_logs(user, run.dag_id))


def _run_or_404(session: SessionDep, dag_id: str, run_id: str) -> store.RunRecord:
    run = store.load_run(session, dag_id, run_id)
    if run is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"DAG run {run_id!r} of {dag_id!r} not found")
    return run


def _workflow(
    session: SessionDep, run: store.RunRecord, tis: Mapping[str, Any], user: BaseUser
) -> facts.WorkflowView:
    xcoms = store.load_xcoms(session, run.dag_id, run.run_id, facts.XCOM_KEYS)
    timeline = None
    if not any(key == facts.TIMELINE_KEY for _, key in xcoms):
        timeline = store.stored_timeline(run.dag_id, run.run_id)  # the sensor is still polling
    failure = _failure(session, run, user, (facts.OUTCOME_KEY not in xcoms))
    return facts.workflow_view(run.dag_id, run.run_id, run.state, run.conf, tis, xcoms, timeline, failure)


def _running(tis: Mapping[str, Mapping[str, Any]]) -> str:
    busy = [
        f"{task} {', '.join(f'{n} {s}' for s, n in sorted(ti['states'].items()))}"
        for task, ti in tis.items()
        if set(ti["states"]) - {"success", "skipped", "failed", "upstream_failed"}
    ]
    return "; ".join(busy)


def _batch(
    session: SessionDep, run: store.RunRecord, tis: Mapping[str, Any], user: BaseUser
) -> tuple[Any, Any]:
    summary = store.batch_summary(session, run.dag_id, run.run_id)
    failure = _failure(session, run, user, summary is None)
    view = batch_view.batch_view(run.dag_id, run.run_id, run.state, summary, _running(tis), failure)
    return view, summary


def _table(run: store.RunRecord, summary: Mapping[str, Any] | None, params: Mapping[str, str]) -> Any:
    found = store.batch_report(run.dag_id, run.run_id, summary)
    if found is None:
        return None
    path, fmt = found
    total = (summary or {}).get("rows")
    query = Query.parse(params)
    return table_page(path, fmt, query, key=f"{run.dag_id}/{run.run_id}", total=total), fmt


@app.get("/dags/{dag_id}/runs/{run_id}", include_in_schema=False)
def tab_without_slash(run_id: str) -> RedirectResponse:
    # Relative, so it stays right behind a reverse proxy with a path prefix.
    return RedirectResponse(f"{quote(run_id, safe='')}/", status_code=status.HTTP_307_TEMPORARY_REDIRECT)


@app.get("/dags/{dag_id}/runs/{run_id}/", response_class=HTMLResponse, dependencies=RUN_READ)
def run_tab(
    dag_id: str, run_id: str, request: Request, session: SessionDep, user: GetUserDep
) -> HTMLResponse:
    """The Messages tab of one run (the page the UI shows in its iframe)."""
    run = _run_or_404(session, dag_id, run_id)
    tis = store.load_task_states(session, dag_id, run_id)
    kind = kind_of_run(dag_id, tis)
    page_context = run_page_context(run)
    if kind == "workflow":
        return _html("workflow.html", view=_workflow(session, run, tis, user), **page_context)
    if kind == "batch":
        view, summary = _batch(session, run, tis, user)
        params = dict(request.query_params)
        page, fmt = _table(run, summary, params) or (None, "")

        def link(**changes: Any) -> str:
            merged = {**params, **{k: v for k, v in changes.items()}}
            return "?" + urlencode({k: v for k, v in merged.items() if v not in (None, "")})

        return _html(
            "batch.html",
            view=view,
            summary=summary or {},
            page=page,
            link=link,
            params=params,
            sortable=SORTABLE,
            page_sizes=PAGE_SIZES,
            report_format=fmt,
            **page_context,
        )
    return _html("other.html", dag_id=dag_id, run_id=run_id, **page_context)


@app.get("/dags/{dag_id}/runs/{run_id}/facts", dependencies=RUN_READ)
def run_facts(dag_id: str, run_id: str, session: SessionDep, user: GetUserDep) -> JSONResponse:
    """The tab's content as JSON (what a person sees, with the same masking)."""
    run = _run_or_404(session, dag_id, run_id)
    tis = store.load_task_states(session, dag_id, run_id)
    kind = kind_of_run(dag_id, tis)
    if kind == "workflow":
        return JSONResponse({"kind": kind, **dataclasses.asdict(_workflow(session, run, tis, user))})
    if kind == "batch":
        view, _ = _batch(session, run, tis, user)
        return JSONResponse({"kind": kind, **dataclasses.asdict(view)})
    return JSONResponse({"kind": kind, "dag_id": dag_id, "run_id": run_id})


@app.get("/dags/{dag_id}/runs/{run_id}/rows", dependencies=RUN_READ)
def report_rows(dag_id: str, run_id: str, request: Request, session: SessionDep) -> JSONResponse:
    """One page of a batch's per-recipient table: ``page``, ``size``, ``sort``, ``order``, filters."""
    run = _run_or_404(session, dag_id, run_id)
    summary = store.batch_summary(session, dag_id, run_id)
    page, _ = _table(run, summary, dict(request.query_params)) or (None, "")
    if page is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "this run has no report (yet)")
    rows = [{**row, "to": mask_number(row["to"]), "reason": mask_text(row["reason"])} for row in page.rows]
    return JSONResponse(
        {
            "rows": rows,
            "total": page.total,
            "page": page.query.page,
            "size": page.query.size,
            "pages": page.pages,
            "source": page.source,
            "building": page.building,
        }
    )


@app.get("/dags/{dag_id}/runs/{run_id}/report", dependencies=RUN_READ)
def download_report(dag_id: str, run_id: str, session: SessionDep) -> StreamingResponse:
    """The whole per-recipient report, streamed as it is stored (CSV or JSON)."""
    run = _run_or_404(session, dag_id, run_id)
    found = store.batch_report(dag_id, run_id, store.batch_summary(session, dag_id, run_id))
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "this run has no report (yet)")
    path, fmt = found

    def chunks() -> Iterator[bytes]:
        with path.open("rb") as handle:
            while data := handle.read(STREAM_CHUNK):
                yield data

    name = f"{run.dag_id}__{run.run_id}.{fmt}".replace(":", "-").replace("+", "-")
    return StreamingResponse(
        chunks(),
        media_type="text/csv; charset=utf-8" if fmt == "csv" else "application/json",
        headers={"Content-Disposition": f'attachment; filename="{quote(name, safe="-_.")}"'},
    )


@app.get("/", response_class=HTMLResponse)
def recent(user: GetUserDep, session: SessionDep) -> HTMLResponse:
    """Recent messages across the runs of both DAGs the user may read: state, outcome and why."""
    readable = get_auth_manager().get_authorized_dag_ids(user=user, method="GET")
    runs = store.recent_runs(session, [d for d in (WORKFLOW_DAG, BATCH_DAG) if d in readable], RECENT_LIMIT)
    outcomes = store.outcomes_of(session, [r for r in runs if r.dag_id == WORKFLOW_DAG], *facts.OUTCOME_KEY)
    summaries = store.outcomes_of(
        session, [r for r in runs if r.dag_id == BATCH_DAG], contract.SUMMARY_TASK, contract.RETURN_VALUE
    )
    rows, failures_read = [], 0
    for run in runs:
        key = (run.dag_id, run.run_id)
        found = outcomes.get(key) if run.dag_id == WORKFLOW_DAG else summaries.get(key)
        failure = None
        if not found and run.state in FINISHED:
            # The task and its log link always; its sentence for the newest few (each is a log read).
            quote_log = failures_read < RECENT_FAILURES_READ and may_read_logs(user, run.dag_id)
            failure = store.task_failure(session, run.dag_id, run.run_id, read_log=quote_log)
            failures_read += quote_log
        row: dict[str, Any] = {
            "run": run,
            "tab_href": run_page(run.dag_id, run.run_id, "plugin/messages"),
            "run_href": run_page(run.dag_id, run.run_id),
            "failure": failure,
            "reason": failure.message if failure else "",
        }
        if run.dag_id == WORKFLOW_DAG:
            outcome = found if isinstance(found, Mapping) else {}
            error = error_info(outcome.get("errorCode"))
            status = outcome.get("finalStatus") or ("not sent" if outcome else "")
            if outcome and outcome.get("end") != "delivered" and not row["reason"]:
                row["reason"] = not_sent_reason(outcome, error)
            row.update(
                to=mask_number(str(run.conf.get("to") or "")),
                sid=outcome.get("messageSid") or "",
                status=status,
                error=error,
            )
        else:
            summary = found if isinstance(found, Mapping) else None
            view = batch_view.batch_view(run.dag_id, run.run_id, run.state, summary, failure=failure)
            row.update(to="batch", sid="", status=view.headline if summary else "", error=None)
        rows.append(row)
    return _html("recent.html", rows=rows, ui_root=UI_ROOT_FROM_RECENT)

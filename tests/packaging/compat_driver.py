"""Run inside a clean compat venv: ``python -I compat_driver.py DAGS_FOLDER RUNS_JSON OUT_JSON``.

Imports nothing of the checkout (``-I``: the script's folder is not on the path, PYTHONPATH is ignored):
only Airflow and the installed wheel. Runs the DAGs of DAGS_FOLDER that RUNS_JSON lists ([dag_id, conf]
pairs) with ``dag.test`` and writes what the test asserts on (states, XComs, import errors) to OUT_JSON.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any


def xcoms(dag_id: str, run_id: str) -> dict[str, dict[str, Any]]:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    found: dict[str, dict[str, Any]] = {}
    with create_session() as session:
        for row in session.query(XComModel).filter_by(dag_id=dag_id, run_id=run_id).all():
            found.setdefault(row.task_id, {})[row.key] = XComModel.deserialize_value(row)
    return found


def task_states(dag_id: str, run_id: str) -> dict[str, str | None]:
    from airflow.models import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = session.query(TaskInstance).filter_by(dag_id=dag_id, run_id=run_id).all()
        return {
            ti.task_id: None if ti.state is None else str(getattr(ti.state, "value", ti.state)) for ti in tis
        }


def main(dags_folder: str, runs_json: str, out: str) -> None:
    from airflow import __version__
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=dags_folder)  # examples are off: AIRFLOW__CORE__LOAD_EXAMPLES=False
    result: dict[str, Any] = {
        "airflow": __version__,
        "import_errors": {k: v[-2000:] for k, v in bag.import_errors.items()},
        "dags": sorted(bag.dags),
        "runs": [],
    }
    for dag_id, conf in json.loads(runs_json):
        started = time.monotonic()
        run = bag.dags[dag_id].test(run_conf=conf)
        result["runs"].append(
            {
                "dag_id": dag_id,
                "conf": conf,
                "run_id": run.run_id,
                "state": str(getattr(run.state, "value", run.state)),
                "tasks": task_states(dag_id, run.run_id),
                "xcoms": xcoms(dag_id, run.run_id),
                "seconds": round(time.monotonic() - started, 1),
            }
        )
    with open(out, "w") as f:
        json.dump(result, f, default=str)


if __name__ == "__main__":
    main(*sys.argv[1:])

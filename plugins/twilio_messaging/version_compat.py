"""The oldest Airflow this package runs on, checked as soon as the package is imported.

pip already refuses to install the wheel next to an older Airflow (its ``apache-airflow>=`` requirement);
this check covers installs that bypass the resolver (``--no-deps``, a copied folder), which then fail at
import with the reason instead of an ImportError deep inside a task or the api-server.
"""

from __future__ import annotations

from airflow import __version__ as AIRFLOW_VERSION
from packaging.version import Version

# Airflow 3.2 (task SDK 1.2) brought what the package imports from the task SDK: airflow.sdk.configuration
# and the exceptions in airflow.sdk.exceptions. The Messages tab's external_views need only 3.1.
# Keep equal to the `apache-airflow>=` requirement in plugins/pyproject.toml (tests/packaging checks both).
MIN_AIRFLOW_VERSION = "3.2.0"


class AirflowTooOld(RuntimeError):
    """The installed Airflow is older than MIN_AIRFLOW_VERSION."""


def check_airflow_version(airflow_version: str) -> None:
    """Raise AirflowTooOld, naming both versions and what to do, if ``airflow_version`` is too old."""
    # base_version: a pre-release or dev build of 3.2.0 counts as 3.2.0, as Airflow's own providers count.
    if Version(Version(airflow_version).base_version) < Version(MIN_AIRFLOW_VERSION):
        raise AirflowTooOld(
            f"airflow-provider-twilio-messaging needs Apache Airflow {MIN_AIRFLOW_VERSION} or newer, "
            f"found {airflow_version}: it imports airflow.sdk.configuration and the task exceptions of "
            f"airflow.sdk.exceptions, which Airflow 3.2 added. Upgrade Airflow to {MIN_AIRFLOW_VERSION}+."
        )


check_airflow_version(AIRFLOW_VERSION)

"""The Airflow plugin: a **Messages** tab on every run of the Twilio DAGs, and Browse → Twilio messages.

Registered by the package's ``airflow.plugins`` entry point, so installing the wheel is enough: no file in
a plugins folder. ``fastapi_apps`` mounts the app of ``twilio_messaging.ui.app`` on the api-server;
``external_views`` (Airflow 3.1+) point the run tab and the nav page at it. The UI shows them in an iframe;
it fills in ``{DAG_ID}``/``{RUN_ID}``, and the relative ``href`` resolves against the UI's base URL, so it
works behind a reverse proxy with a path prefix too.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from twilio_messaging.ui.app import URL_PREFIX, app
from twilio_messaging.ui.trigger_guard import TriggerConfGuard

PLUGIN_NAME = "twilio_messages"
TAB_HREF = URL_PREFIX.lstrip("/") + "/dags/{DAG_ID}/runs/{RUN_ID}/"


class TwilioMessagesPlugin(AirflowPlugin):
    name = PLUGIN_NAME
    fastapi_apps = [{"app": app, "url_prefix": URL_PREFIX, "name": "Twilio Messages"}]  # noqa: RUF012
    # A conf Airflow 3.3.2 cannot answer for (a lone surrogate) is refused with a 400 naming the field.
    fastapi_root_middlewares = [  # noqa: RUF012
        {"middleware": TriggerConfGuard, "args": [], "kwargs": {}, "name": "Twilio trigger conf guard"}
    ]
    external_views = [  # noqa: RUF012
        {
            "name": "Messages",
            "href": TAB_HREF,
            "destination": "dag_run",
            "url_route": "messages",
        },
        {
            "name": "Twilio messages",
            "href": URL_PREFIX.lstrip("/") + "/",
            "destination": "nav",
            "category": "browse",
            "url_route": "twilio-messages",
        },
    ]

"""Airflow plugin: a **Messages** tab on every run of the Twilio DAGs, and a Messages page in the nav.

Airflow 3.1+ style, nothing beyond what Airflow ships: ``fastapi_apps`` mounts the app of
``twilio_messaging.ui.app`` on the API server; ``external_views`` point the UI's run tab (and the nav
page) at it. The UI shows them in an iframe; it fills in ``{DAG_ID}``/``{RUN_ID}``, and the relative
``href`` resolves against the UI's base URL, so it works behind a reverse proxy with a path prefix too.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from twilio_messaging.ui.app import URL_PREFIX, app

TAB_HREF = URL_PREFIX.lstrip("/") + "/dags/{DAG_ID}/runs/{RUN_ID}/"


class TwilioMessagesPlugin(AirflowPlugin):
    name = "twilio_messages"
    fastapi_apps = [{"app": app, "url_prefix": URL_PREFIX, "name": "Twilio Messages"}]  # noqa: RUF012
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

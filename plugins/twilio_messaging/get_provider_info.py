"""What Airflow's ProvidersManager learns about this package (the ``apache_airflow_provider`` entry point)."""

from __future__ import annotations

from typing import Any

PACKAGE_NAME = "airflow-provider-twilio-messaging"
TWILIO_HOST = "api.twilio.com"

# The Admin > Connections form for the "Twilio" type: Twilio's names for login and password, and the real
# API as the placeholders of what TwilioHook defaults to. Kept here, without imports, because Airflow 3.2+
# reads it from the provider info instead of importing the hook; TwilioHook.get_ui_field_behaviour()
# returns the same dict for tools that still ask the hook.
UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden_fields": [],
    "relabeling": {
        "login": "Account SID or API key SID",
        "password": "Auth token or API key secret",
        "schema": "Scheme",
    },
    "placeholders": {
        "host": f"{TWILIO_HOST} (the default)",
        "schema": "https (the default)",
        "port": "empty for api.twilio.com",
        "login": "AC... (Account SID) or SK... (API key SID)",
        "password": "the auth token, or the API key's secret",
    },
}


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": PACKAGE_NAME,
        "name": "Twilio Messaging",
        "description": "Send SMS/MMS through Twilio and track each message to its final delivery status.",
        "integrations": [
            {
                "integration-name": "Twilio",
                "external-doc-url": "https://www.twilio.com/docs/messaging/api/message-resource",
                "tags": ["service"],
            }
        ],
        "connection-types": [
            {
                "connection-type": "twilio",
                "hook-class-name": "twilio_messaging.hooks.twilio.TwilioHook",
                "hook-name": "Twilio",
                "ui-field-behaviour": {
                    "hidden-fields": UI_FIELD_BEHAVIOUR["hidden_fields"],
                    "relabeling": UI_FIELD_BEHAVIOUR["relabeling"],
                    "placeholders": UI_FIELD_BEHAVIOUR["placeholders"],
                },
            }
        ],
        "hooks": [{"integration-name": "Twilio", "python-modules": ["twilio_messaging.hooks.twilio"]}],
        "operators": [
            {"integration-name": "Twilio", "python-modules": ["twilio_messaging.operators.twilio"]}
        ],
        "sensors": [{"integration-name": "Twilio", "python-modules": ["twilio_messaging.sensors.twilio"]}],
        "notifications": ["twilio_messaging.notifications.twilio.TwilioNotifier"],
        # No "plugins" here: the Messages plugin is registered by the `airflow.plugins` entry point, the one
        # way Airflow loads it by default ([core] lazy_discover_providers = True never loads provider-info
        # plugins). Listed here too, it would load twice when that option is False, and Airflow would report
        # the second as a plugin import error ("already registered"); tests/packaging checks that it is not.
    }

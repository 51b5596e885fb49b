"""The send-and-track workflow (dags/twilio_send_message_track_status.py): this project's first user of the
provider, in the application layer.

- ``inputs``: the trigger form (Params) and ``SendMessageFromParams``, sendMessage reading the form;
- ``outcome``: what routeByStatus and the end tasks decide, as plain functions;
- ``tasks``: the Airflow callables of routeByStatus, delivered and failed (XCom in, ``outcome``, XCom out);
- ``arazzo``: the Arazzo document the DAG implements, rendered as its doc_md.

The names the DAG and the Messages tab share are in ``twilio_messaging.contract``; the environment is read
through ``twilio_messaging.settings``.
"""

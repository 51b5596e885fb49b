"""Airflow pools the project's tasks share."""

# Bounds Twilio API concurrency across every run of every DAG
# (create it once: `airflow pools set twilio_api 50 "Twilio API concurrency"`).
API_POOL = "twilio_api"

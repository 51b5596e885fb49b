"""Triggers (run by Airflow's triggerer) of the Twilio provider."""

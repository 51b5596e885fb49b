"""Airflow sensors of the Twilio provider."""

from twilio_messaging.sensors.twilio import TwilioMessageStatusSensor

__all__ = ["TwilioMessageStatusSensor"]

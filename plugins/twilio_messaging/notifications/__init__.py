"""Airflow notifiers of the Twilio provider."""

from twilio_messaging.notifications.twilio import TwilioNotifier

__all__ = ["TwilioNotifier"]

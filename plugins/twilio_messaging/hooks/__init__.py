"""Airflow hooks of the Twilio provider."""

from twilio_messaging.hooks.twilio import TwilioHook

__all__ = ["TwilioHook"]

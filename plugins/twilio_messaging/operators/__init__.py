"""Airflow operators of the Twilio provider."""

from twilio_messaging.operators.twilio import TwilioSendMessageOperator

__all__ = ["TwilioSendMessageOperator"]

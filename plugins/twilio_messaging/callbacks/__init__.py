"""Twilio status callbacks: the receiver on the api-server, the store it writes, and what tracking reads.

Push first, poll as backup: Twilio POSTs each status change of a message to
``POST /twilio-messages/status-callback`` (``receiver``); a valid, signed callback is written to the
callback store (``store``) keyed by message SID; checkStatus, the deferrable trigger and the batch's
tracking read the store before they ask Twilio, and poll as before for whatever it does not hold.
"""

"""Scheduled batch notifications: recipients in, one tracked SMS per valid recipient out.

The pieces, in the order a batch runs through them:

- ``templating``: the message body template (``{field}`` placeholders, values are data, never Jinja);
- ``recipients``: loading rows from CSV/JSON or a list, number normalisation, opt-out lists;
- ``prepare``: per-row validation, dedupe, opt-out and chunking, before anything is sent;
- ``throttle``: the bounded, 429-aware concurrency shared by sending and tracking;
- ``send``: sending one chunk concurrently through the duplicate-safe ``AsyncTwilioClient``;
- ``track``: one poke = one concurrent status fetch of a chunk's unfinished messages;
- ``report``: the summary (counts, failures with meanings, skipped rows) and the per-recipient report.
"""

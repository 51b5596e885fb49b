"""Scheduled batch notifications: recipients in, one tracked SMS per valid recipient out.

Rows live in object storage (``twilio_messaging.storage``); XCom carries chunk indices and counts. The pieces,
in the order a batch runs through them:

- ``templating``: the message body template (``{field}`` placeholders, values are data, never Jinja);
- ``recipients``: streaming rows from CSV/JSON lines/JSON or a list, number normalisation, opt-out lists;
- ``plan``: what prepare decides once for the whole run (``batch.json``), which every later task reads;
- ``prepare``: per-row validation, dedupe, opt-out and chunk sizing, before anything is sent; the prepare
  task (``prepare_run``);
- ``ledger``: what earlier runs under the same dedupe key sent (no duplicate across runs);
- ``throughput``: segments and the sender's drain time (refusal before sending, ``pace``);
- ``layout`` and ``records``: where a run's files live and what they hold (and how a record is made);
- ``throttle``: the bounded, 429-aware concurrency shared by sending and tracking;
- ``send``: sending one chunk concurrently through the duplicate-safe ``AsyncTwilioClient``; the
  send_chunk task;
- ``track``: one poke = one read of the statuses of a chunk's unfinished messages; the track_chunk task;
- ``sweep``: that read from Twilio's message list, 1,000 statuses per request, fetching by SID the rest;
- ``report``: the streamed summary (counts, failures by code with meanings) and the per-recipient report;
  the summary and check_failure_rate tasks;
- ``failures``: which errors fail a task at once (a retry cannot fix them).

Each task function sits beside the engine it drives and works on the run's folder (``layout.RunLayout``),
the plan and the deployment settings, so tests call it without a scheduler.
"""

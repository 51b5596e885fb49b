"""The request sequences of the client as generators, shared by the sync and the async driver.

A flow yields ``Call`` (the driver answers with an ``httpx.Response`` or the ``httpx.TransportError`` it
raised) or ``Sleep`` (the driver waits, answers None) and returns its result. Flows hold every decision
(retries, backoff, duplicate lookups) and do no I/O, so tests can drive them with scripted replies.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx

from twilio_messaging import forms
from twilio_messaging.connection import DEFAULT_CONN_ID
from twilio_messaging.errors import TwilioUnreachableError
from twilio_messaging.retry import (
    NO_RETRY,
    RetryPolicy,
    Verdict,
    classify_exception,
    classify_status,
    parse_retry_after,
)
from twilio_messaging.validation import MessageRequest

log = logging.getLogger(__name__)

T = TypeVar("T")
MAX_LOOKUP_PAGES = 20
MAX_LIST_PAGES = 1000


@dataclass(frozen=True)
class Call:
    method: str
    url: str
    params: list[tuple[str, str]] | None = None
    data: dict[str, str | list[str]] | None = None


@dataclass(frozen=True)
class Sleep:
    seconds: float


Reply = httpx.Response | httpx.TransportError
Flow = Generator[Call | Sleep, Reply | None, T]


@dataclass
class FlowContext:
    """What a flow needs besides its arguments; clocks and randomness are injectable for tests."""

    base_url: str
    account_sid: str
    conn_id: str = DEFAULT_CONN_ID
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    clock_skew: timedelta = timedelta(seconds=60)
    monotonic: Callable[[], float] = time.monotonic
    now: Callable[[], datetime] = lambda: datetime.now(UTC)
    rng: random.Random = field(default_factory=random.Random)


class Budget:
    """Attempts and elapsed time of one client call, shared by every request the call makes."""

    def __init__(self, ctx: FlowContext) -> None:
        self.ctx = ctx
        self.attempts = 0
        self.started = ctx.monotonic()
        self.last_reason = "no attempt made"

    def elapsed(self) -> float:
        return self.ctx.monotonic() - self.started

    def next_delay(self, retry_after: float | None) -> float | None:
        return self.ctx.policy.next_delay(self.attempts, self.elapsed(), retry_after, self.ctx.rng)

    def exhausted(self, maybe_created: bool = False) -> TwilioUnreachableError:
        text = (
            f"Twilio API at {self.ctx.base_url} was unreachable after {self.attempts} attempts "
            f"over {self.elapsed():.0f} s: {self.last_reason}"
        )
        if maybe_created:
            text += (
                ". The message may have been created; a retry of this task looks for it before sending again"
            )
        return TwilioUnreachableError(text, maybe_created=maybe_created)


def _answered(reply: Reply | None) -> Reply:
    """The driver's answer to a Call (a Sleep is answered with None)."""
    if reply is None:
        raise RuntimeError("the flow driver answered a Call with None")
    return reply


def _retry_after(reply: Reply) -> float | None:
    if isinstance(reply, httpx.Response) and reply.status_code == 429:
        return parse_retry_after(reply.headers.get("Retry-After"))
    return None


def request_flow(ctx: FlowContext, call: Call, budget: Budget) -> Flow[httpx.Response]:
    """Send an idempotent request (GET), retrying 429, 5xx and transport errors within the budget."""
    while True:
        reply = _answered((yield call))
        budget.attempts += 1
        if isinstance(reply, httpx.Response):
            verdict = classify_status(reply.status_code)
            if verdict is Verdict.DONE:
                return reply
            if verdict is Verdict.FINAL:
                raise forms.error_from_response(reply, ctx.conn_id)
        elif classify_exception(reply) is Verdict.FINAL:
            raise reply
        budget.last_reason = forms.short_reason(reply)
        delay = budget.next_delay(_retry_after(reply))
        if delay is None:
            raise budget.exhausted()
        log.warning(
            "Twilio %s %s failed (%s); retrying in %.1f s", call.method, call.url, budget.last_reason, delay
        )
        yield Sleep(delay)


def fetch_message_flow(ctx: FlowContext, sid: str, budget: Budget | None = None) -> Flow[dict[str, Any]]:
    budget = budget or Budget(ctx)
    reply = yield from request_flow(ctx, Call("GET", forms.message_path(ctx.account_sid, sid)), budget)
    return forms.parse_json(reply)


def list_messages_flow(
    ctx: FlowContext,
    query: list[tuple[str, str]],
    budget: Budget | None = None,
    *,
    stop: Callable[[list[dict[str, Any]]], bool] | None = None,
    max_pages: int = MAX_LIST_PAGES,
) -> Flow[list[dict[str, Any]]]:
    """List messages, following ``next_page_uri`` until the last page, ``stop(page)`` or ``max_pages``."""
    budget = budget or Budget(ctx)
    call = Call("GET", forms.messages_path(ctx.account_sid), params=query)
    messages: list[dict[str, Any]] = []
    for _ in range(max_pages):
        body = forms.parse_json((yield from request_flow(ctx, call, budget)))
        page = body.get("messages") or []
        messages.extend(page)
        next_uri = body.get("next_page_uri")
        # ``stop`` sees every page, the last one too: a caller may read the pages as they come.
        if (stop is not None and stop(page)) or not next_uri:
            break
        call = Call("GET", next_uri)
    return messages


def find_created_flow(
    ctx: FlowContext, request: MessageRequest, cutoff: datetime, budget: Budget
) -> Flow[dict[str, Any] | None]:
    """Look for a message that ``request`` already created at or after ``cutoff``."""
    messages = yield from list_messages_flow(
        ctx,
        forms.lookup_query(request, cutoff),
        budget,
        stop=lambda page: forms.page_is_older_than(page, cutoff),
        max_pages=MAX_LOOKUP_PAGES,
    )
    return forms.find_match(messages, request, cutoff)


def create_message_flow(
    ctx: FlowContext, request: MessageRequest, sent_since: datetime | None = None
) -> Flow[dict[str, Any]]:
    """Create a message without ever sending it twice.

    429 and connection failures are retried (Twilio did not process them). After a timeout, 5xx or dropped
    connection the message may exist, so it is looked up, and only sent again when it is not found.
    ``sent_since`` (e.g. the start of an earlier try) makes the lookup happen before the first send.
    """
    budget = Budget(ctx)
    started = sent_since or ctx.now()
    cutoff = forms.lookup_cutoff(started, ctx.clock_skew)
    must_look = sent_since is not None
    form = forms.create_form(request)
    while True:
        if must_look:
            try:
                found = yield from find_created_flow(ctx, request, cutoff, budget)
            except TwilioUnreachableError:
                raise budget.exhausted(maybe_created=True) from None
            if found is not None:
                log.warning(
                    "Message %s was already created by an earlier attempt; using it instead of sending again",
                    found.get("sid"),
                )
                return found
            must_look = False
        reply = _answered((yield Call("POST", forms.messages_path(ctx.account_sid), data=form)))
        budget.attempts += 1
        if isinstance(reply, httpx.Response):
            verdict = classify_status(reply.status_code)
            if verdict is Verdict.DONE:
                return forms.parse_json(reply)
            if verdict is Verdict.FINAL:
                raise forms.error_from_response(reply, ctx.conn_id)
        else:
            verdict = classify_exception(reply)
            if verdict is Verdict.FINAL:
                raise reply
        budget.last_reason = forms.short_reason(reply)
        must_look = verdict is Verdict.AMBIGUOUS
        delay = budget.next_delay(_retry_after(reply))
        if delay is None:
            if must_look:
                # Spend one more request on finding out whether the message exists: it tells the user more.
                found = yield from _last_look(ctx, request, cutoff)
                if found is not None:
                    return found
            raise budget.exhausted(maybe_created=must_look)
        log.warning(
            "Creating the message failed (%s, %s); %s in %.1f s",
            budget.last_reason,
            "it may have been created" if must_look else "nothing was created",
            "looking it up before any resend" if must_look else "retrying",
            delay,
        )
        yield Sleep(delay)


def _last_look(ctx: FlowContext, request: MessageRequest, cutoff: datetime) -> Flow[dict[str, Any] | None]:
    single = dataclasses.replace(ctx, policy=NO_RETRY)
    try:
        return (yield from find_created_flow(single, request, cutoff, Budget(single)))
    except Exception as exc:  # the lookup failing must never hide the original failure
        log.warning("Looking up the possibly created message failed: %s", forms.short_reason(exc))
        return None

"""When to retry, how long to wait, and the session-wide pause after a 429.

The backoff is pure maths (:func:`backoff_delay`), so it is tested without waiting.
Which failures are retried is decided by *could the server already have acted?*:

- reads (status, result, catalog) and cancel: on any transport error, 408, 429 and 5xx —
  repeating them is harmless (cancelling twice is a no-op);
- submit: only when the request provably never reached the server (connect refused,
  DNS, connect timeout) or the server refused it (429). Anything ambiguous is the
  caller's to decide (:class:`~runcomfy_async.SubmitUncertainError`), because the API
  has no idempotency key and a retried submit can bill twice.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Awaitable, Callable
from typing import Final, Protocol, TypeVar

import anyio
import msgspec

from ._config import RetryPolicy
from ._errors import (
    ConnectError,
    ConnectTimeoutError,
    RateLimitError,
    RequestTimeoutError,
    RunComfyError,
    ServerError,
    TransportError,
    UnexpectedResponseError,
)

__all__ = [
    "Backpressure",
    "Budget",
    "RetryEvent",
    "RetryHook",
    "backoff_delay",
    "is_retryable_read",
    "is_retryable_submit",
    "is_transient",
    "retry_after_of",
    "retrying",
]

logger: Final = logging.getLogger("runcomfy_async")

T = TypeVar("T")


def backoff_delay(
    policy: RetryPolicy, retry: int, *, retry_after: float | None = None, rand: float = 1.0
) -> float:
    """Return the seconds to wait before retry number ``retry`` (1-based).

    Args:
        policy: The policy in force.
        retry: Which retry this is: 1 for the first.
        retry_after: Seconds the server asked for, if it did.
        rand: A number in ``[0, 1]``; the jitter draw (1.0 gives the ceiling).
    """
    if retry_after is not None:
        return min(max(retry_after, 0.0), policy.max_retry_after)
    try:
        grown = policy.initial * policy.multiplier ** (retry - 1)
    except OverflowError:  # a huge retry count or multiplier: only the cap can apply
        grown = math.inf if policy.initial else 0.0
    ceiling = min(policy.max_delay, grown)
    return ceiling * rand if policy.jitter else ceiling


def is_retryable_read(exc: RunComfyError) -> bool:
    """Whether a read (or cancel) that failed this way is worth another attempt."""
    return isinstance(exc, TransportError | RequestTimeoutError | RateLimitError | ServerError)


def is_transient(exc: RunComfyError) -> bool:
    """Whether a failed status poll is worth another one (after backoff)."""
    # A poll is a read: connection errors, 408, 429 and 5xx pass; so does an answer we
    # could not read (or one for another job), more likely a proxy hiccup than a changed API.
    return is_retryable_read(exc) or isinstance(exc, UnexpectedResponseError)


def is_retryable_submit(exc: RunComfyError) -> bool:
    """Whether a submit that failed this way certainly created no job."""
    return isinstance(exc, ConnectError | ConnectTimeoutError | RateLimitError)


def retry_after_of(exc: BaseException) -> float | None:
    """The server's ``Retry-After`` for this failure, in seconds, if it sent one."""
    return exc.retry_after if isinstance(exc, RateLimitError) else None


class RetryEvent(msgspec.Struct, frozen=True, kw_only=True):
    """What a retry hook is told before each wait.

    Attributes:
        route: The route being retried.
        request_id: The job, if the call concerns one.
        retry: Which retry comes next (1-based).
        delay: Seconds the client will wait first.
        error: The failure that caused it, as one line.
    """

    route: str
    request_id: str | None
    retry: int
    delay: float
    error: str


class RetryHook(Protocol):
    """Called before every retry wait; for metrics and logs. Must not raise."""

    def __call__(self, event: RetryEvent) -> None: ...


class Backpressure:
    """A session-wide pause: after a 429 every request of the session waits it out.

    Without it, 10 000 tasks that each meet a 429 would each back off on their own and
    keep hammering the server; with it the whole session slows down together.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._until = 0.0

    def pause(self, seconds: float) -> None:
        """Hold every request back for ``seconds`` from now (never shortens a pause)."""
        self._until = max(self._until, self._clock() + seconds)

    @property
    def remaining(self) -> float:
        """Seconds left in the current pause (0 when none)."""
        until = self._until
        if not until:  # never paused: read on every request, so no clock call
            return 0.0
        return max(0.0, until - self._clock())

    async def wait(self) -> None:
        """Sleep until the current pause is over; return at once when there is none."""
        # A loop, not an Event: another 429 may extend the pause while we sleep.
        while (left := self._until - self._clock()) > 0:  # noqa: ASYNC110
            await anyio.sleep(left)


class Budget(Protocol):
    """The session's request budget, as the retry loop sees it (:mod:`._poll_budget`).

    Budgeted calls wait for :meth:`acquire` before each attempt and report each answer,
    so status polls, result fetches and cancels all draw from one rate that the 429s teach.
    """

    clock: Callable[[], float]

    async def acquire(self, key: float | None = None) -> None: ...

    def answered(self) -> None: ...

    def refused(self, sent: float, retry_after: float | None) -> None: ...


async def retrying(
    call: Callable[[], Awaitable[T]],
    *,
    policy: RetryPolicy,
    retryable: Callable[[RunComfyError], bool],
    backpressure: Backpressure,
    route: str,
    request_id: str | None = None,
    hook: RetryHook | None = None,
    budget: Budget | None = None,
) -> T:
    """Run ``call`` until it succeeds, fails for good, or the policy is spent.

    With a ``budget``, every attempt waits for it and reports its answer to it; a 429 is
    then the budget's to pace (it drops its rate and honours ``Retry-After`` for the
    whole session), so the loop does not sleep on its own for it.

    Raises:
        RunComfyError: The last failure, when it is not retryable or no attempt or
            budget is left.
    """
    deadline = time.monotonic() + policy.budget
    retry = 0
    while True:
        await backpressure.wait()
        sent = 0.0
        if budget is not None:
            # Most urgent of all: the job's result, or a cancel, is wanted now.
            await budget.acquire(-math.inf)
            sent = budget.clock()
        try:
            answer = await call()
        except RunComfyError as exc:
            if budget is not None and isinstance(exc, RateLimitError):
                budget.refused(sent, retry_after_of(exc))
            retry += 1
            if not retryable(exc) or retry >= policy.attempts:
                raise
            hinted = retry_after_of(exc)
            delay = backoff_delay(policy, retry, retry_after=hinted, rand=random.random())
            if isinstance(exc, RateLimitError) and budget is None:
                backpressure.pause(delay)
            if time.monotonic() + delay > deadline:
                raise
            event = RetryEvent(
                route=route, request_id=request_id, retry=retry, delay=delay, error=str(exc)
            )
            logger.info("retrying %s in %.2f s (retry %d): %s", route, delay, retry, exc)
            if hook is not None:
                hook(event)
            if not isinstance(exc, RateLimitError):
                await anyio.sleep(delay)
        else:
            if budget is not None:
                budget.answered()
            return answer

"""One job's watcher: status polls in, transition events out; and watch() on it.

One :class:`Watcher` per job does one poll per step and turns the answer into the events
that are new (a repeated status yields nothing), keeping what was seen, what was yielded,
and the bounds the learned schedule needs. :func:`watch` and :func:`drive` only step it,
so :func:`watch` never yields inside a cancel scope or task group (anyio's rule for async
generators). Breaking out of ``async for`` leaves nothing behind — no task, no waiter in
the poll scheduler, no connection — and never cancels the job remotely (only
:mod:`._run`, which submitted the job, does that).

The watcher takes a ``timeout`` rather than leave it to ``anyio.fail_after`` around the
call, because the deadline belongs to the job, not to the call: reaching it raises
:class:`~runcomfy_async.WaitTimeoutError` naming the last status, lets a poll already due
finish, and decides whether a run cancels remotely.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

import anyio

from ._errors import (
    AuthenticationError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RunComfyError,
    UnexpectedResponseError,
    WaitTimeoutError,
)
from ._events import Completed, Event, InProgress, Queued, UnknownStatus, outcome, terminal_event
from ._poll_plan import finish_interval, plan_next
from ._retry import is_transient, retry_after_of
from ._run_times import run_bounds
from ._wire import JobState, Result, Status, status_of

if TYPE_CHECKING:
    from ._poll_budget import PollScheduler
    from ._routes import Routes

__all__ = ["DEFAULT_LAST_POLL_GRACE", "Watcher", "drive", "is_transient", "watch"]

logger: Final = logging.getLogger("runcomfy_async")

DEFAULT_LAST_POLL_GRACE: Final = 0.2
"""Seconds a poll begun by the deadline may run past it (``timeout=T`` ends by T + 0.25 s)."""

_RUNNING: Final = frozenset({JobState.IN_PROGRESS, JobState.UNKNOWN})
_REFUSALS: Final = (AuthenticationError, NotFoundError, PermissionDeniedError)
#: Unfinished answers in a row from /result polls before a /status poll is sent between
#: them (a server, or a scripted simulator, might only move a job on /status).
_RESULT_STREAK: Final = 3


class Watcher:
    """One job's polling state: what was seen, what was yielded, when to ask next."""

    # Slots: a batch holds one watcher per job in flight (10,000 in a big gather).
    __slots__ = tuple(
        "__weakref__ _aimed _answered_at _batched _failures _flips _guess _last_exc _left_queue_lo"  # noqa: SIM905
        " _polls _position_seen _presumed _races _result_failures _result_streak _retry_after"
        " _running_since _shown _since _started _step _submitted _unknown_words deadline done"
        " last model_id request_id routes scheduler shows_phases state timeout".split()
    )

    def __init__(
        self,
        routes: Routes,
        scheduler: PollScheduler,
        request_id: str,
        *,
        model_id: str | None,
        timeout: float | None,
        submitted_at: float | None,
    ) -> None:
        if timeout is not None and not timeout >= 0:
            raise ValueError(f"timeout must be >= 0 seconds or None, got {timeout!r}")
        self.routes = routes
        self.scheduler = scheduler
        self.request_id = request_id
        self.model_id = model_id
        self.timeout = timeout
        now = scheduler.clock()
        self.deadline = math.inf if timeout is None else now + timeout
        self.last: Status | None = None
        self.state: JobState | None = None
        self.done = False
        self._shown: tuple[JobState, int | str | None] | None = None
        self._unknown_words: set[str] | None = None  # made on the first unknown word
        self._polls = self._step = self._failures = self._races = self._flips = 0
        self._result_failures = self._result_streak = 0
        self._retry_after: float | None = None
        self._last_exc: RunComfyError | None = None
        self._answered_at = self._since = now
        # Bounds of the current phase's start and of the previous answer, for learning.
        self._left_queue_lo = self._submitted = submitted_at
        self._started: tuple[float, float] | None = None
        self._running_since: float | None = None
        self._position_seen: tuple[int, float] | None = None
        self._presumed: tuple[float, float] | None = None  # see _presume
        self._batched = False  # presumed only as one of a cold batch: taught nothing
        self._guess: float | None = None  # a queued job's guessed start (see queue_start)
        self._aimed = False  # the next poll aims at a queued job's guessed finish
        self.shows_phases = False  # a watch(): no poll aims past the running phase

    def _next_plan(self) -> tuple[float, float]:
        sched = self.scheduler
        state, started = self.state, self._started
        estimate = sched.run_times.estimate(self.model_id)
        if self._polls == 0:
            # A fresh job of a learned model whose jobs do not queue most likely runs from
            # its submit: its first poll (a /result) waits for the expected finish.
            self._presumed = self._presume()
            if self._presumed is None:
                now = sched.clock()
                return now, now
            state, started = JobState.IN_PROGRESS, self._presumed
        drain = sched.run_times.drain(self.model_id)
        if started and started[0] == self._submitted and not drain:
            # Running, never seen queued, of a model whose jobs do not queue: most likely
            # since its submit; a slow first poll must not push the expected finish back.
            started = (started[0], started[0])
        elif started and self._guess is not None:
            # Seen running after a poll aimed at its guessed start: it started about then.
            guessed = self._guess - sched.policy.min_finish_interval
            started = (max(started[0], min(started[1], guessed)), started[1])
        position, guess = self.last.queue_position if self.last else None, self._guess
        if state is JobState.IN_QUEUE and position and guess != -math.inf:
            # A guess that proved early once (-inf) is not trusted again for this job.
            if guess is not None and self._answered_at >= guess:
                guess = self._guess = -math.inf
            else:
                guess = self._guess = sched.run_times.queue_start(
                    self.model_id, position, self._answered_at
                )
        start_at = guess if state is JobState.IN_QUEUE and guess != -math.inf else None
        may_aim = start_at is not None and not self.shows_phases
        plan = plan_next(
            sched.policy,
            self._answered_at,
            state=state,
            step=self._step,
            failures=self._failures,
            retry_after=self._retry_after,
            started=started,
            position=position,
            estimate=estimate,
            drain=drain,
            peers=sched.cold_peers(self.model_id, self, state),
            leader=started is not None and sched.cold_leader(self.model_id, self, started[0]),
            since=self._since,
            start_at=start_at,
            firm_start=may_aim and sched.run_times.firm_starts(self.model_id),
            rand=sched.rand(),
        )
        self._aimed = plan.finish
        return min(plan.at, self.deadline), plan.key

    def _presume(self, *, cold: bool = True) -> tuple[float, float] | None:
        """The start of a fresh job presumed running since its submit, if one may be: its
        model's jobs do not queue (no drain rate learned) and its run time is learned —
        or, with ``cold``, another of its jobs already polls to learn it (this one then
        takes its place in the cold batch's spread instead of a poll at once)."""
        sched, lo = self.scheduler, self._left_queue_lo
        if lo is None or not sched.policy.learn or sched.run_times.drain(self.model_id):
            return None
        self._batched = False
        if sched.run_times.estimate(self.model_id) is not None:
            return (lo, lo)
        # Counted among the model's cold running jobs; the first of them polls at once and
        # leads the batch (it started first, so it likely finishes first).
        peers = sched.cold_peers(self.model_id, self, JobState.IN_PROGRESS) if cold else 0
        if peers == 1:
            sched.cold_leader(self.model_id, self, lo)
        self._batched = peers > 1
        return (lo, lo) if self._batched else None

    def _scope_limit(self) -> float | None:
        if self.deadline == math.inf:
            return None
        return max(self.deadline - self.scheduler.clock(), 0.0) + DEFAULT_LAST_POLL_GRACE

    def timeout_error(self) -> WaitTimeoutError:
        """The error for a passed deadline, naming the last status seen."""
        return WaitTimeoutError(
            self.request_id,
            timeout=self.timeout if self.timeout is not None else math.inf,
            last_status=self.last.status if self.last else None,
        )

    async def step(self) -> list[Event]:
        """Wait for the next poll, send it, and return the events it brought (maybe none).

        Raises:
            WaitTimeoutError: The deadline passed.
            RunComfyError: A poll failed for good, or the result could not be fetched.
        """
        at, key = self._next_plan()
        limit = self._scope_limit()
        if limit is None:
            # No deadline: skip the cancel scope, which costs more than the poll's own logic.
            status, sent = await self._poll(at, key)
        else:
            status, sent = None, 0.0
            with anyio.move_on_after(limit) as scope:
                status, sent = await self._poll(at, key)
            if scope.cancelled_caught:
                raise self.timeout_error() from self._last_exc
        if status is None:
            self._check_deadline()
            return []
        result = status if isinstance(status, Result) else None
        if isinstance(status, Result):
            status = status_of(status)
        events = self._observe(status, sent)
        if status.state.is_terminal:
            terminal = await self._conclude(result)
            if terminal is not None:
                self.done = True
                return [*events, terminal]
        self._check_deadline()
        return events

    def _learning_model(self) -> str | None:
        """The model whose first run time (or drain rate) would re-plan the next poll."""
        state = self.state
        if state is None and self._presumed is not None:
            state = JobState.IN_PROGRESS  # presumed running since its submit
        return self.scheduler.learning_model(self.model_id, state)

    def _finishing(self) -> bool:
        """Whether the job runs and should be finishing, or the poll aims at a queued
        job's guessed finish: poll ``/result`` (it answers the state while unfinished, and
        the poll that sees the end saves the result fetch)."""
        sched = self.scheduler
        if self._aimed:
            return sched.result_polls
        if self._polls == 1 and self._presumed is None:
            # A first poll granted late: its model may have learned meanwhile.
            self._presumed = self._presume(cold=False)
        started = self._presumed if self._polls == 1 else None
        if started is None and self.state is JobState.IN_PROGRESS:
            started = self._started
        if not (sched.result_polls and started):
            return False
        if self._result_streak >= _RESULT_STREAK:
            self._result_streak = 0
            return False
        estimate = sched.run_times.estimate(self.model_id)
        return estimate is not None and sched.clock() >= started[0] + estimate.low

    async def _poll(self, at: float, key: float) -> tuple[Status | Result | None, float]:
        """Wait for this job's turn and poll once; a transient failure gives None."""
        sched = self.scheduler
        estimate = sched.run_times.estimate(self.model_id)
        while True:
            while not await sched.sleep_until(at, self._learning_model()):
                at, key = self._next_plan()  # its model just learned a run time: re-plan
            current = sched.run_times.estimate(self.model_id)
            if current is estimate or current is None or self.state is JobState.IN_QUEUE:
                break
            # Jobs that finished meanwhile changed the estimate: a running job's poll it
            # now says is early waits (a wake-up costs far less than a request). A queued
            # job's plan rests on its last position, which would be stale by now.
            estimate = current
            at, key = self._next_plan()
            if at <= sched.clock():
                break
        await sched.turn(at, key=key)
        sent = sched.clock()
        self._polls += 1
        on_result = self._finishing()
        poll = self.routes.poll_result if on_result else self.routes.poll_status
        try:
            answer: Status | Result = await poll(self.request_id)
        except RunComfyError as exc:
            if isinstance(exc, RateLimitError):
                sched.refused(sent, retry_after_of(exc))
            elif on_result and not is_transient(exc) and not isinstance(exc, _REFUSALS):
                # This server will not answer /result before the end: poll /status.
                logger.info("/result refused an unfinished job (%s); polling /status", exc)
                sched.result_polls = False
                return None, sent
            self._absorb(exc)
            return None, sent
        finally:
            sched.done()  # answered, failed or cancelled: the next poll may go
        sched.answered()
        if on_result:
            self._result_streak += 1
        return answer, sent

    def _absorb(self, exc: RunComfyError) -> None:
        self._answered_at = self.scheduler.clock()
        if not is_transient(exc):
            raise exc
        self._failures += 1
        self._last_exc = exc
        if self._failures >= self.scheduler.policy.max_consecutive_failures:
            raise exc
        # A 429 was already told to the budget, which paces the whole session.
        self._retry_after = retry_after_of(exc)
        logger.info(
            "status poll of request %s failed (%d in a row), retrying: %s",
            *(self.request_id, self._failures, exc),
        )

    def _check_deadline(self) -> None:
        if self.scheduler.clock() >= self.deadline:
            raise self.timeout_error() from self._last_exc

    def _observe(self, status: Status, sent: float) -> list[Event]:
        now = self.scheduler.clock()
        self._answered_at = now
        self._failures = 0
        self._retry_after = None
        self._last_exc = None
        state = status.state
        if not state.is_terminal:
            self._races = 0
            if self.state is not None and self.state.is_terminal:
                self._flipped(self.state, status)
        self._learn(state, status.queue_position, sent, now)
        if state is not self.state:
            # A fresh job's first state began at its submit, not at this answer.
            submitted = self._submitted if self.state is None else None
            self._step, self._since = 0, now if submitted is None else submitted
        else:
            self._step += 1
        self.state = state
        self.last = status
        shown: tuple[JobState, int | str | None] = (state, None)
        if state is JobState.IN_QUEUE:
            shown = (state, status.queue_position)
        elif state is JobState.UNKNOWN:
            shown = (state, status.status)
        if state.is_terminal or shown == self._shown:
            return []
        self._shown = shown
        rid, seen = self.request_id, datetime.now(UTC)
        if state is JobState.IN_QUEUE:
            return [Queued(position=status.queue_position, request_id=rid, observed_at=seen)]
        if state is JobState.IN_PROGRESS:
            return [InProgress(request_id=rid, observed_at=seen)]
        if self._unknown_words is None:
            self._unknown_words = set()
        elif status.status in self._unknown_words:
            return []
        self._unknown_words.add(status.status)
        logger.warning(
            "request %s reports status %r, which the API does not document; treating it"
            " as still running",
            *(self.request_id, status.status),
        )
        return [UnknownStatus(status=status.status, request_id=rid, observed_at=seen)]

    def _flipped(self, was: JobState, status: Status) -> None:
        """A finished status went back (completed → in_queue): warn once, raise past a bound."""
        self._flips += 1
        bound = self.scheduler.policy.max_consecutive_failures
        if self._flips == 1:
            logger.warning(
                "request %s: /status went back from %r to %r; polling on, up to %d such flips",
                *(self.request_id, was.value, status.status, bound),
            )
        if self._flips >= bound:
            raise UnexpectedResponseError(
                route="GET /v1/requests/{id}/status",
                status=200,
                request_id=self.request_id,
                error_message=f"the status went back from finished {self._flips} times",
            )

    def _learn(self, state: JobState, position: int | None, sent: float, now: float) -> None:
        """Keep the bounds the learned schedule needs; record drain steps as they happen."""
        if state is JobState.IN_QUEUE:
            self._left_queue_lo = sent
            self._started = None
            if position is not None and self.model_id is not None:
                before = self._position_seen
                if before is not None and position < before[0]:
                    # Counted from its first position: the longer the view, the truer.
                    gone = before[0] - position
                    self.scheduler.record_drain(self.model_id, (now - before[1]) / gone, gone)
                if before is None or position > before[0]:
                    self._position_seen = (position, now)
        elif state in _RUNNING:
            if self._started is None and self._polls == 1 and self._presumed and not self._batched:
                # Presumed running since its submit and not seen queued: keep that start
                # (else it would teach only "0 to T s", and the window would widen).
                self._started = self._presumed
            elif self._started is None and self._left_queue_lo is not None:
                lo = self._left_queue_lo
                estimate = self.scheduler.run_times.estimate(self.model_id)
                if self._aimed and estimate is not None:
                    # Asked at its finish and still running: it started under a run ago.
                    step = finish_interval(self.scheduler.policy, estimate)
                    lo = max(lo, sent - estimate.high - step)
                    self._guess = None
                self._started = (lo, now)
            self._running_since = sent

    async def _conclude(self, polled: Result | None = None) -> Event | None:
        """Fetch the result of a job /status calls finished; None if /result disagrees.

        A /result poll that saw the end (``polled``) already is that result.
        """
        result: Result | None = polled
        if result is None:
            limit = self._scope_limit()
            if limit is None:
                result = await self._fetch_result()  # no deadline: no cancel scope to pay for
            else:
                with anyio.move_on_after(limit) as scope:
                    result = await self._fetch_result()
                if scope.cancelled_caught:
                    raise self.timeout_error() from self._last_exc
        if result is None:
            self._check_deadline()
            return None
        event = terminal_event(result, self.request_id, datetime.now(UTC))
        if event is not None:
            if isinstance(event, Completed):
                self._record_run(result)
            return event
        # /status said finished but /result has not caught up (or says something odd):
        # a race between the two routes. Poll again, but not forever.
        self._races += 1
        if self._races >= self.scheduler.policy.max_consecutive_failures:
            raise UnexpectedResponseError(
                route="GET /v1/requests/{id}/result",
                status=200,
                request_id=self.request_id,
                error_message=f"/status says finished but /result says {result.raw_status!r}",
            )
        logger.info(
            "request %s: /status says finished, /result says %r; polling on",
            *(self.request_id, result.raw_status),
        )
        return None

    async def _fetch_result(self) -> Result | None:
        try:
            return await self.routes.result(self.request_id)
        except RunComfyError as exc:
            # The job is done on the server: a garbled or failed /result answer must not
            # turn a paid-for success into an error. Count it and ask again; the count is
            # its own, since the /status polls between succeed.
            self._result_failures += 1
            if self._result_failures >= self.scheduler.policy.max_consecutive_failures:
                raise
            self._absorb(exc)
            return None

    def _record_run(self, result: Result) -> None:
        model_id, sched = self.model_id or result.model_id, self.scheduler
        ran = sched.run_times.record_stamps(
            model_id, self._submitted, result.created_at, result.finished_at, self._answered_at
        )
        if model_id is not None and self._started and self._running_since is not None:
            started, since, answered = self._started, self._running_since, self._answered_at
            created = sched.run_times.local_time(result.created_at)
            bounds = run_bounds(
                started,
                since,
                answered,
                self._submitted if created is None else created,
                ran,
                queued=started[0] != self._submitted,
            )
            sched.record_run(model_id, *bounds)


async def drive(watcher: Watcher) -> Result:
    while True:
        for event in await watcher.step():
            result = outcome(event)
            if result is not None:
                return result


async def watch(make: Callable[[], Watcher]) -> AsyncIterator[Event]:
    """Yield a job's transitions until, and including, the terminal one (``Client.watch``).

    The watcher is made (``make()``) at the first iteration, so its deadline counts from
    there. Events are yielded here, outside every cancel scope a step opened; leaving the
    loop early never cancels the job remotely. A watch shows every phase: no queued job's
    poll is aimed at its finish (as ``wait()``'s may be), which would skip ``InProgress``.
    """
    watcher = make()
    watcher.shows_phases = True
    while not watcher.done:
        for event in await watcher.step():
            yield event

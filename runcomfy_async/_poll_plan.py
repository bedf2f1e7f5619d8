"""Pure polling maths: the plain backoff and the next poll's plan.

No clock, no randomness, no I/O: every function takes ``now`` and a ``rand`` draw, so it is
tested without sleeping. :class:`~runcomfy_async._poll_budget.PollScheduler` does the waiting.

The learned schedule: a finished job gives its run time as bounds, because it was only
seen between polls (it started after the last ``in_queue`` answer and before the first
``in_progress`` one; it ended between the last running answer and the first terminal
one). From a model's recent bounds :class:`~._run_times.RunTimes` estimates the window its next job
will finish in, and :func:`plan_next` polls once every ``max_learned_interval`` at most
until that window, at an interval proportional to the expected run time through it
(:func:`finish_interval`: tenths of a second for sub-second jobs, ``finish_interval`` for
minute-long ones), and backs off with the lateness after it. A model's first jobs have no
history and get the plain schedule; when many of them run side by side (``peers``), each
one's waits grow faster and are spread at random, so that together they still poll the
model densely and the first finisher is seen soon after it ends — the scheduler then
wakes the others to re-plan with what it taught.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Final

import msgspec

from ._run_times import RunEstimate, RunTimes, run_bounds
from ._wire import JobState

if TYPE_CHECKING:
    from ._config import PollPolicy

__all__ = [  # the learned run times live in ._run_times, re-exported: DESIGN.md's layout
    "Plan",
    "RunEstimate",
    "RunTimes",
    "backoff_interval",
    "finish_interval",
    "is_consistent",
    "plan_next",
    "run_bounds",
    "settle_interval",
]

_RUNNING: Final = frozenset({JobState.IN_PROGRESS, JobState.UNKNOWN})
_SPREAD_POLLS: Final = 16  # the most finish intervals a varying run time's window takes
_WINDOW_POLLS: Final = 4  # a wide window is crossed in this many polls (or settle steps)
#: A start or finish no less certain than this fraction of the run time (within the finish
#: interval) is settled by one poll at its end: a queued job near the front is polled this
#: often, and a learned window this narrow gets a single poll.
_SETTLE_FRACTION: Final = 0.4
_SETTLE_SLACK: Final = 1.2
_LEAD_POLLS: Final = 5.0  # a batch leader's wait is elapsed × this / peers (or less)
_QUEUE_AIM: Final = 0.8  # a queued job's next poll: this fraction of the drain-rate wait
#: A wide finish window is crossed (and an overdue job polled) at most every this
#: fraction of ``finish_interval``: a varying model's jobs mostly finish there.
_WIDE_STEP: Final = 0.8


def _jittered(policy: PollPolicy, seconds: float, rand: float) -> float:
    # Only ever shortened: a cap stays a cap, and a window edge is never overshot (but a
    # narrow window's end, see _plan_learned).
    return seconds * (1.0 - policy.jitter * rand)


def backoff_interval(policy: PollPolicy, step: int, *, rand: float = 0.0) -> float:
    """Return the plain wait before the next poll.

    Args:
        policy: The policy in force.
        step: Polls since the last transition, minus one (0 right after it).
        rand: A number in ``[0, 1]``, the jitter draw (0 gives the full interval).
    """
    raw = policy.first_interval
    if raw > 0:
        try:
            raw *= policy.growth ** max(step, 0)
        except OverflowError:  # long past the cap
            raw = math.inf
    return _jittered(policy, min(policy.max_interval, raw), rand)


def _cold_growth(policy: PollPolicy, peers: int) -> float:
    """The plain growth of one of ``peers`` unlearned jobs of a model running together."""
    return policy.growth * max(1.0, math.log2(peers) / 2)


def _cold_wait(policy: PollPolicy, elapsed: float, peers: int, rand: float) -> float:
    """The next poll at ``elapsed`` × growth^(0.5–1.5) of the run so far, at random.

    Random in log-time, so the model's many jobs together poll it densely at every point
    of the run (about every ``elapsed`` × ln(growth) / peers) while each job is polled
    only a few times; allowed to grow past ``max_interval`` for the same reason.
    """
    growth = _cold_growth(policy, peers)
    elapsed = max(policy.first_interval, elapsed)
    cap = min(policy.max_learned_interval, policy.max_interval * peers)
    return min(cap, elapsed * (float(growth ** (0.5 + rand)) - 1.0))


def _lead_wait(policy: PollPolicy, elapsed: float, peers: int) -> float:
    """The wait of the batch's leader: its earliest-started unlearned job, likely the
    first to finish, polled at a fraction of its run so far that shrinks with the batch
    (down to ``finish_fraction``), so the batch learns soon after that first finish and
    the leader's polls cost each job well under one request."""
    fraction = max(policy.finish_fraction, _LEAD_POLLS / peers)
    return max(policy.min_finish_interval, elapsed * fraction)


def finish_interval(policy: PollPolicy, estimate: RunEstimate) -> float:
    """The wait between polls inside a job's expected finish window.

    Proportional to the expected run time (``finish_fraction`` of it), within
    ``min_finish_interval`` and ``finish_interval``: a 0.2 s job is polled every 0.05 s,
    a minute-long one every 1.5 s.
    """
    expected = (estimate.low + estimate.high) / 2
    # A wide window (run times that vary) is crossed in at most _SPREAD_POLLS steps.
    spread = (estimate.high - estimate.low) / _SPREAD_POLLS
    step = max(policy.min_finish_interval, policy.finish_fraction * expected, spread)
    return min(policy.finish_interval, step)


def settle_interval(policy: PollPolicy, estimate: RunEstimate) -> float:
    """The uncertainty one poll at its end settles: ``_SETTLE_FRACTION`` of the run time.

    At least :func:`finish_interval`, at most the policy's ``finish_interval``: a 1 s job
    near the front of a queue is polled every 0.4 s until seen running, a minute-long one
    every 1.5 s.
    """
    step = finish_interval(policy, estimate)
    expected = (estimate.low + estimate.high) / 2
    return max(step, min(policy.finish_interval, _SETTLE_FRACTION * expected))


def is_consistent(policy: PollPolicy, estimate: RunEstimate) -> bool:
    """Whether the model's run time is consistent: its window no wider than the settle
    interval, so a job's finish is as well known as its start."""
    return estimate.high - estimate.low <= settle_interval(policy, estimate)


class Plan(msgspec.Struct, frozen=True):
    """The next poll of one job.

    Attributes:
        at: When to send it, on the scheduler's clock.
        key: Its priority when the budget is short: the time the job is expected to be
            done (smaller is more overdue, so it goes first).
    """

    at: float
    key: float
    finish: bool = False  # it aims at a queued job's expected finish: ask for the result


def plan_next(
    policy: PollPolicy,
    now: float,
    *,
    state: JobState | None,
    step: int,
    failures: int = 0,
    retry_after: float | None = None,
    started: tuple[float, float] | None = None,
    position: int | None = None,
    estimate: RunEstimate | None = None,
    drain: float | None = None,
    peers: int = 1,
    leader: bool = False,
    since: float | None = None,
    start_at: float | None = None,
    firm_start: bool = False,
    rand: float = 0.0,
) -> Plan:
    """Decide when to poll a job next. Pure: no clock, no randomness of its own.

    Args:
        policy: The policy in force.
        now: The time of the last poll's answer, on the scheduler's clock.
        state: The job's last observed state (None before any answer).
        step: Polls since the last transition, minus one.
        failures: Transient failures in a row just now (0 after a good answer).
        retry_after: What a 429 asked for, in seconds.
        started: When the job started running, as bounds ``(earliest, latest)``.
        position: Its last queue position.
        estimate: The model's learned run time.
        drain: The model's learned seconds per queue position.
        peers: Running jobs of the same model without an estimate (or queued ones without
            a drain rate), this one included.
        since: When the job entered its current state (the queue), if known.
        start_at: When a queued job should start (:meth:`RunTimes.queue_start`).
        firm_start: Whether that guess is firm (:meth:`RunTimes.firm_starts`).
        rand: A number in ``[0, 1]``, the jitter draw.
    """
    if failures:
        wait = backoff_interval(policy, failures - 1, rand=rand)
        if retry_after is not None:
            wait = max(wait, min(retry_after, policy.max_retry_after))
        return Plan(now + wait, now + wait)
    if policy.learn and state is JobState.IN_PROGRESS and estimate and started:
        return _plan_learned(policy, now, started, estimate, rand)
    if policy.learn and peers > 1 and estimate is None and state in _RUNNING:
        elapsed = now - started[0] if started else 0.0
        wait = _cold_wait(policy, elapsed, peers, rand)
        if leader:  # never sparser than the others: a small batch's share would be
            wait = min(wait, _jittered(policy, _lead_wait(policy, elapsed, peers), rand))
        return Plan(now + wait, now + wait)
    if policy.learn and peers > 1 and state is JobState.IN_QUEUE and not drain:
        # Queued side by side, drain unknown: spread out (up to max_interval, so a drain
        # step is soon seen) until one is.
        elapsed = now - since if since is not None else 0.0
        wait = min(policy.max_interval, _cold_wait(policy, elapsed, peers, rand))
        return Plan(now + wait, now + wait)
    if policy.learn and state is JobState.IN_QUEUE and start_at is not None and estimate:
        # Its start is guessed from when its model's workers free: poll just after it —
        # or, firm and for a consistent run time, just after the finish that start gives
        # (a /result: a guess that proves early costs that one poll, as the poll for the
        # start would have; but it answers no position, so a hint is checked first).
        margin = finish_interval(policy, estimate)
        if firm_start and is_consistent(policy, estimate):
            aimed = _plan_learned(policy, now, (start_at, start_at + margin), estimate, rand)
            return Plan(aimed.at, aimed.key, finish=True)
        margin = _jittered(policy, margin, rand)
        wait = min(policy.max_learned_interval, max(0.0, start_at - now) + margin)
        return Plan(now + wait, now + wait)
    wait = backoff_interval(policy, step, rand=rand)
    if policy.learn and state is JobState.IN_QUEUE and drain and position:
        # Jobs ahead of this one must leave first; no need to ask before they can have.
        ahead = min(policy.max_learned_interval, (position - 1) * drain)
        if estimate is not None:
            # Then the drain rate alone (aiming a little early, as queues drain in steps),
            # and near the front every settle interval: the start is seen that closely,
            # and one poll at the end of the finish window sees the finish.
            ahead *= _QUEUE_AIM
            wait = max(settle_interval(policy, estimate), ahead)
        wait = max(wait, _jittered(policy, ahead, rand))
    return Plan(now + wait, now + wait)


def _plan_learned(
    policy: PollPolicy,
    now: float,
    started: tuple[float, float],
    estimate: RunEstimate,
    rand: float,
) -> Plan:
    first = started[0] + estimate.low
    last = started[1] + estimate.high
    key = (first + last) / 2
    step = finish_interval(policy, estimate)
    # A wide window (an uncertain start, run times that vary) is crossed in
    # _WINDOW_POLLS polls, or at the settle interval if that takes more, but never at the
    # full finish interval: most of a varying model's jobs finish inside such a window
    # (or just past it), so this wait bounds their detection.
    wide = _WIDE_STEP * policy.finish_interval
    step = max(step, min(settle_interval(policy, estimate), wide, (last - first) / _WINDOW_POLLS))
    if now < first:
        # A window no wider than the settle interval (once ticks, answer times and the
        # run time's own spread are allowed for) needs one poll, at its end; others are
        # crossed from their start.
        narrow = settle_interval(policy, estimate) * _SETTLE_SLACK + step
        if last - first <= narrow and last - now <= policy.max_learned_interval:
            # Jittered past the end, not before it: a poll early by a tenth of the run
            # would most likely find the job still running, and cost one more.
            return Plan(last + policy.jitter * rand * step, key)
        aim = last if last - first <= narrow else first
        wait = _jittered(policy, min(policy.max_learned_interval, aim - now), rand)
    elif now <= last:
        wait = _jittered(policy, step, rand)
    else:
        # Overdue. The wait grows with the time since the window opened, up to a wide
        # window's step: when a batch started together, the window learned from its
        # finishers trails the survivors, which are "just overdue" all along. Far past the
        # window the estimate was wrong for this job: back off with the lateness, to
        # max_interval.
        cap = max(wide, step, min(policy.max_interval, (now - last) / 2))
        wait = _jittered(policy, min(cap, max(step, now - first)), rand)
    return Plan(now + wait, key)

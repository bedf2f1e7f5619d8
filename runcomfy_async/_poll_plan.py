"""Pure polling maths: the plain backoff, the learned run times, the next poll's plan.

No clock, no randomness, no I/O: every function takes ``now`` and a ``rand`` draw, so it is
tested without sleeping. :class:`~runcomfy_async._poll_budget.PollScheduler` does the waiting.

The learned schedule: a finished job gives its run time as bounds, because it was only
seen between polls (it started after the last ``in_queue`` answer and before the first
``in_progress`` one; it ended between the last running answer and the first terminal
one). From a model's recent bounds :class:`RunTimes` estimates the window its next job
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
from collections import deque
from datetime import datetime
from typing import TYPE_CHECKING, Final

import msgspec

from ._wire import JobState

if TYPE_CHECKING:
    from ._config import PollPolicy

__all__ = [
    "Plan",
    "RunEstimate",
    "RunTimes",
    "backoff_interval",
    "finish_interval",
    "plan_next",
    "run_bounds",
    "settle_interval",
]

_SAMPLES_KEPT: Final = 128  # enough that a batch's early finishers still shape the window
_DRAIN_WEIGHT: Final = 0.3
_LONGEST: Final = 7 * 24 * 3600.0  # no job runs (or is kept) longer; larger samples are noise
_RUNNING: Final = frozenset({JobState.IN_PROGRESS, JobState.UNKNOWN})
_SPREAD_POLLS: Final = 16  # the most finish intervals a varying run time's window takes
_WINDOW_POLLS: Final = 4  # a wide window is crossed in this many polls (or settle steps)
#: A start or finish no less certain than this fraction of the run time (within the finish
#: interval) is settled by one poll at its end: a queued job near the front is polled this
#: often, and a learned window this narrow gets a single poll.
_SETTLE_FRACTION: Final = 0.4
_SETTLE_SLACK: Final = 1.2
#: A first sample's window is padded by this fraction of the run time (less with more
#: samples): the next jobs may run a little longer, but a wide pad delays every poll
#: aimed at the window's end.
_ALLOWANCE: Final = 0.035
_RECHECK: Final = 8  # with no agreed run time, one is looked for every this many samples
_OUTLIERS: Final = 0.1  # the share of samples a consistent run time may disagree with
_LEAD_POLLS: Final = 5.0  # a batch leader's wait is elapsed × this / peers (or less)
_GUESS_GENERATIONS: Final = 5  # a queued job's start is guessed this many runs ahead at most
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


class RunEstimate(msgspec.Struct, frozen=True):
    """What the session has learned of a model's run time, in seconds.

    Attributes:
        low: The shortest run time to expect.
        high: The longest run time to expect.
        samples: How many finished jobs it rests on.
    """

    low: float
    high: float
    samples: int


class Plan(msgspec.Struct, frozen=True):
    """The next poll of one job.

    Attributes:
        at: When to send it, on the scheduler's clock.
        key: Its priority when the budget is short: the time the job is expected to be
            done (smaller is more overdue, so it goes first).
    """

    at: float
    key: float


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
        # Its start is guessed from when its model's workers free: poll just after it.
        margin = _jittered(policy, finish_interval(policy, estimate), rand)
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


def run_bounds(
    started: tuple[float, float],
    running_since: float,
    answered_at: float,
    created: float | None,
    server_run: float | None,
    *,
    queued: bool = True,
) -> tuple[float, float]:
    """The shortest and longest a finished job can have run, in seconds.

    From the polls alone: it started within ``started`` and was still running when the
    poll sent at ``running_since`` was answered; it was done by ``answered_at``. When the
    server said when the job was created and finished (``server_run`` seconds apart, on
    its clock) and when it was created on the caller's clock is known (``created``), the
    end is exact and only the start is uncertain — within ``started``, counted from its
    creation — which is far tighter than the polls (a job last seen running a second
    before its end taught "a second or more"). A job never seen ``queued`` may have
    started as soon as it was created, before its submit's answer arrived. Bounds that
    disagree (a server clock that lies) are ignored.
    """
    start_lo, start_hi = started
    if not queued and created is not None:
        start_lo = min(start_lo, created)
    shortest, longest = max(0.0, running_since - start_hi), answered_at - start_lo
    if created is not None and server_run is not None and server_run >= 0:
        low = server_run - (start_hi - created)
        high = server_run - (start_lo - created)
        if low <= longest and shortest <= high:
            shortest, longest = max(shortest, low), min(longest, high)
    return shortest, longest


class RunTimes:
    """Run times and queue drain rates per model, learned from this session's jobs.

    A finished job gives its run time as bounds, because it was only seen between polls:
    it started after the last ``in_queue`` answer and before the first ``in_progress``
    one, and ended between the last running answer and the first terminal one.
    """

    def __init__(self) -> None:
        self._runs: dict[str, deque[tuple[float, float]]] = {}
        # The run time the model's samples agree on, kept past the samples' eviction (the
        # first jobs, never queued, are the best measured), and which of the recent
        # samples disagreed with it: past _OUTLIERS of them, it is found afresh.
        self._agreed: dict[str, tuple[float, float]] = {}
        self._misses: dict[str, deque[bool]] = {}
        self._tries: dict[str, int] = {}  # samples since the model had no agreed run time
        self._drain: dict[str, float] = {}
        self._drain_sums: dict[str, tuple[float, float]] = {}  # decayed seconds, positions
        # Every poll plans with the estimate, but it changes only when a job finishes.
        self._estimates: dict[str, RunEstimate] = {}
        # When the model's jobs finished (on the caller's clock): when its workers free.
        self._finishes: dict[str, deque[float]] = {}
        self._offset: float | None = None  # the caller's clock minus the server's, at most

    def record_stamps(
        self,
        model_id: str | None,
        submitted: float | None,
        created: datetime | None,
        finished: datetime | None,
        seen: float,
    ) -> float | None:
        """Learn from a finished job's server stamps; return the seconds between them.

        A job whose submit was answered at ``submitted`` (the caller's clock) was created
        at ``created`` (the server's): the clocks' offset is at most their difference. With
        it, ``finished`` says when a worker of the model freed, on the caller's clock — no
        later than ``seen``, when the answer saying so arrived (a stamp in the future lies).
        """
        if created is not None and submitted is not None:
            offset = submitted - created.timestamp()
            if self._offset is None or offset < self._offset:
                self._offset = offset
        if finished is None:
            return None
        if model_id is not None and self._offset is not None:
            ends = self._finishes.setdefault(model_id, deque(maxlen=_SAMPLES_KEPT))
            ends.append(min(seen, finished.timestamp() + self._offset))
        return None if created is None else (finished - created).total_seconds()

    def local_time(self, stamp: datetime | None) -> float | None:
        """A server stamp on the caller's clock, by the smallest offset seen (None if
        none): nearer the truth than a submit answer's arrival, which lags the job's
        creation by however long that answer took."""
        if stamp is None or self._offset is None:
            return None
        return stamp.timestamp() + self._offset

    def queue_start(self, model_id: str | None, position: int, now: float) -> float | None:
        """When the job at ``position`` of the model's queue should start, if its finishes
        tell: each worker that finished in the last run frees again a run later (and
        every run after), the front job takes the first to free, the next the second…
        Workers are as many as finished in the last run, or as the run time over the
        drain rate says; one not seen is taken to free first (a guess too early costs a
        poll, one too late would cost a run). None without the facts, or too deep."""
        ends = self._finishes.get(model_id) if model_id is not None else None
        estimate, drain = self.estimate(model_id), self.drain(model_id)
        if not ends or estimate is None or not drain:
            return None
        run = (estimate.low + estimate.high) / 2
        latest = max(ends)
        free = sorted(
            f + run * max(1, math.ceil((now - f) / run)) for f in ends if f > latest - 0.9 * run
        )
        generations, slot = divmod(position - 1, max(len(free), round(run / drain)))
        if generations >= _GUESS_GENERATIONS:
            return None
        return (free[slot] if slot < len(free) else free[0]) + generations * run

    def record_run(self, model_id: str, shortest: float, longest: float) -> None:
        """Remember that a job of ``model_id`` ran between ``shortest`` and ``longest`` s."""
        if not 0 <= shortest <= longest <= _LONGEST:
            return
        samples = self._runs.setdefault(model_id, deque(maxlen=_SAMPLES_KEPT))
        samples.append((shortest, longest))
        self._estimates.pop(model_id, None)
        misses = self._misses.setdefault(model_id, deque(maxlen=_SAMPLES_KEPT))
        agreed = self._agreed.get(model_id)
        if agreed is not None and shortest <= agreed[1] and agreed[0] <= longest:
            self._agreed[model_id] = (max(shortest, agreed[0]), min(longest, agreed[1]))
            misses.append(False)
            return
        misses.append(True)
        if agreed is not None and sum(misses) <= _OUTLIERS * len(misses):
            return
        if agreed is None:
            tries = self._tries[model_id] = self._tries.get(model_id, 0) + 1
            if len(samples) > _RECHECK and tries % _RECHECK:
                return  # run times that vary: look for an agreement every few samples
        found = _agreed(samples) if len(samples) >= 3 else None
        if found is None:
            self._agreed.pop(model_id, None)
        else:
            self._agreed[model_id] = found
            misses.clear()

    def record_drain(self, model_id: str, seconds_per_position: float, positions: int = 1) -> None:
        """Fold one observed queue drain (``positions`` left in ``positions`` × the rate)
        into the model's rate: seconds over positions, each sum decaying by
        ``1 - _DRAIN_WEIGHT`` a sample, so one job's long view of its queue counts for
        more than a step between two polls (queues drain in steps, as workers free)."""
        if not 0 < seconds_per_position <= _LONGEST or positions < 1:
            return
        seconds, counted = self._drain_sums.get(model_id, (0.0, 0.0))
        keep = 1.0 - _DRAIN_WEIGHT
        seconds = seconds * keep + seconds_per_position * positions
        counted = counted * keep + positions
        self._drain_sums[model_id] = (seconds, counted)
        self._drain[model_id] = seconds / counted

    def drain(self, model_id: str | None) -> float | None:
        """Return the learned seconds per queue position, if any."""
        return None if model_id is None else self._drain.get(model_id)

    def estimate(self, model_id: str | None) -> RunEstimate | None:
        """Return the run time window to expect for the model's next job, if known.

        Consistent bounds (one run time fits all samples but a few) give their
        intersection, kept as samples are replaced while the new ones agree with it;
        otherwise the spread of the samples' midpoints (5th–95th percentile), padded by
        the measurement error and by an allowance that shrinks as samples accumulate.
        """
        if model_id is None:
            return None
        cached = self._estimates.get(model_id)
        if cached is None:
            samples = self._runs.get(model_id)
            if not samples:
                return None
            agreed = self._agreed.get(model_id)
            cached = self._estimates[model_id] = (
                _estimate(samples) if agreed is None else RunEstimate(*agreed, len(samples))
            )
        return cached


def _agreed(samples: deque[tuple[float, float]]) -> tuple[float, float] | None:
    """The run time all samples but a few (``_OUTLIERS``) allow, as bounds, if any.

    The samples that contain the run time most of them contain, intersected: one job
    mis-measured (a stamp's rounding, a lagging answer) must not turn one run time into a
    spread of them and every later job's single poll into several.
    """
    edges = sorted([(lo, 0) for lo, _ in samples] + [(hi, 1) for _, hi in samples])
    depth = best = 0
    point = 0.0
    for value, end in edges:  # a window opening at a value counts before one closing
        depth += -1 if end else 1
        if depth > best:
            best, point = depth, value
    if best < len(samples) - len(samples) * _OUTLIERS:
        return None
    inside = [(lo, hi) for lo, hi in samples if lo <= point <= hi]
    return max(lo for lo, _ in inside), min(hi for _, hi in inside)


def _estimate(samples: deque[tuple[float, float]]) -> RunEstimate:
    """The samples' spread, padded (see ``estimate``): no one run time fits them."""
    n = len(samples)
    mids = sorted((lo + hi) / 2 for lo, hi in samples)
    halfwidth = sum(hi - lo for lo, hi in samples) / (2 * n)
    pad = halfwidth / 2 + _ALLOWANCE * (sum(mids) / n) / n
    lo_mid = mids[int(0.05 * n)]
    hi_mid = mids[max(0, math.ceil(0.95 * n) - 1)]
    return RunEstimate(max(0.0, lo_mid - pad), hi_mid + pad, n)

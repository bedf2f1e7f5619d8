"""Learned run times and queue drain rates: what a session's finished jobs taught.

Pure, like :mod:`._poll_plan`, which plans polls from it. A finished job gives its run
time as bounds (:func:`run_bounds`), because it was only seen between polls; a model's
recent bounds give the window its next job will finish in (:class:`RunEstimate`), the
run time most of them agree on when there is one. Queue positions that fall give the
drain rate, and the server's finish stamps give when each worker frees again
(:meth:`RunTimes.queue_start`).
"""

from __future__ import annotations

import math
from collections import deque
from datetime import datetime
from typing import Final

import msgspec

__all__ = ["RunEstimate", "RunTimes", "run_bounds"]

_SAMPLES_KEPT: Final = 128  # enough that a batch's early finishers still shape the window
_DRAIN_WEIGHT: Final = 0.3
_LONGEST: Final = 7 * 24 * 3600.0  # no job runs (or is kept) longer; larger samples are noise
#: A first sample's window is padded by this fraction of the run time (less with more
#: samples): the next jobs may run a little longer, but a wide pad delays every poll
#: aimed at the window's end.
_ALLOWANCE: Final = 0.035
_RECHECK: Final = 8  # with no agreed run time, one is looked for every this many samples
_OUTLIERS: Final = 0.1  # the share of samples a consistent run time may disagree with
#: Workers seen to finish in the last run account for the drain rate up to this factor
#: (a drain measured on a queue that moves in steps is about that noisy).
_FIRM: Final = 1.4
_GUESS_GENERATIONS: Final = 5  # a queued job's start is guessed this many runs ahead at most


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
        self._workers: dict[str, int] = {}  # the most seen to finish within one run
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
            estimate = self.estimate(model_id)
            if estimate is not None:  # each worker finishes at most once within `low`
                freed = len(_last_run(ends, estimate.low))
                self._workers[model_id] = max(freed, self._workers.get(model_id, 0))
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
        Workers are as many as were seen to finish within one run, unless the drain rate
        says clearly more (other users' jobs in the queue): then as many as it says, one
        not seen taken to free first (a guess too early costs a poll, one too late would
        cost a run). None without the facts, too deep, or for a position seen more than
        a run before the latest finish."""
        facts = self._queue_facts(model_id)
        if facts is None:
            return None
        run, last, by_drain, workers = facts
        if now < max(last) - run:
            return None  # a position older than the last run: who started since is unknown
        # A worker that freed after the position was seen (a poll answered before the
        # finishes that taught this) takes the job at the front of that queue then.
        free = sorted(f if f > now else f + run * max(1, math.ceil((now - f) / run)) for f in last)
        if by_drain > _FIRM * workers:
            workers = max(len(free), round(by_drain))
        generations, slot = divmod(position - 1, workers)
        if generations >= _GUESS_GENERATIONS:
            return None
        return (free[slot] if slot < len(free) else free[0]) + generations * run

    def firm_starts(self, model_id: str | None) -> bool:
        """Whether the last run's finishes account for the drain (within ``_FIRM``): the
        queue is then this session's jobs on workers it has seen finish, and a guessed
        start is firm enough to aim a job's next poll at the finish it gives. Else —
        other users' jobs in the queue, or a drain rate measured across one step — a
        guess is only a hint."""
        facts = self._queue_facts(model_id)
        if facts is None:
            return False
        _, _, by_drain, workers = facts
        return by_drain <= _FIRM * workers

    def _queue_facts(self, model_id: str | None) -> tuple[float, list[float], float, int] | None:
        """The model's run time, its last run's finishes, its workers by the drain rate,
        and the most workers seen to finish within one run."""
        ends = self._finishes.get(model_id) if model_id is not None else None
        estimate, drain = self.estimate(model_id), self.drain(model_id)
        if not ends or estimate is None or not drain or model_id is None:
            return None
        run = (estimate.low + estimate.high) / 2
        last = _last_run(ends, run)
        return run, last, run / drain, max(len(last), self._workers.get(model_id, 0))

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


def _last_run(ends: deque[float], run: float) -> list[float]:
    """The finishes within (most of) ``run`` of the latest: one for each worker seen to
    free in the last run."""
    latest = max(ends)
    return [f for f in ends if f > latest - 0.9 * run]


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

"""The polling maths (pure) and the shared scheduler on a fake clock: nothing sleeps."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from runcomfy_async._config import DEFAULT_POLLING, DEFAULT_START_REQUESTS_PER_SECOND, PollPolicy
from runcomfy_async._poll_budget import PollScheduler, TokenBucket
from runcomfy_async._poll_plan import Plan, backoff_interval, plan_next
from runcomfy_async._retry import Backpressure
from runcomfy_async._run_times import RunEstimate, RunTimes
from runcomfy_async._wire import JobState

# The schedule the pure-maths tests below were written for (the defaults start faster now).
NO_JITTER = PollPolicy(jitter=0.0, first_interval=0.5, growth=1.5)


async def _idle() -> None:
    """Return once no task is ready to run (only this one, and timers, remain).

    asyncio has no autojump clock like trio's, and ``anyio.wait_all_tasks_blocked`` sleeps
    0.1 s of real time per busy check, so with thousands of tasks it would take minutes.
    An empty ready queue, seen from a task that just yielded, is the same condition.
    """
    loop = asyncio.get_running_loop()
    await asyncio.sleep(0)
    while loop._ready:  # type: ignore[attr-defined]  # noqa: ASYNC110 - no event to wait on
        await asyncio.sleep(0)


class FakeClock:
    """A virtual clock: ``sleep`` parks the task until :meth:`run` moves time on."""

    def __init__(self) -> None:
        self.now = 0.0
        self._sleepers: list[tuple[float, int, anyio.Event]] = []
        self._seq = itertools.count()

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await anyio.lowlevel.checkpoint()
            return
        event = anyio.Event()
        heapq.heappush(self._sleepers, (self.now + seconds, next(self._seq), event))
        await event.wait()

    async def run(self, until: float = math.inf) -> None:
        """Move time on, sleeper by sleeper, whenever every task is blocked."""
        while True:
            await _idle()
            if not self._sleepers or self._sleepers[0][0] > until:
                return
            wake, _, event = heapq.heappop(self._sleepers)
            self.now = max(self.now, wake)
            event.set()


# --- policy ---------------------------------------------------------------------------------


def test_defaults_are_documented_values() -> None:
    """The default policy polls 0.1 s → ×2 → 5 s; its budget has no cap and starts at 50/s."""
    assert DEFAULT_POLLING.first_interval == 0.1
    assert DEFAULT_POLLING.growth == 2.0
    assert DEFAULT_POLLING.max_interval == 5.0
    assert DEFAULT_POLLING.requests_per_second is None
    assert DEFAULT_POLLING.start_requests_per_second == DEFAULT_START_REQUESTS_PER_SECOND == 50.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"first_interval": -1.0},
        {"max_interval": math.inf},
        {"growth": 0.5},
        {"jitter": 1.5},
        {"requests_per_second": 0.0},
        {"burst": 0},
        {"burst": 2.5},
        {"max_consecutive_failures": 0},
        {"finish_interval": math.nan},
    ],
)
def test_policy_rejects_bad_values(kwargs: dict[str, float]) -> None:
    """A nonsensical policy fails where it is written, with ValueError."""
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        PollPolicy(**kwargs)  # type: ignore[arg-type]


def test_policy_is_frozen_and_keyword_only() -> None:
    """PollPolicy is an immutable value with keyword-only fields."""
    with pytest.raises(TypeError):
        PollPolicy(0.5)  # type: ignore[call-arg]
    with pytest.raises(AttributeError):
        DEFAULT_POLLING.growth = 2.0  # type: ignore[misc]


# --- plain backoff --------------------------------------------------------------------------


def test_backoff_grows_to_the_cap() -> None:
    """Without jitter the intervals are 0.5, 0.75, 1.125 … then 5 s for ever."""
    got = [backoff_interval(NO_JITTER, n) for n in range(8)]
    assert got[:3] == [0.5, 0.75, 1.125]
    assert got[-1] == 5.0
    assert got == sorted(got)
    assert backoff_interval(NO_JITTER, 10_000) == 5.0


def test_jitter_only_shortens() -> None:
    """Jitter shortens an interval by at most ``jitter`` of it and never passes the cap."""
    policy = PollPolicy(jitter=0.2)
    assert backoff_interval(policy, 20, rand=0.0) == 5.0
    assert backoff_interval(policy, 20, rand=1.0) == pytest.approx(4.0)


@given(
    step=st.integers(min_value=0, max_value=10**6),
    rand=st.floats(min_value=0.0, max_value=1.0),
    first=st.floats(min_value=0.0, max_value=10.0),
    cap=st.floats(min_value=0.0, max_value=100.0),
)
def test_backoff_is_bounded(step: int, rand: float, first: float, cap: float) -> None:
    """Every plain interval lies within [0, max_interval], whatever the step or draw."""
    policy = PollPolicy(first_interval=first, max_interval=cap, jitter=0.5)
    assert 0.0 <= backoff_interval(policy, step, rand=rand) <= cap


def test_plan_resets_after_a_transition() -> None:
    """Step 0 (just after a transition) plans the first interval again."""
    late = plan_next(NO_JITTER, 100.0, state=JobState.IN_QUEUE, step=9)
    fresh = plan_next(NO_JITTER, 100.0, state=JobState.IN_PROGRESS, step=0)
    assert late == Plan(105.0, 105.0)
    assert fresh == Plan(100.5, 100.5)


def test_retry_after_pushes_the_poll_and_is_capped() -> None:
    """A 429's Retry-After delays the next poll, up to max_retry_after."""
    asked = plan_next(NO_JITTER, 0.0, state=None, step=0, failures=1, retry_after=7.0)
    capped = plan_next(
        PollPolicy(jitter=0.0, max_retry_after=2.0),
        0.0,
        state=None,
        step=0,
        failures=1,
        retry_after=60.0,
    )
    assert asked.at == 7.0
    assert capped.at == 2.0


def test_failures_back_off() -> None:
    """Consecutive transient failures grow the wait like the plain schedule."""
    waits = [
        plan_next(NO_JITTER, 0.0, state=JobState.IN_QUEUE, step=0, failures=n).at for n in (1, 2, 3)
    ]
    assert waits == [0.5, 0.75, 1.125]


# --- the learned schedule -------------------------------------------------------------------


def test_learned_schedule_is_sparse_then_dense_then_backs_off() -> None:
    """With a known run time of 58–62 s: one jump to the window, 1.5 s inside, then back off."""
    estimate = RunEstimate(58.0, 62.0, 5)

    def at(now: float) -> Plan:
        return plan_next(
            NO_JITTER,
            now,
            state=JobState.IN_PROGRESS,
            step=3,
            started=(0.0, 1.0),
            estimate=estimate,
        )

    assert at(1.0) == Plan(31.0, 60.5)  # capped by max_learned_interval (30 s)
    assert at(31.0).at == 58.0  # lands on the window's first edge
    assert at(58.0).at == 59.5  # finish_interval inside the window
    assert at(63.0).at == 64.5  # overdue: finish_interval …
    assert at(80.0).at == 85.0  # … growing with lateness up to max_interval
    assert at(80.0).key == 60.5


def test_sixty_second_job_costs_few_polls_when_learned() -> None:
    """A 60 s job of a learned model is detected with at most a handful of polls."""
    estimate = RunEstimate(59.0, 61.5, 8)
    now, polls, finish = 0.2, 1, 60.3
    while now < finish:
        now = plan_next(
            NO_JITTER,
            now,
            state=JobState.IN_PROGRESS,
            step=polls,
            started=(0.0, 0.2),
            estimate=estimate,
        ).at
        polls += 1
    assert polls <= 6
    assert now - finish <= NO_JITTER.finish_interval


@pytest.mark.parametrize("rand", [0.0, 0.3, 0.7, 1.0])
def test_a_narrow_window_is_polled_once_just_past_its_end(rand: float) -> None:
    """A 0.2 s job of a model learned at 0.195-0.205 s: one poll at the window's end or a
    jitter's share of the finish interval after it, never before (an early poll would
    most likely find it running and cost another)."""
    policy = PollPolicy()
    estimate = RunEstimate(0.195, 0.205, 5)
    plan = plan_next(
        policy,
        0.01,
        state=JobState.IN_PROGRESS,
        step=0,
        started=(0.0, 0.0),
        estimate=estimate,
        rand=rand,
    )
    step = 0.05  # the finish interval of a 0.2 s job: min_finish_interval
    assert 0.205 <= plan.at <= 0.205 + policy.jitter * step + 1e-9
    assert plan.at == pytest.approx(0.205 + policy.jitter * rand * step)


def test_learning_can_be_switched_off() -> None:
    """With learn=False the plain schedule applies even with an estimate."""
    plan = plan_next(
        PollPolicy(jitter=0.0, learn=False, first_interval=0.5),
        10.0,
        state=JobState.IN_PROGRESS,
        step=0,
        started=(0.0, 1.0),
        estimate=RunEstimate(58.0, 62.0, 5),
    )
    assert plan.at == 10.5


def test_queue_drain_spaces_polls_of_a_deep_queue() -> None:
    """At position 5 with 2 s per position, the next poll waits for the 4 jobs ahead."""
    deep = plan_next(NO_JITTER, 0.0, state=JobState.IN_QUEUE, step=0, position=5, drain=2.0)
    front = plan_next(NO_JITTER, 0.0, state=JobState.IN_QUEUE, step=0, position=1, drain=2.0)
    assert deep.at == 8.0
    assert front.at == 0.5


def test_run_times_first_job_has_no_history() -> None:
    """A model never seen (or no model id) has no estimate: plain backoff applies."""
    times = RunTimes()
    assert times.estimate("m") is None
    assert times.estimate(None) is None
    assert times.drain("m") is None


def test_run_times_intersect_consistent_samples() -> None:
    """Samples that one run time fits give their intersection."""
    times = RunTimes()
    for lo, hi in [(58.0, 61.0), (59.0, 62.0), (58.5, 60.5)]:
        times.record_run("m", lo, hi)
    assert times.estimate("m") == RunEstimate(59.0, 60.5, 3)


def test_run_times_spread_of_varying_samples() -> None:
    """Run times that vary give the midpoints' spread, padded, and ignore garbage."""
    times = RunTimes()
    for lo, hi in [(9.0, 11.0), (19.0, 21.0), (14.0, 16.0)]:
        times.record_run("m", lo, hi)
    times.record_run("m", 5.0, 1.0)  # inverted: ignored
    times.record_run("m", -1.0, 3.0)  # negative: ignored
    estimate = times.estimate("m")
    assert estimate is not None
    assert estimate.samples == 3
    assert estimate.low < 10.0 < 20.0 < estimate.high
    assert estimate.high - estimate.low < 14.0


def test_drain_rate_is_an_ewma() -> None:
    """The drain rate starts at the first sample and moves towards new ones."""
    times = RunTimes()
    times.record_drain("m", 10.0)
    times.record_drain("m", 20.0)
    times.record_drain("m", math.inf)
    drain = times.drain("m")
    assert drain is not None
    assert 10.0 < drain < 20.0


# --- the token bucket -----------------------------------------------------------------------


def test_bucket_starts_full_then_refills_at_rate() -> None:
    """A bucket grants its burst at once, then one token per 1/rate seconds."""
    bucket = TokenBucket(rate=10.0, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.wait_time(0.0) == pytest.approx(0.1)
    assert bucket.take(0.1)
    assert not bucket.take(0.1)
    bucket.refund()
    assert bucket.take(0.1)


@given(
    times=st.lists(st.floats(min_value=0.0, max_value=10.0), min_size=1, max_size=300),
    rate=st.floats(min_value=0.5, max_value=50.0),
    burst=st.integers(min_value=1, max_value=10),
)
def test_bucket_never_exceeds_rate_plus_burst(times: list[float], rate: float, burst: int) -> None:
    """In any window of T seconds a bucket grants at most burst + rate * T tokens."""
    bucket = TokenBucket(rate=rate, burst=burst, now=0.0)
    granted = [t for t in sorted(times) if bucket.take(t)]
    for i, start in enumerate(granted):
        for j in range(i, len(granted)):
            assert j - i + 1 <= burst + rate * (granted[j] - start) + 1e-6


# --- the scheduler on a fake clock ----------------------------------------------------------


def _scheduler(clock: FakeClock, **kwargs: float) -> PollScheduler:
    policy = PollPolicy(**kwargs)  # type: ignore[arg-type]
    return PollScheduler(policy, clock=clock, sleep=clock.sleep, rand=lambda: 0.0)


@pytest.mark.anyio
async def test_turn_sleeps_until_due() -> None:
    """A poll due at t=3 is granted at t=3, not before."""
    clock = FakeClock()
    scheduler = _scheduler(clock)
    granted: list[float] = []

    async def one() -> None:
        await scheduler.turn(3.0)
        granted.append(clock())

    async with anyio.create_task_group() as tg:
        tg.start_soon(one)
        await clock.run()
    assert granted == [3.0]


@pytest.mark.anyio
async def test_ten_thousand_watchers_share_one_budget() -> None:
    """10,000 due polls go out at burst + rate * t at most, and every one is served."""
    clock = FakeClock()
    scheduler = _scheduler(clock, requests_per_second=50.0, burst=10)
    granted: list[float] = []

    async def one() -> None:
        await scheduler.turn(0.0)
        granted.append(clock())

    async with anyio.create_task_group() as tg:
        for _ in range(10_000):
            tg.start_soon(one)
        await clock.run()
    assert len(granted) == 10_000
    for t in (0.0, 0.5, 1.0, 10.0, 100.0, 199.8):
        assert sum(1 for g in granted if g <= t) <= 10 + 50.0 * t + 1e-6
    assert max(granted) == pytest.approx((10_000 - 10) / 50.0)
    assert scheduler.waiting == 0


@pytest.mark.anyio
async def test_most_overdue_job_is_polled_first() -> None:
    """When the budget is short, the job whose expected finish is earliest goes first."""
    clock = FakeClock()
    scheduler = _scheduler(clock, requests_per_second=1.0, burst=1)
    order: list[str] = []

    async def one(name: str, key: float) -> None:
        await scheduler.turn(0.0, key=key)
        order.append(name)

    async with anyio.create_task_group() as tg:
        tg.start_soon(one, "hog", 0.0)  # takes the only token
        await _idle()
        for name, key in [("just-started", 50.0), ("overdue", -30.0), ("due", 0.0)]:
            tg.start_soon(one, name, key)
        await clock.run()
    assert order == ["hog", "overdue", "due", "just-started"]


@pytest.mark.anyio
async def test_cancelled_waiter_leaves_the_line() -> None:
    """A waiter cancelled in line takes no token and the others still get theirs."""
    clock = FakeClock()
    scheduler = _scheduler(clock, requests_per_second=1.0, burst=1)
    served: list[str] = []

    async def one(name: str) -> None:
        await scheduler.turn(0.0)
        served.append(name)

    async with anyio.create_task_group() as tg:
        tg.start_soon(one, "first")
        await _idle()
        with anyio.CancelScope() as doomed_scope:
            tg.start_soon(one, "second")
            tg.start_soon(one, "third")
            await _idle()
            inner = anyio.CancelScope()

            async def doomed() -> None:
                with inner:
                    await scheduler.turn(0.0)
                    served.append("doomed")

            tg.start_soon(doomed)
            await _idle()
            inner.cancel()
        assert not doomed_scope.cancel_called
        await clock.run()
    assert served == ["first", "second", "third"]
    assert clock() == 2.0


@pytest.mark.anyio
async def test_timekeeper_cancelled_hands_over() -> None:
    """If the waiter keeping time is cancelled, the next one takes over and is served."""
    clock = FakeClock()
    scheduler = _scheduler(clock, requests_per_second=1.0, burst=1)
    served: list[str] = []
    keeper = anyio.CancelScope()

    async def first_in_line() -> None:
        with keeper:
            await scheduler.turn(0.0)
            served.append("keeper")

    async def later() -> None:
        await scheduler.turn(0.0)
        served.append("later")

    await scheduler.turn(0.0)  # spend the burst
    async with anyio.create_task_group() as tg:
        tg.start_soon(first_in_line)
        await _idle()
        tg.start_soon(later)
        await _idle()
        keeper.cancel()
        await clock.run()
    assert served == ["later"]
    assert clock() == 1.0


@pytest.mark.anyio
async def test_backpressure_holds_every_poll() -> None:
    """During a session-wide 429 pause no poll is granted, even with tokens to spare."""
    clock = FakeClock()
    backpressure = Backpressure(clock)
    scheduler = PollScheduler(
        PollPolicy(requests_per_second=100.0, burst=5),
        backpressure=backpressure,
        clock=clock,
        sleep=clock.sleep,
    )
    backpressure.pause(4.0)
    granted: list[float] = []

    async def one() -> None:
        await scheduler.turn(0.0)
        granted.append(clock())

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(one)
        await clock.run()
    assert granted == [4.0, 4.0, 4.0]


@pytest.mark.anyio
async def test_timekeeper_cancelled_during_a_pause_hands_over() -> None:
    """Losing the waiter that keeps time during a 429 pause strands no one."""
    clock = FakeClock()
    backpressure = Backpressure(clock)
    scheduler = PollScheduler(
        PollPolicy(requests_per_second=10.0, burst=1),
        backpressure=backpressure,
        clock=clock,
        sleep=clock.sleep,
    )
    backpressure.pause(3.0)
    served: list[float] = []
    keeper = anyio.CancelScope()

    async def first_in_line() -> None:
        with keeper:
            await scheduler.turn(0.0)

    async def later() -> None:
        await scheduler.turn(0.0)
        served.append(clock())

    async with anyio.create_task_group() as tg:
        tg.start_soon(first_in_line)
        await _idle()
        tg.start_soon(later)
        await _idle()
        keeper.cancel()
        await clock.run()
    assert served == [3.0]

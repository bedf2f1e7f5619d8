"""The adaptive request budget: pure rate maths, the scheduler on a fake clock, and the
simulator's rate-limit mode over real HTTP. Nothing sleeps on the wall clock."""

from __future__ import annotations

import asyncio
import itertools

import anyio
import pytest

from runcomfy_async import Client, PollPolicy, RetryPolicy
from runcomfy_async._config import DEFAULT_POLLING
from runcomfy_async._poll_budget import AdaptiveRate, PollScheduler
from runcomfy_async._poll_plan import finish_interval, plan_next
from runcomfy_async._run_times import RunEstimate
from runcomfy_async._wire import JobState
from runcomfy_async.testing import RateLimit, Simulator

from .conftest import GOOD_INPUTS, WAN25
from .test_polling import FakeClock, _idle

# --- the rate, pure ---------------------------------------------------------------------------


def test_rate_grows_while_answers_are_good_and_requests_wait() -> None:
    """Good answers while the budget holds requests back raise the rate; idle ones do not."""
    rate = AdaptiveRate(DEFAULT_POLLING, now=0.0)
    start = rate.rate
    for i in range(10):
        rate.answered(i * 0.01, binding=False)
    assert rate.rate == start
    for i in range(10):
        rate.answered(0.1 + i * 0.01, binding=True)
    assert rate.rate >= start + 50


def test_no_burst_larger_than_half_the_good_answers_of_the_last_second() -> None:
    """Before any 429, the bucket never holds more than half of what the server answered
    well over the last second: a batch woken together is not a burst the server has shown
    it takes, and a fresh client's first answers may be the server's own burst (at 5 req/s
    with a burst of 5, a bucket of 5 after them was refused 4 of 5)."""
    rate = AdaptiveRate(DEFAULT_POLLING, now=0.0)
    assert rate.bucket.burst == 1.0  # nothing answered yet
    for i in range(6):
        rate.answered(0.1 + i * 0.01, binding=True)
    assert rate.bucket.burst <= 3
    for i in range(100):
        rate.answered(0.2 + i * 0.001, binding=True)
    assert rate.bucket.burst == DEFAULT_POLLING.burst  # the policy's largest burst
    rate.answered(5.0, binding=True)  # after a quiet spell only the last answer counts
    assert rate.bucket.burst == 1.0


def test_rate_has_no_fixed_ceiling_but_honours_a_hard_cap() -> None:
    """Uncapped, the rate passes any fixed number; with requests_per_second it stops there."""
    free = AdaptiveRate(DEFAULT_POLLING, now=0.0)
    capped = AdaptiveRate(PollPolicy(requests_per_second=30.0), now=0.0)
    for i in range(1000):
        free.answered(i * 0.001, binding=True)
        capped.answered(i * 0.001, binding=True)
    assert free.rate > 1000
    assert capped.rate == 30.0


def test_429_drops_the_rate_multiplicatively_once_per_round() -> None:
    """A 429 drops the rate to at most 0.85 of it; 429s of requests sent before do not."""
    rate = AdaptiveRate(DEFAULT_POLLING, now=0.0)
    for i in range(100):
        rate.answered(i * 0.01, binding=True)
    before = rate.rate
    assert rate.refused(sent=0.99, now=1.0)
    dropped = rate.rate
    assert dropped <= 0.85 * before
    assert not rate.refused(sent=0.995, now=1.001)  # sent before the drop: old news
    assert rate.rate == dropped
    assert rate.refused(sent=1.01, now=1.02)
    assert rate.rate <= 0.85 * dropped


def test_429_drops_to_what_the_server_answered() -> None:
    """After slow start overshoots, a 429 lands near the good-answer rate, not half-way."""
    rate = AdaptiveRate(DEFAULT_POLLING, now=0.0)
    for i in range(40):  # 40 good answers in the last second: the server allows ~40/s
        rate.answered(0.5 + i * 0.0125, binding=True)
    assert rate.rate > 400
    rate.refused(sent=1.0, now=1.0)
    assert 30 <= rate.rate <= 50  # not 0.5 × 450


def test_after_a_429_growth_is_gentle() -> None:
    """Once limited, 100 good answers raise the rate by about 5 %, not by multiples."""
    rate = AdaptiveRate(DEFAULT_POLLING, now=0.0)
    rate.refused(sent=0.0, now=0.0)
    before = rate.rate
    for i in range(100):
        rate.answered(1.0 + i * 0.01, binding=True)
    assert before < rate.rate <= before * 1.12


def test_a_hard_cap_bounds_how_far_429s_drop_the_rate() -> None:
    """Under requests_per_second=R, a run of 429s never takes the rate below R / 10."""
    rate = AdaptiveRate(PollPolicy(requests_per_second=1000.0), now=0.0)
    for i in range(50):
        rate.refused(sent=i * 0.01, now=i * 0.01 + 0.001)
    assert rate.rate == pytest.approx(100.0)
    free = AdaptiveRate(DEFAULT_POLLING, now=0.0)
    for i in range(50):
        free.refused(sent=i * 0.01, now=i * 0.01 + 0.001)
    assert free.rate == pytest.approx(0.2)


def test_a_quiet_spell_recovers_the_rate_a_run_of_429s_took() -> None:
    """After 429s drove the rate down, 2 s without one bring it back near where they began."""
    rate = AdaptiveRate(DEFAULT_POLLING, now=0.0)
    for i in range(20):
        rate.refused(sent=i * 0.01, now=i * 0.01 + 0.001)  # 50/s driven to the floor
    assert rate.rate < 1.0
    for i in range(100):  # still inside the run of 429s: gentle probing only
        rate.answered(0.3 + i * 0.01, binding=True)
    assert rate.rate < 1.2
    for i in range(300):  # 2 % an answer regains 0.85 × 50/s (~270 answers), then probes
        rate.answered(3.0 + i * 0.01, binding=True)
    assert 0.85 * 50.0 <= rate.rate <= 0.85 * 50.0 * 1.0005**60


def test_slow_start_serves_a_cold_batch_s_first_polls_within_a_fifth_of_a_second() -> None:
    """300 requests due at once on a fresh budget, each answered well at once: all are sent
    within 0.2 s (a batch of 0.2 s jobs must not wait for its own first polls)."""
    rate = AdaptiveRate(DEFAULT_POLLING, now=0.0)
    now, sent = 0.0, 0
    while sent < 300:
        if rate.bucket.take(now):
            sent += 1
            rate.answered(now, binding=True)
        else:
            now += rate.bucket.wait_time(now)
    assert now <= 0.2


def test_no_burst_after_a_429() -> None:
    """After a 429 the bucket is empty: the next token comes only at the learned rate."""
    rate = AdaptiveRate(DEFAULT_POLLING, now=0.0)
    assert rate.bucket.take(0.0)
    rate.refused(sent=0.0, now=0.0)
    assert not rate.bucket.take(0.0)
    assert rate.bucket.wait_time(0.0) == pytest.approx(1.0 / rate.rate)


# --- the finish interval ----------------------------------------------------------------------


def test_finish_interval_scales_with_the_learned_run_time() -> None:
    """Inside the window: 0.05 s for a 0.2 s job, 0.075 s at 3 s, 1 s at 40 s, 1.5 s at 60 s+."""
    policy = PollPolicy(jitter=0.0)
    got = {
        run: finish_interval(policy, RunEstimate(run * 0.98, run * 1.02, 5))
        for run in (0.2, 3.0, 40.0, 60.0, 600.0)
    }
    assert got[0.2] == pytest.approx(0.05)
    assert got[3.0] == pytest.approx(0.075)
    assert got[40.0] == pytest.approx(1.0)
    assert got[60.0] == pytest.approx(1.5)
    assert got[600.0] == pytest.approx(1.5)
    inside = plan_next(
        policy,
        3.0,
        state=JobState.IN_PROGRESS,
        step=4,
        started=(0.0, 0.01),
        estimate=RunEstimate(2.95, 3.05, 5),
    )
    assert inside.at == pytest.approx(3.075)


def test_cold_peers_spread_and_grow_faster() -> None:
    """Unlearned jobs running side by side poll less each, at spread-out times."""
    policy = DEFAULT_POLLING
    alone = [plan_next(policy, 0.0, state=JobState.IN_PROGRESS, step=s).at for s in range(6)]
    many = [0.0]
    for s in range(5):
        many.append(
            plan_next(
                policy,
                many[-1],
                state=JobState.IN_PROGRESS,
                step=s,
                peers=256,
                started=(0.0, 0.0),
                rand=0.5,
            ).at
        )
    assert many[-1] > 5 * alone[-1]
    draws = {
        plan_next(
            policy, 1.0, state=JobState.IN_PROGRESS, step=2, peers=256, started=(0.0, 0.0), rand=r
        ).at
        for r in (0.0, 0.5, 0.99)
    }
    assert len(draws) == 3


# --- the scheduler on a fake clock ------------------------------------------------------------


class _Job:
    """A stand-in watcher: the scheduler only keeps weak references to it."""


def test_the_earliest_started_unlearned_job_leads_its_batch() -> None:
    """One leader per model among its running unlearned jobs: the earliest started (a lone
    job leads the batch that may follow it); when it leaves, the next earliest takes over;
    a learned model has none."""
    sched = PollScheduler()
    jobs = [_Job() for _ in range(4)]
    starts = [0.3, 0.1, 0.2, 0.4]
    assert sched.cold_peers(WAN25, jobs[0], JobState.IN_PROGRESS) == 1
    assert sched.cold_leader(WAN25, jobs[0], starts[0])  # alone: it leads whoever follows
    for job in jobs[1:]:
        sched.cold_peers(WAN25, job, JobState.IN_PROGRESS)
    leads = [sched.cold_leader(WAN25, job, start) for job, start in zip(jobs, starts, strict=True)]
    assert leads == [True, True, False, False]  # the first asks alone, then 0.1 takes over
    assert [sched.cold_leader(WAN25, j, s) for j, s in zip(jobs, starts, strict=True)] == [
        False,
        True,
        False,
        False,
    ]
    sched.cold_peers(WAN25, jobs[1], JobState.SUCCEEDED)  # it finished: out of the batch
    assert sched.cold_leader(WAN25, jobs[2], starts[2])
    assert not sched.cold_leader(WAN25, jobs[0], starts[0])
    sched.record_run(WAN25, 1.0, 1.1)
    sched.cold_peers(WAN25, jobs[2], JobState.IN_PROGRESS)  # learned: no longer cold
    assert not sched.cold_leader(WAN25, jobs[2], starts[2])


@pytest.mark.anyio
async def test_no_starvation_every_job_is_served_within_a_bound() -> None:
    """A job whose key is far in the future is still served, though urgent ones keep coming."""
    clock = FakeClock()
    scheduler = PollScheduler(
        PollPolicy(requests_per_second=10.0, burst=1), clock=clock, sleep=clock.sleep
    )
    served: dict[str, float] = {}

    async def one(name: str, at: float, key: float) -> None:
        await scheduler.turn(at, key=key)
        served[name] = clock()

    async with anyio.create_task_group() as tg:
        tg.start_soon(one, "patient", 0.0, 1e9)
        for i in range(400):  # 40 s of urgent demand at 10/s, each due as it arrives
            tg.start_soon(one, f"urgent{i}", i * 0.1, -1e9)
        await clock.run()
    assert served["patient"] <= 5.0 + 1.0


@pytest.mark.anyio
async def test_result_and_cancel_draw_from_the_budget() -> None:
    """acquire() (what result fetches and cancels call) spends the same tokens as polls."""
    clock = FakeClock()
    scheduler = PollScheduler(
        PollPolicy(requests_per_second=2.0, burst=2), clock=clock, sleep=clock.sleep
    )
    stamps: list[float] = []

    async def poll() -> None:
        await scheduler.turn(0.0)
        stamps.append(clock())

    async def fetch() -> None:
        await scheduler.acquire(float("-inf"))
        stamps.append(clock())

    async with anyio.create_task_group() as tg:
        for _ in range(2):
            tg.start_soon(poll)
        await _idle()
        for _ in range(2):
            tg.start_soon(fetch)
        await clock.run()
    assert stamps == [0.0, 0.0, 0.5, 1.0]


@pytest.mark.anyio
async def test_retry_after_pauses_the_whole_budget() -> None:
    """A 429 with Retry-After: 3 holds every request of the session for 3 s."""
    clock = FakeClock()
    scheduler = PollScheduler(DEFAULT_POLLING, clock=clock, sleep=clock.sleep)
    scheduler.refused(sent=0.0, retry_after=3.0)
    granted: list[float] = []

    async def one() -> None:
        await scheduler.acquire()
        granted.append(clock())

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(one)
        await clock.run()
    assert granted[0] == 3.0
    assert granted == sorted(granted) and granted[-1] > 3.0  # no burst after the pause


# --- over HTTP, against the simulator's rate-limit mode --------------------------------------


@pytest.mark.anyio
async def test_rate_limited_batch_all_succeed_with_few_429s() -> None:
    """20 jobs against a 20 req/s limit (with Retry-After): all succeed, few requests refused.

    The batch learns from its first finisher and the rest are polled together: an
    overshoot of the limit (unknown, with a burst allowance the batch may have spent) is
    refused as one burst, in one episode (one Retry-After pause), never again and again.
    """
    limit = RateLimit(
        requests_per_second=20.0, routes=("status", "result", "cancel"), retry_after="seconds"
    )
    async with Simulator(clock="wall", workers=1000, run_seconds=0.2, rate_limit=limit) as sim:
        async with Client(token=sim.token, base_url=sim.url, retry=RetryPolicy()) as client:
            with anyio.fail_after(30):
                results = await asyncio.gather(*(client.run(WAN25, GOOD_INPUTS) for _ in range(20)))
        assert all(r.output is not None for r in results)
        # At most one burst refused (what was in flight when the first 429 came back) …
        assert sim.stats.rate_limited <= DEFAULT_POLLING.burst
        refused = [r.t for r in sim.log if r.status == 429]
        # … and in one episode: after its Retry-After pause, the learned rate holds.
        assert all(b - a <= 0.5 for a, b in itertools.pairwise(refused))

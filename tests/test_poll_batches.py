"""Whole batches planned with plan_next alone: request counts and detection, no I/O, no sleep."""

from __future__ import annotations

import heapq
import math
import random
from datetime import UTC, datetime, timedelta

import pytest

from runcomfy_async import PollPolicy
from runcomfy_async._poll_plan import Plan, plan_next, settle_interval
from runcomfy_async._run_times import RunEstimate, RunTimes, run_bounds
from runcomfy_async._wire import JobState

POLICY = PollPolicy()


def _random_batch(jobs: int, seed: int) -> tuple[list[int], list[float]]:
    """Run ``jobs`` jobs of 2–20 s started together; return polls and detection per job."""
    rng = random.Random(seed)
    runs = [rng.uniform(2.0, 20.0) for _ in range(jobs)]
    times = RunTimes()
    polls, detect = [1] * jobs, [0.0] * jobs
    last_seen = [0.0] * jobs
    steps = [0] * jobs

    def plan(i: int) -> float:
        estimate = times.estimate("m")
        return plan_next(
            POLICY,
            last_seen[i],
            state=JobState.IN_PROGRESS,
            step=steps[i],
            started=(0.0, 0.0),
            estimate=estimate,
            peers=len(heap) + 1 if estimate is None else 1,
            rand=rng.random(),
        ).at

    heap = [(0.0, i) for i in range(jobs)]  # every job's first poll at once
    while heap:
        now, i = heapq.heappop(heap)
        if now >= runs[i]:
            detect[i] = now - runs[i]
            first = times.estimate("m") is None
            times.record_run("m", last_seen[i], now)
            if first:  # the scheduler wakes the batch to re-plan with what it learned
                heap = [(plan(j), j) for _, j in heap]
                heapq.heapify(heap)
            continue
        last_seen[i] = now
        steps[i] += 1
        polls[i] += 1
        heapq.heappush(heap, (plan(i), i))
    return polls, detect


def test_random_run_times_stay_within_a_request_bound() -> None:
    """300 jobs of 2–20 s started together: ≤ 20 polls a job on average (the schedule before
    this rule took 76), p95 detection ≤ 1.5 s.

    The window learned from a batch's finishers trails its survivors, which are "just
    overdue" all along: their waits must still grow to the finish interval.
    """
    polls, detect = _random_batch(300, seed=3)
    assert sum(polls) / len(polls) <= 20
    assert sorted(detect)[int(0.95 * len(detect))] <= 1.5


def test_overdue_wait_grows_from_the_window_start_to_a_wide_window_step() -> None:
    """Just past a narrow window, the wait is the time since it opened, capped at 1.2 s
    (0.8 × the finish interval: a survivor of a varying model is detected within it)."""
    estimate = RunEstimate(2.0, 2.2, 10)

    def wait(now: float) -> float:
        plan = plan_next(
            PollPolicy(jitter=0.0),
            now,
            state=JobState.IN_PROGRESS,
            step=5,
            started=(0.0, 0.0),
            estimate=estimate,
        )
        return plan.at - now

    assert wait(2.5) == 0.5
    assert wait(3.0) == 1.0
    assert wait(4.0) == pytest.approx(1.2)  # 0.8 x the finish interval
    assert wait(30.0) == 5.0  # far past it: lateness, up to max_interval


def _running(
    now: float, started: tuple[float, float], estimate: RunEstimate, *, step: int = 5
) -> Plan:
    """The next poll of a running job of a learned model, with no jitter."""
    return plan_next(
        PollPolicy(jitter=0.0),
        now,
        state=JobState.IN_PROGRESS,
        step=step,
        started=started,
        estimate=estimate,
    )


def test_a_wide_window_is_crossed_at_most_every_0_8_finish_intervals() -> None:
    """Run times of 2–20 s: inside the window a poll every 1.2 s, not the full 1.5 s, so
    the p95 detection of a varying model stays clear of the finish interval."""
    plan = _running(10.0, (0.0, 0.0), RunEstimate(2.0, 20.0, 50))
    assert plan.at - 10.0 == pytest.approx(1.2)


def test_deep_queue_follows_the_drain_rate_then_the_settle_interval() -> None:
    """Queued at 201 with 0.1 s a position: one wait of 0.8 × 20 s, then 0.4 s near the front."""
    policy = PollPolicy(jitter=0.0)
    estimate = RunEstimate(0.98, 1.02, 20)

    def wait(position: int) -> float:
        plan = plan_next(
            policy,
            0.0,
            state=JobState.IN_QUEUE,
            step=3,
            position=position,
            drain=0.1,
            estimate=estimate,
        )
        return plan.at

    assert wait(201) == pytest.approx(16.0)
    assert wait(1) == settle_interval(policy, estimate) == 0.4
    assert wait(3) == 0.4


def test_start_seen_within_the_settle_interval_needs_one_poll() -> None:
    """A 1 s job seen starting within 0.4 s is polled once, at its window's end."""
    plan = _running(10.4, (10.0, 10.4), RunEstimate(0.98, 1.02, 20), step=0)
    assert plan.at == 10.4 + 1.02


def test_queued_peers_without_a_drain_rate_spread_out() -> None:
    """Many queued jobs of a model with no drain rate poll at spread-out, sparser times."""
    alone = plan_next(POLICY, 1.0, state=JobState.IN_QUEUE, step=3, since=0.0, rand=0.5)
    draws = {
        plan_next(POLICY, 1.0, state=JobState.IN_QUEUE, step=3, peers=400, since=0.9, rand=r).at
        for r in (0.0, 0.5, 0.99)
    }
    assert len(draws) == 3
    assert max(draws) > alone.at


def _consistent_batch(
    jobs: int, run: float, *, leader: bool, seed: int = 5
) -> tuple[list[int], list[float], float]:
    """``jobs`` cold jobs of exactly ``run`` s, submitted over 60 ms, each seen running at its
    first poll; return polls and detection per job, and how long after the batch's first
    finish it learned the run time (a poll's answer is instant).

    Mirrors the watcher: the earliest-started unlearned job leads (``leader``), a finish
    teaches the run time from the polls and the server's created/finished stamps, and the
    first one wakes the batch to re-plan, presuming each job (never seen queued) started at
    its submit.
    """
    rng = random.Random(seed)
    submit = sorted(rng.uniform(0.0, 0.06) for _ in range(jobs))
    seen_running = [s + 0.01 for s in submit]  # the first poll, just after the submit
    times = RunTimes()
    polls, detect, last_seen = [2] * jobs, [0.0] * jobs, list(seen_running)
    finished = [False] * jobs
    learned = math.inf

    def plan(i: int) -> float:
        estimate = times.estimate("m")
        cold = [j for j in range(jobs) if not finished[j]] if estimate is None else []
        started = (submit[i], submit[i]) if estimate else (submit[i], seen_running[i])
        return plan_next(
            POLICY,
            last_seen[i],
            state=JobState.IN_PROGRESS,
            step=polls[i] - 2,
            started=started,
            estimate=estimate,
            peers=len(cold) or 1,
            leader=leader and bool(cold) and i == cold[0],
            rand=rng.random(),
        ).at

    heap = [(plan(i), i) for i in range(jobs)]
    heapq.heapify(heap)
    while heap:
        now, i = heapq.heappop(heap)
        if now >= submit[i] + run:
            finished[i], detect[i] = True, now - submit[i] - run
            first = times.estimate("m") is None
            started = (submit[i], seen_running[i])
            times.record_run(
                "m",
                *run_bounds(started, last_seen[i], now, submit[i], run),
            )
            if first:
                learned = now - submit[0] - run
                heap = [(plan(j), j) for _, j in heap]
                heapq.heapify(heap)
            continue
        last_seen[i] = now
        polls[i] += 1
        heapq.heappush(heap, (plan(i), i))
    return polls, detect, learned


def test_a_cold_batch_learns_from_its_leader_and_the_server_clock() -> None:
    """300 cold 3 s jobs: p95 detection <= 5 % of the run with <= 8 requests each; the
    leader has the batch learn within 2.5 % of the run of its first finish (the spread-out
    polls alone take longer).
    """
    lags = {True: [], False: []}
    for seed in range(8):
        for leader in (True, False):
            polls, detect, lag = _consistent_batch(300, 3.0, leader=leader, seed=seed)
            lags[leader].append(lag)
            if leader:
                assert sorted(detect)[int(0.95 * len(detect))] <= 0.15
                assert sum(polls) / len(polls) + 1 <= 8  # + the submit
    assert max(lags[True]) <= 0.025 * 3.0 + 1e-9
    assert sum(lags[True]) < sum(lags[False])


def test_the_leader_polls_at_a_fraction_of_its_run_so_far() -> None:
    """The batch's leader waits a share of its elapsed run that shrinks with the batch."""
    policy = PollPolicy(jitter=0.0)

    def wait(elapsed: float, peers: int, leader: bool) -> float:
        plan = plan_next(
            policy,
            elapsed,
            state=JobState.IN_PROGRESS,
            step=3,
            started=(0.0, 0.0),
            peers=peers,
            leader=leader,
        )
        return plan.at - elapsed

    assert wait(10.0, 300, True) == pytest.approx(0.25)  # finish_fraction: 2.5 %
    assert wait(10.0, 20, True) == pytest.approx(2.5)  # 5 / 20 of it
    assert wait(0.5, 300, True) == pytest.approx(policy.min_finish_interval)
    assert wait(10.0, 300, False) > 1.0  # the others stay spread out


def test_server_stamps_tighten_a_finished_job_s_bounds() -> None:
    """The polls say "0.9 to 3.1 s"; the server's 3.0 s between created and finished, with a
    start within 0.05 s of the submit, say "2.95 to 3.0"; stamps that disagree are ignored."""
    started, running_since, answered, submitted = (10.0, 10.05), 11.0, 13.1, 10.0
    assert run_bounds(started, running_since, answered, None, None) == pytest.approx((0.95, 3.1))
    assert run_bounds(started, running_since, answered, submitted, 3.0) == pytest.approx(
        (2.95, 3.0)
    )
    assert run_bounds(started, running_since, answered, submitted, 9.0) == pytest.approx(
        (0.95, 3.1)
    )
    assert run_bounds(started, running_since, answered, submitted, -1.0) == pytest.approx(
        (0.95, 3.1)
    )


def test_a_job_never_seen_queued_may_have_started_before_its_submit_was_answered() -> None:
    """Created at 10.0 (the server's stamps, on our clock), run 1.0 s, its submit answered at
    10.02: counting its start from the answer taught "at most 0.98 s" — a run time every
    later 1 s job then disagreed with. Never seen queued, its start counts from creation."""
    started, running_since, answered, created = (10.02, 10.05), 10.5, 11.1, 10.0
    low, high = run_bounds(started, running_since, answered, created, 1.0, queued=False)
    assert low <= 1.0 <= high
    low, high = run_bounds(started, running_since, answered, created, 1.0)
    assert high < 1.0  # seen queued at 10.02, it cannot have started before


def test_local_time_puts_a_server_stamp_on_our_clock_by_the_least_lag() -> None:
    """The offset is the smallest (answer time - created stamp) seen: the least-lagged submit."""
    times = RunTimes()
    base = datetime(2026, 1, 1, tzinfo=UTC)
    assert times.local_time(base) is None  # no offset yet
    times.record_stamps("m", 100.3, base, None, 100.3)  # answered 0.3 s after creation
    times.record_stamps("m", 100.05 + 1, base + timedelta(seconds=1), None, 101.05)
    assert times.local_time(base + timedelta(seconds=2)) == pytest.approx(102.05)


def test_a_few_mismeasured_samples_do_not_widen_a_consistent_run_time() -> None:
    """Twenty 1 s jobs agree on 0.99–1.01 s; one mis-measured sample ("0.5–0.9 s") used to
    turn the window into a spread of midpoints; it is an outlier now."""
    times = RunTimes()
    for _ in range(20):
        times.record_run("m", 0.99, 1.01)
    times.record_run("m", 0.5, 0.9)
    estimate = times.estimate("m")
    assert estimate is not None
    assert (estimate.low, estimate.high) == pytest.approx((0.99, 1.01))


def test_an_agreed_run_time_outlives_its_samples() -> None:
    """The first jobs (never queued) are measured to 0.01 s; the deep queue's later ones to
    a second. Once the first samples are replaced, the window they taught stays."""
    times = RunTimes()
    for _ in range(5):
        times.record_run("m", 0.995, 1.005)
    for i in range(500):
        times.record_run("m", 0.5 + (i % 7) / 20, 1.3 + (i % 5) / 10)
    estimate = times.estimate("m")
    assert estimate is not None
    assert (estimate.low, estimate.high) == pytest.approx((0.995, 1.005))


def test_a_changed_run_time_is_learned_afresh() -> None:
    """A model whose jobs took 1 s now takes 2 s: once more than a tenth of the recent samples
    disagree, the window is their spread (both run times), then, once the recent samples
    agree again, the new run time alone."""
    times = RunTimes()
    for _ in range(50):
        times.record_run("m", 0.99, 1.01)
    for _ in range(60):
        times.record_run("m", 1.99, 2.01)
    estimate = times.estimate("m")
    assert estimate is not None
    assert estimate.low <= 1.0 and estimate.high >= 2.0
    for _ in range(200):
        times.record_run("m", 1.99, 2.01)
    estimate = times.estimate("m")
    assert estimate is not None
    assert (estimate.low, estimate.high) == pytest.approx((1.99, 2.01))


def test_varying_run_times_still_give_their_spread() -> None:
    """Jobs of 2–20 s share no run time: the window is their spread, not an intersection."""
    times = RunTimes()
    for i in range(100):
        run = 2.0 + 18.0 * i / 99
        times.record_run("m", run - 0.05, run + 0.05)
    estimate = times.estimate("m")
    assert estimate is not None
    assert estimate.low < 3.0 and estimate.high > 19.0


def test_a_long_view_of_the_queue_outweighs_a_step() -> None:
    """A job that saw 240 positions leave in 24 s says 0.1 s a position; a step of one
    position between two polls 0.5 s apart says little (queues drain in steps)."""
    times = RunTimes()
    times.record_drain("m", 0.5, 1)
    times.record_drain("m", 0.1, 240)
    drain = times.drain("m")
    assert drain is not None
    assert drain == pytest.approx(0.1, abs=0.005)


def test_a_single_sample_is_padded_by_a_small_allowance() -> None:
    """One finished 3 s job: the next window ends within 4 % of the run past the sample."""
    times = RunTimes()
    times.record_run("m", 2.97, 3.0)
    estimate = times.estimate("m")
    assert estimate is not None
    assert 3.0 < estimate.high <= 3.0 * 1.04
    assert 2.97 * 0.96 <= estimate.low < 2.97


def _stamp(seconds: float) -> datetime:
    return datetime.fromtimestamp(1_800_000_000 + seconds, tz=UTC)


def _deep_queue_times() -> RunTimes:
    """A 1 s model, 0.1 s a queue position, ten workers that last finished at 9.0 s on the
    server's clock; the caller's clock reads 100 s more (learned from a submit)."""
    times = RunTimes()
    for _ in range(3):
        times.record_run("m", 1.0, 1.0)
    times.record_drain("m", 0.1)
    assert times.record_stamps("m", 100.0, _stamp(0.0), None, 100.0) is None  # the offset
    for _ in range(10):
        ran = times.record_stamps("m", None, _stamp(8.0), _stamp(9.0), 109.05)
        assert ran == pytest.approx(1.0)
    return times


def test_a_queued_job_s_start_is_guessed_from_when_workers_free() -> None:
    """Ten workers finished at 109 s (caller's clock): the front ten start at 110 s, the
    next ten at 111 s, the fiftieth at 114 s; deeper than five runs, or with no stamps,
    nobody guesses."""
    times = _deep_queue_times()
    assert times.queue_start("m", 1, now=109.2) == pytest.approx(110.0)
    assert times.queue_start("m", 10, now=109.2) == pytest.approx(110.0)
    assert times.queue_start("m", 11, now=109.2) == pytest.approx(111.0)
    assert times.queue_start("m", 50, now=109.2) == pytest.approx(114.0)
    assert times.queue_start("m", 51, now=109.2) is None
    # No newer finish seen yet at 110.3: those workers free again a run later.
    assert times.queue_start("m", 1, now=110.3) == pytest.approx(111.0)
    assert RunTimes().queue_start("m", 1, now=109.2) is None


def test_a_position_seen_before_the_finishes_counts_from_them() -> None:
    """Position 15 seen at 108.5 s, before the ten workers freed at 109 s: the front ten
    started at 109 s, so the fifteenth starts at 110 s with the next ten — not at 111 s,
    as if those workers had taken other jobs first (a poll aimed there would be a run
    late)."""
    times = _deep_queue_times()
    assert times.queue_start("m", 15, now=108.5) == pytest.approx(110.0)
    assert times.queue_start("m", 5, now=108.5) == pytest.approx(109.0)


def test_a_position_older_than_the_last_run_guesses_nothing() -> None:
    """Position 15 seen at 100 s, nine runs before the finishes at 109 s: who started in
    between is unknown (a guess would be runs late, and so would the poll aimed there)."""
    assert _deep_queue_times().queue_start("m", 15, now=100.0) is None


def test_an_unseen_worker_is_taken_to_free_first() -> None:
    """Only 4 of the 10 workers' finishes seen (drain says 10): position 7 is still guessed
    into the first round (early costs a poll; a round late would cost a whole run)."""
    times = RunTimes()
    for _ in range(3):
        times.record_run("m", 1.0, 1.0)
    times.record_drain("m", 0.1)
    times.record_stamps("m", 100.0, _stamp(0.0), None, 100.0)
    for finished in (9.0, 9.1, 9.2, 9.3):
        times.record_stamps("m", None, _stamp(8.0), _stamp(finished), 109.4)
    assert times.queue_start("m", 7, now=109.5) == pytest.approx(110.0)
    assert times.queue_start("m", 11, now=109.5) == pytest.approx(111.0)


def _guessed(estimate: RunEstimate, *, firm: bool = True) -> Plan:
    return plan_next(
        PollPolicy(jitter=0.0),
        100.0,
        state=JobState.IN_QUEUE,
        step=3,
        position=25,
        drain=0.1,
        estimate=estimate,
        start_at=102.0,
        firm_start=firm,
    )


def test_a_guessed_start_of_a_consistent_run_time_is_polled_just_after_its_finish() -> None:
    """Run times of 0.99–1.01 s, a start guessed at 102 s: one /result poll just after the
    finish that start gives (102 + a finish step + 1.01 s), not first one for the start;
    the position's drain rate says nothing more."""
    plan = _guessed(RunEstimate(0.99, 1.01, 20))
    assert plan.at == pytest.approx(102.0 + 0.05 + 1.01)
    assert plan.finish


def test_a_guess_that_is_only_a_hint_is_checked_at_the_start_first() -> None:
    """Not firm (the drain says more workers than were seen finish): the start is polled
    for with /status, which answers the queue position a /result would not."""
    plan = _guessed(RunEstimate(0.99, 1.01, 20), firm=False)
    assert plan.at == pytest.approx(102.0 + 0.05)
    assert not plan.finish


def test_starts_are_firm_when_the_last_run_s_finishes_account_for_the_drain() -> None:
    """Ten workers seen to finish in the last run and a drain of 0.1 s a position for 1 s
    runs: firm. A drain twice as fast says ten more workers nobody saw: a hint only."""
    times = _deep_queue_times()
    assert times.firm_starts("m")
    times.record_drain("m", 0.05, 100)  # outweighs the first sample: 0.05 s a position
    assert not times.firm_starts("m")
    assert not RunTimes().firm_starts("m")


def test_a_guessed_start_of_a_varying_run_time_is_polled_just_after() -> None:
    """Run times of 0.5–1.5 s: the finish is not known from the start, so the start is
    polled for, one finish step after it (a /status poll)."""
    plan = _guessed(RunEstimate(0.5, 1.5, 20))
    assert plan.at == pytest.approx(102.0 + 1.0 / 16)
    assert not plan.finish


def test_a_finish_stamp_in_the_future_is_taken_as_when_it_was_seen() -> None:
    """A server saying a job finished a day from now cannot push the guesses a day away:
    the worker freed no later than the answer that said so."""
    times = _deep_queue_times()
    times.record_stamps("m", None, _stamp(8.0), _stamp(86_400.0), 109.1)
    guess = times.queue_start("m", 1, now=109.2)
    assert guess is not None and guess <= 110.2

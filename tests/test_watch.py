"""watch / wait / run over real HTTP against the scripted simulator: events, counts, cancels.

Jobs move one step per status poll and the polling policy has zero intervals, so nothing
sleeps; where a test needs a job to sit still (cancellation, deadlines) the policy's first
interval is long and the test acts while the watcher sleeps.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import anyio
import anyio.lowlevel
import msgspec
import pytest

from runcomfy_async import (
    Cancelled,
    Client,
    Completed,
    Event,
    Failed,
    InProgress,
    JobCancelledError,
    JobFailedError,
    JobState,
    Limits,
    NotFoundError,
    PollPolicy,
    Queued,
    RequestHandle,
    ServerError,
    UnknownStatus,
    WaitTimeoutError,
)
from runcomfy_async._watch import Watcher
from runcomfy_async.testing import Fault, FaultKind, JobScript, Simulator

from .conftest import FAST_RETRY, GOOD_INPUTS, WAN25

pytestmark = pytest.mark.anyio

#: Polls back to back, ignores Retry-After, and never runs out of budget.
FAST_POLL = PollPolicy(
    first_interval=0.0,
    max_interval=0.0,
    finish_interval=0.0,
    max_learned_interval=0.0,
    max_retry_after=0.0,
    requests_per_second=1_000_000.0,
    burst=1_000,
)
#: After the first poll the watcher sleeps for a minute: the test acts meanwhile.
SLOW_POLL = PollPolicy(first_interval=60.0, max_interval=60.0, learn=False)
FOREVER = 10**9


def _client(sim: Simulator, polling: PollPolicy = FAST_POLL, **kwargs: Any) -> Client:
    return Client(token=sim.token, base_url=sim.url, polling=polling, retry=FAST_RETRY, **kwargs)


@pytest.fixture
async def fast(sim: Simulator) -> AsyncIterator[Client]:
    """A client that polls back to back with no budget limit."""
    async with _client(sim) as c:
        yield c


async def _submit(client: Client, sim: Simulator, script: JobScript) -> str:
    sim.script_next(script)
    return (await client.submit(WAN25, GOOD_INPUTS)).request_id


async def _events(client: Client, request_id: str) -> list[Event]:
    return [event async for event in client.watch(request_id, model_id=WAN25)]


async def _until_polled(sim: Simulator, request_id: str, times: int = 1) -> None:
    """Let the loop run until the simulator has seen ``times`` status polls of the job."""
    with anyio.fail_after(5):
        # The simulator's log offers no event to wait on; yield until it shows the poll.
        while sim.count("status", request_id=request_id) < times:
            await anyio.lowlevel.checkpoint()
    await anyio.wait_all_tasks_blocked()


# --- event sequences ------------------------------------------------------------------------


async def test_queued_positions_then_running_then_completed(fast: Client, sim: Simulator) -> None:
    """in_queue/2, in_queue/1, in_progress, completed: four events from four polls."""
    rid = await _submit(fast, sim, JobScript(queue_polls=2, run_polls=1))
    events = await _events(fast, rid)
    assert [type(e) for e in events] == [Queued, Queued, InProgress, Completed]
    assert [e.position for e in events if isinstance(e, Queued)] == [2, 1]
    done = events[-1]
    assert isinstance(done, Completed) and done.result.status is JobState.SUCCEEDED
    assert done.result.output is not None and done.result.output.video
    assert all(e.request_id == rid and e.observed_at.tzinfo is UTC for e in events)
    assert [e.observed_at for e in events] == sorted(e.observed_at for e in events)
    assert sim.count("status", request_id=rid) == 4
    assert sim.count("result", request_id=rid) == 1
    assert sim.count("cancel") == 0


async def test_repeated_status_never_yields_twice(fast: Client, sim: Simulator) -> None:
    """Five in_progress answers in a row give one InProgress event."""
    rid = await _submit(fast, sim, JobScript(queue_polls=0, run_polls=5))
    events = await _events(fast, rid)
    assert [type(e) for e in events] == [InProgress, Completed]
    assert sim.count("status", request_id=rid) == 6


@pytest.mark.parametrize(
    "error",
    ["The generation failed.", {"message": "NSFW", "code": 7}, ["bad frame", {"detail": "x"}]],
)
async def test_failed_job_yields_failed_with_error(
    fast: Client, sim: Simulator, error: object
) -> None:
    """A failure (string, object or list error) ends with Failed carrying that error."""
    rid = await _submit(
        fast, sim, JobScript(queue_polls=1, run_polls=1, outcome="failed", error=error)
    )
    events = await _events(fast, rid)
    assert [type(e) for e in events] == [Queued, InProgress, Failed]
    failed = events[-1]
    assert isinstance(failed, Failed)
    assert failed.error == error and failed.result.status is JobState.FAILED
    assert sim.count("status", request_id=rid) == 3


async def test_wait_raises_job_failed_error(fast: Client, sim: Simulator) -> None:
    """wait() turns a failure into JobFailedError with the result attached."""
    rid = await _submit(fast, sim, JobScript(outcome="failed", error={"message": "NSFW"}))
    with pytest.raises(JobFailedError) as info:
        await fast.wait(rid)
    assert info.value.error == {"message": "NSFW"} and info.value.request_id == rid
    assert sim.count("cancel") == 0


async def test_cancelled_job(fast: Client, sim: Simulator) -> None:
    """A job cancelled on the server ends with Cancelled; wait() raises JobCancelledError."""
    rid = await _submit(fast, sim, JobScript(queue_polls=1, run_polls=0, outcome="cancelled"))
    assert [type(e) for e in await _events(fast, rid)] == [Queued, Cancelled]
    assert sim.count("status", request_id=rid) == 2
    other = await _submit(fast, sim, JobScript(queue_polls=1, run_polls=0, outcome="cancelled"))
    with pytest.raises(JobCancelledError):
        await fast.wait(other)


async def test_unknown_status_surfaced_once(
    fast: Client, sim: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    """An undocumented word yields UnknownStatus and one warning, however often it comes."""
    words = ["in_queue", "paused", "paused", "in_progress", "paused", "completed"]
    rid = await _submit(fast, sim, JobScript(queue_polls=1, run_polls=4, status_sequence=words))
    with caplog.at_level(logging.WARNING, logger="runcomfy_async"):
        events = await _events(fast, rid)
    assert [type(e) for e in events] == [Queued, UnknownStatus, InProgress, Completed]
    assert isinstance(events[1], UnknownStatus) and events[1].status == "paused"
    assert sum("paused" in r.getMessage() for r in caplog.records) == 1
    assert sim.count("status", request_id=rid) == 6


async def test_result_race_keeps_polling(fast: Client, sim: Simulator) -> None:
    """/status says completed while /result still runs: poll on, then complete once."""
    words = ["in_progress", "completed"]
    rid = await _submit(fast, sim, JobScript(queue_polls=0, run_polls=3, status_sequence=words))
    events = await _events(fast, rid)
    assert [type(e) for e in events] == [InProgress, Completed]
    assert sim.count("status", request_id=rid) == 3
    assert sim.count("result", request_id=rid) == 2


# --- transient and fatal poll failures ------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "injected"),
    [
        (Fault(FaultKind.RATE_LIMIT, "status", after=1, retry_after=30), "rate_limit"),
        (Fault(FaultKind.SERVER_ERROR, "status", after=1, times=2), "server_error"),
        (Fault(FaultKind.RESET_BEFORE, "status", after=1), "reset_before"),
        (Fault(FaultKind.REQUEST_TIMEOUT, "status", after=1), "request_timeout"),
    ],
)
async def test_transient_faults_are_absorbed(
    fast: Client, sim: Simulator, fault: Fault, injected: str
) -> None:
    """429 (Retry-After), 503, a reset and a 408 cost one poll each and change no event."""
    sim.add_fault(fault)
    rid = await _submit(fast, sim, JobScript(queue_polls=2, run_polls=1))
    events = await _events(fast, rid)
    assert [type(e) for e in events] == [Queued, Queued, InProgress, Completed]
    times = sim.stats.faults_injected[injected]
    assert times == (fault.times or 1)
    assert sim.count("status", request_id=rid) == 4 + times


async def test_rate_limit_holds_back_every_job(sim: Simulator) -> None:
    """A 429's Retry-After delays the next poll of every job of the session, not just one."""
    sim.add_fault(Fault(FaultKind.RATE_LIMIT, "status", after=2, retry_after=0.05))
    policy = msgspec.structs.replace(FAST_POLL, max_retry_after=60.0, learn=False)
    async with _client(sim, policy) as client:
        ids = [await _submit(client, sim, JobScript(queue_polls=3, run_polls=3)) for _ in "ab"]
        async with anyio.create_task_group() as tg:
            for rid in ids:
                tg.start_soon(client.wait, rid)
    polls = [r for r in sim.log if r.route == "status"]
    (limited,) = [r for r in polls if r.status == 429]
    soon = [r for r in polls if 0 < r.t - limited.t < 0.05]
    assert len(soon) <= 1  # at most the other job's poll already on the wire
    assert len(polls) == 2 * 7 + 1


async def test_malformed_status_is_absorbed(fast: Client, sim: Simulator) -> None:
    """A cut-off JSON answer is retried; the step it hid is simply not seen."""
    sim.add_fault(Fault(FaultKind.MALFORMED_JSON, "status", after=1))
    rid = await _submit(fast, sim, JobScript(queue_polls=2, run_polls=1))
    events = await _events(fast, rid)
    # The garbled answer was queue position 1: the watcher never saw it.
    assert [type(e) for e in events] == [Queued, InProgress, Completed]
    assert sim.stats.faults_injected["malformed_json"] == 1
    assert sim.count("status", request_id=rid) == 4


async def test_persistent_failures_raise_after_the_limit(sim: Simulator) -> None:
    """With max_consecutive_failures=3, the third 503 in a row is raised."""
    sim.add_fault(Fault(FaultKind.SERVER_ERROR, "status", times=None))
    policy = PollPolicy(first_interval=0.0, max_interval=0.0, max_consecutive_failures=3, burst=100)
    async with _client(sim, policy) as client:
        rid = await _submit(client, sim, JobScript())
        with pytest.raises(ServerError):
            await client.wait(rid)
    assert sim.count("status", request_id=rid) == 3


async def test_expired_id_raises_not_found_at_once(fast: Client, sim: Simulator) -> None:
    """404001 (an unknown or expired id) is raised after one poll, not retried."""
    rid = await _submit(fast, sim, JobScript(queue_polls=FOREVER))
    sim.expire(rid)
    with pytest.raises(NotFoundError) as info:
        await _events(fast, rid)
    assert info.value.error_code == 404001
    assert sim.count("status", request_id=rid) == 1


# --- deadlines ------------------------------------------------------------------------------


async def test_deadline_bounds_the_last_poll(sim: Simulator) -> None:
    """A 60 s interval is cut to the deadline: one last poll, then WaitTimeoutError."""
    async with _client(sim, SLOW_POLL) as client:
        rid = await _submit(client, sim, JobScript(queue_polls=FOREVER))
        with pytest.raises(WaitTimeoutError) as info:
            await client.wait(rid, timeout=0.05)
    assert isinstance(info.value, TimeoutError)
    assert info.value.request_id == rid and info.value.last_status == "in_queue"
    assert sim.count("status", request_id=rid) == 2
    assert sim.count("cancel") == 0


async def test_watch_deadline(sim: Simulator) -> None:
    """watch(timeout=...) yields what it saw, then raises WaitTimeoutError."""
    async with _client(sim, SLOW_POLL) as client:
        rid = await _submit(client, sim, JobScript(queue_polls=0, run_polls=FOREVER))
        seen: list[Event] = []

        async def collect() -> None:
            async for event in client.watch(rid, timeout=0.05):
                seen.append(event)

        with pytest.raises(WaitTimeoutError):
            await collect()
    assert [type(e) for e in seen] == [InProgress]
    assert sim.count("cancel") == 0


# --- leaving early --------------------------------------------------------------------------


async def test_breaking_out_of_watch_leaks_nothing(sim: Simulator) -> None:
    """break leaves no task, no waiter, no connection and sends no cancel."""
    one_conn = Limits(max_connections=1, max_connections_per_host=1)
    async with _client(sim, limits=one_conn) as client:
        rid = await _submit(client, sim, JobScript(queue_polls=5, run_polls=1))
        tasks_before = len(asyncio.all_tasks())
        agen = client.watch(rid)
        async for event in agen:
            assert isinstance(event, Queued)
            break
        del agen
        gc.collect()
        await anyio.wait_all_tasks_blocked()
        assert len(asyncio.all_tasks()) == tasks_before
        assert client._s.scheduler.waiting == 0
        polled = sim.count("status", request_id=rid)
        # The only pooled connection is free again: another call gets through at once.
        with anyio.fail_after(5):
            assert (await client.status(rid)).state is JobState.IN_QUEUE
        assert sim.count("status", request_id=rid) == polled + 1
    assert sim.count("cancel") == 0
    assert sim.job(rid).state == "in_queue"


async def test_cancelled_wait_sends_no_cancel(sim: Simulator) -> None:
    """A wait() whose task is cancelled while the job is queued leaves the job alone."""
    async with _client(sim, SLOW_POLL) as client:
        rid = await _submit(client, sim, JobScript(queue_polls=FOREVER))
        with anyio.move_on_after(0.05):
            await client.wait(rid)
        assert client._s.scheduler.waiting == 0
    assert sim.count("status", request_id=rid) == 1
    assert sim.count("cancel") == 0


# --- run(): the remote cancel ---------------------------------------------------------------


async def test_run_cancelled_while_queued_cancels_once(sim: Simulator) -> None:
    """Cancelling the task awaiting run() on a queued job sends exactly one cancel."""
    sim.script_next(JobScript(queue_polls=FOREVER))
    async with _client(sim, SLOW_POLL) as client, anyio.create_task_group() as tg:
        scope = anyio.CancelScope()

        async def runner() -> None:
            with scope:
                await client.run(WAN25, GOOD_INPUTS)

        tg.start_soon(runner)
        await _until_polled(sim, await _only_job(sim))
        scope.cancel()
    rid = await _only_job(sim)
    assert scope.cancelled_caught
    assert sim.count("cancel", request_id=rid) == 1
    assert sim.job(rid).state == "cancelled"


async def test_run_under_wait_for_cancels_once(sim: Simulator) -> None:
    """asyncio.wait_for timing out run() on a queued job cancels it once, then raises."""
    sim.script_next(JobScript(queue_polls=FOREVER))
    async with _client(sim, SLOW_POLL) as client:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(client.run(WAN25, GOOD_INPUTS), 0.05)
    rid = await _only_job(sim)
    assert sim.count("cancel", request_id=rid) == 1


async def test_run_in_failing_task_group_cancels_once(sim: Simulator) -> None:
    """A sibling's failure in a task group cancels the queued job once."""
    sim.script_next(JobScript(queue_polls=FOREVER))

    async def sibling() -> None:
        await _until_polled(sim, await _only_job(sim))
        raise RuntimeError("sibling failed")

    async with _client(sim, SLOW_POLL) as client:
        with pytest.RaisesGroup(RuntimeError):
            async with anyio.create_task_group() as tg:
                tg.start_soon(client.run, WAN25, GOOD_INPUTS)
                tg.start_soon(sibling)
    assert sim.count("cancel", request_id=await _only_job(sim)) == 1


async def test_run_deadline_while_queued_cancels_once(sim: Simulator) -> None:
    """run(timeout=...) passing its deadline on a queued job cancels once, then raises."""
    sim.script_next(JobScript(queue_polls=FOREVER))
    async with _client(sim, SLOW_POLL) as client:
        with pytest.raises(WaitTimeoutError):
            await client.run(WAN25, GOOD_INPUTS, timeout=0.05)
    rid = await _only_job(sim)
    assert sim.count("status", request_id=rid) == 2
    assert sim.count("cancel", request_id=rid) == 1


async def test_run_cancelled_before_first_answer_cancels(sim: Simulator) -> None:
    """A job not yet seen at all (first poll hanging) counts as queued: one cancel."""
    sim.script_next(JobScript(queue_polls=FOREVER))
    sim.add_fault(Fault(FaultKind.HANG, "status"))
    async with _client(sim, SLOW_POLL) as client:
        with anyio.move_on_after(0.1):
            await client.run(WAN25, GOOD_INPUTS)
    assert sim.count("cancel", request_id=await _only_job(sim)) == 1


async def test_run_cancelled_while_running_sends_no_cancel(sim: Simulator) -> None:
    """A job last seen running is not cancelled remotely (the API cannot)."""
    sim.script_next(JobScript(queue_polls=0, run_polls=FOREVER))
    async with _client(sim, SLOW_POLL) as client:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(client.run(WAN25, GOOD_INPUTS), 0.05)
        with pytest.raises(WaitTimeoutError):
            await client.run(WAN25, GOOD_INPUTS, timeout=0.05)
    assert sim.count("status") == 3
    assert sim.count("cancel") == 0


async def test_run_without_cancel_on_exit(sim: Simulator) -> None:
    """cancel_on_exit=False leaves an abandoned queued job alone."""
    sim.script_next(JobScript(queue_polls=FOREVER))
    async with _client(sim, SLOW_POLL) as client:
        with pytest.raises(WaitTimeoutError):
            await client.run(WAN25, GOOD_INPUTS, timeout=0.05, cancel_on_exit=False)
    assert sim.count("cancel") == 0


async def test_failed_remote_cancel_is_logged_not_raised(
    sim: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    """If the cancel itself fails, that is logged and the original error still propagates."""
    sim.script_next(JobScript(queue_polls=FOREVER))
    sim.add_fault(Fault(FaultKind.SERVER_ERROR, "cancel", times=None))
    async with _client(sim, SLOW_POLL) as client:
        with (
            caplog.at_level(logging.WARNING, logger="runcomfy_async"),
            pytest.raises(WaitTimeoutError),
        ):
            await client.run(WAN25, GOOD_INPUTS, timeout=0.05)
    assert sim.count("cancel") >= 1
    assert any("could not cancel" in r.getMessage() for r in caplog.records)


async def test_finished_job_teaches_its_model_run_time(fast: Client, sim: Simulator) -> None:
    """After a job of a model succeeds, the scheduler has a run-time estimate for it."""
    assert fast._s.scheduler.run_times.estimate(WAN25) is None
    await fast.run(WAN25, GOOD_INPUTS)
    estimate = fast._s.scheduler.run_times.estimate(WAN25)
    assert estimate is not None and estimate.samples == 1
    assert 0 <= estimate.low <= estimate.high < 5


async def test_a_cold_batch_waits_for_its_first_job_to_learn(sim: Simulator) -> None:
    """Jobs of a model not learned yet, waited on together: the first polls at once and
    leads; the others send nothing until it has finished (their spread polls would wait
    long here), then each is polled once on /result, at its expected finish."""
    policy = PollPolicy(first_interval=30.0, max_interval=30.0)
    async with _client(sim, policy) as client:
        handles = []
        for _ in range(4):
            sim.script_next(JobScript(queue_polls=0, run_polls=1))
            handles.append(await client.submit(WAN25, GOOD_INPUTS))
        with anyio.fail_after(20):
            await asyncio.gather(*(h.wait() for h in handles))
    polls = [r for r in sim.log if r.route in ("status", "result")]
    first = [r for r in polls if r.request_id == handles[0].request_id]
    assert [r.route for r in first][-1] == "result" and len(first) >= 2
    learned = first[-1].t  # the leader's last answer: completed
    for handle in handles[1:]:
        mine = [r for r in polls if r.request_id == handle.request_id]
        assert mine and all(r.t >= learned for r in mine)
        assert mine[0].route == "result"


async def test_a_fresh_job_first_seen_queued_has_queued_since_its_submit(
    fast: Client, sim: Simulator
) -> None:
    """The queued spread counts a fresh job's time in the queue from its submit (it was
    queued all along), not from the first answer that said so: fewer early polls."""
    rid = await _submit(fast, sim, JobScript(queue_polls=FOREVER))
    scheduler = fast._s.scheduler
    submitted = scheduler.clock() - 5.0
    watcher = Watcher(
        fast._s.routes, scheduler, rid, model_id=WAN25, timeout=None, submitted_at=submitted
    )
    await watcher.step()
    assert watcher.state is JobState.IN_QUEUE and watcher._since == submitted
    other = Watcher(fast._s.routes, scheduler, rid, model_id=WAN25, timeout=None, submitted_at=None)
    await other.step()
    assert other._since > submitted + 4.0  # not known: from the answer


async def test_learn_off_learns_nothing(sim: Simulator) -> None:
    """With ``learn=False`` nothing is learned, so no poll is planned on a run time."""
    async with _client(sim, msgspec.structs.replace(FAST_POLL, learn=False)) as client:
        for _ in range(3):
            await client.run(WAN25, GOOD_INPUTS)
        assert client._s.scheduler.run_times.estimate(WAN25) is None
    assert sim.count("result") == 3  # one fetch per job, never a /result poll


@pytest.mark.parametrize("how", ["handle.wait", "client.wait", "watch", "rebuilt handle"])
async def test_submit_then_wait_learns_as_run_does(fast: Client, sim: Simulator, how: str) -> None:
    """A job waited on after ``submit()`` teaches its model's run time (its submit bounds its
    start), so the next one is first polled at its expected finish, on /result, as in
    ``run()``;
    a handle rebuilt from a bare id (no model, no submit time known) in a new client cannot.
    """

    async def finish(client: Client, handle: RequestHandle) -> None:
        if how == "handle.wait":
            await handle.wait()
        elif how == "client.wait":
            await client.wait(handle.request_id)  # the model comes from the submit too
        elif how == "watch":
            [event async for event in client.watch(handle.request_id)]
        else:
            async with _client(sim, FAST_POLL) as other:
                await other.handle(handle.request_id).wait()

    for _ in range(2):
        sim.script_next(JobScript(queue_polls=0, run_polls=1))
        handle = await fast.submit(WAN25, GOOD_INPUTS)
        await finish(fast, handle)
    routes = [r.route for r in sim.log if r.request_id == handle.request_id]
    learned = fast._s.scheduler.run_times.estimate(WAN25) is not None
    assert learned is (how != "rebuilt handle")
    # Learned: the first poll waits for the expected finish and asks /result.
    assert routes[:2] == ["submit", "result" if learned else "status"]


async def test_finished_run_sends_no_cancel(fast: Client, sim: Simulator) -> None:
    """A run() that completes, or whose job fails, never sends a cancel."""
    result = await fast.run(WAN25, GOOD_INPUTS)
    assert result.status is JobState.SUCCEEDED
    sim.script_next(JobScript(outcome="failed"))
    with pytest.raises(JobFailedError):
        await fast.run(WAN25, GOOD_INPUTS)
    assert sim.count("cancel") == 0


async def _only_job(sim: Simulator) -> str:
    """The id of the one job created so far (waiting for its submit to land)."""
    with anyio.fail_after(5):
        while not (ids := {r.request_id for r in sim.log if r.route == "submit" and r.status}):
            await anyio.lowlevel.checkpoint()
    (rid,) = ids
    assert rid is not None
    return rid


# --- the shared budget ----------------------------------------------------------------------


def _max_excess(times: list[float], rate: float) -> float:
    """The most requests any time window held beyond ``rate * its length``."""
    best, head = 0.0, -float("inf")
    for j, t in enumerate(sorted(times)):
        head = max(head, rate * t - j)  # best window start i <= j
        best = max(best, j + 1 - rate * t + head)
    return best


async def test_two_thousand_watchers_share_the_budget(sim: Simulator) -> None:
    """2,000 concurrent waits poll no faster than the budget, oldest due first."""
    rate, burst, jobs, seconds = 50.0, 10, 2_000, 5.0
    policy = PollPolicy(first_interval=0.0, max_interval=0.0, requests_per_second=rate, burst=burst)
    # Jobs that never finish: every watcher wants a poll at once and all the time, so the
    # budget alone paces them, and no result fetch competes for the loop.
    sim.script_next(JobScript(queue_polls=FOREVER), count=jobs)
    async with _client(sim, policy) as client:
        ids: list[str] = []

        async def submit() -> None:
            ids.append((await client.submit(WAN25, GOOD_INPUTS)).request_id)

        async with anyio.create_task_group() as tg:
            for _ in range(jobs):
                tg.start_soon(submit)
        with anyio.move_on_after(seconds):
            async with anyio.create_task_group() as tg:
                for rid in ids:
                    tg.start_soon(client.wait, rid)
    stamps = [r.t for r in sim.log if r.route == "status"]
    assert burst + rate * seconds * 0.5 <= len(stamps) <= burst + rate * seconds
    # Fair: no job got a second poll while another still waited for its first.
    assert max(sim.count("status", request_id=rid) for rid in ids) == 1
    # The budget is spent when a poll is released to the transport; the simulator logs
    # it on arrival, after both shared one event loop that other processes may stall.
    # Allow half a second of such lag, at the budget rate: a broken budget would exceed
    # it by about the 2,000 jobs at once (the exact bound is proven on a fake clock).
    assert _max_excess(stamps, rate) <= burst + rate * 0.5
    assert sim.count("cancel") == 0


@pytest.mark.anyio
async def test_garbled_result_after_completion_is_fetched_again(sim: Simulator) -> None:
    """A malformed or redirected /result for a finished job is retried, not reported as failure."""
    sim.script_next(JobScript(queue_polls=0, run_polls=0))
    sim.add_fault(Fault("malformed_json", "result"))
    sim.add_fault(Fault("redirect", "result"))
    fast = PollPolicy(first_interval=0.0, jitter=0.0, requests_per_second=1000, burst=100)
    async with Client(token=sim.token, base_url=sim.url, retry=FAST_RETRY, polling=fast) as c:
        result = await c.run(WAN25, GOOD_INPUTS)
    assert result.output is not None
    assert sim.count("result") == 3


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("model", "inputs"),
    [(WAN25, GOOD_INPUTS), ("acme/tone-voice/text-to-audio", {"prompt": "a low hum"})],
)
async def test_deep_queue_runs_are_asked_for_their_result_at_their_guessed_finish(
    model: str, inputs: dict[str, str]
) -> None:
    """16 run()s of 0.3 s on 2 workers, a queue 8 runs deep: once the first finishers have
    taught the run time, the drain rate and when each worker frees, a queued job's next
    poll is a /result at the finish its guessed start gives, so later jobs get no request
    at all while they run (1-8 of the last 8 a run; a poll for the start, then one for the
    finish, as before: none). The /result that sees the end is the output, whatever its
    shape: Wan's video, or an audio model's ``output.audio``."""
    async with (
        Simulator(clock="wall", workers=2, run_seconds=0.3) as sim,
        Client(token=sim.token, base_url=sim.url) as client,
    ):
        with anyio.fail_after(30):
            results = await asyncio.gather(*(client.run(model, inputs) for _ in range(16)))
    offset = time.time() - time.monotonic()  # the log's times are the monotonic clock's

    def polled_while_running(request_id: str) -> int:
        finished = sim.job(request_id).finished_at
        assert finished is not None
        end = datetime.fromisoformat(finished).timestamp() - offset
        start = end - 0.3
        return sum(
            1
            for r in sim.log
            if r.request_id == request_id and r.method == "GET" and start + 0.02 < r.t < end - 0.02
        )

    assert all(r.output is not None for r in results)
    assert all(r.output.urls for r in results if r.output is not None)
    assert any(polled_while_running(r.request_id) == 0 for r in results[8:])
    assert len(sim.log) / len(results) < 7.0

"""Per-job memory and the bound on polls in flight: what a 10,000-job batch holds per job."""

from __future__ import annotations

import asyncio
import gc
import math
import tracemalloc

import pytest

from runcomfy_async import PollPolicy
from runcomfy_async._poll_budget import PollScheduler
from runcomfy_async._watch import Watcher, drive

from .test_budget import FakeClock, _idle

# An idle watcher (sleeping until its expected finish) with its task measured 2,596 bytes
# on CPython 3.11 (3,740 before slots and the frameless sleep); the bound fails the latter.
_IDLE_WATCHER_BYTES = 3_000
#: A budget that never holds a request back: only the bound on polls in flight does.
UNMETERED = PollPolicy(requests_per_second=1e6, burst=1_000)


@pytest.mark.anyio
async def test_an_idle_watcher_holds_few_bytes() -> None:
    """A learned job sleeping until its finish holds one task, one sleep, one watcher."""
    scheduler = PollScheduler()
    scheduler.record_run("m", 100.0, 100.0)
    jobs = 500
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        watchers = [
            Watcher(
                None,  # type: ignore[arg-type]  # never polls: cancelled while asleep
                scheduler,
                f"{i:08d}-0000-4000-8000-000000000000",
                model_id="m",
                timeout=None,
                submitted_at=scheduler.clock(),
            )
            for i in range(jobs)
        ]
        tasks = [asyncio.ensure_future(drive(w)) for w in watchers]
        await _idle()
        gc.collect()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    grown = sum(s.size_diff for s in after.compare_to(before, "filename"))
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert all(w._polls == 0 for w in watchers)  # still asleep when measured
    assert grown / jobs < _IDLE_WATCHER_BYTES, f"{grown / jobs:.0f} bytes per idle watcher"


@pytest.mark.anyio
async def test_polls_in_flight_are_bounded_and_results_pass_the_bound() -> None:
    """With 2 polls in flight a third waits for one to end; a result fetch does not."""
    clock = FakeClock()
    scheduler = PollScheduler(UNMETERED, clock=clock, sleep=clock.sleep, max_polls_in_flight=2)
    granted: list[str] = []

    async def poll(name: str) -> None:
        await scheduler.turn(0.0, key=0.0)
        granted.append(name)

    tasks = [asyncio.ensure_future(poll(n)) for n in ("a", "b", "c")]
    await clock.run(until=1.0)
    assert granted == ["a", "b"] and scheduler.polls_in_flight == 2
    await scheduler.acquire(-math.inf)  # a result fetch or a cancel: not a poll
    assert granted == ["a", "b"]
    scheduler.done()
    await clock.run(until=2.0)
    assert granted == ["a", "b", "c"] and scheduler.polls_in_flight == 2
    await asyncio.gather(*tasks)


@pytest.mark.anyio
async def test_a_poll_cancelled_in_line_frees_nothing_it_did_not_take() -> None:
    """Cancelling a poll waiting for the bound leaves the count of polls in flight right."""
    clock = FakeClock()
    scheduler = PollScheduler(UNMETERED, clock=clock, sleep=clock.sleep, max_polls_in_flight=1)
    await scheduler.turn(0.0)
    waiting = asyncio.ensure_future(scheduler.turn(0.0))
    await clock.run(until=1.0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert scheduler.polls_in_flight == 1
    scheduler.done()
    assert scheduler.polls_in_flight == 0
    await scheduler.turn(0.0)
    assert scheduler.polls_in_flight == 1

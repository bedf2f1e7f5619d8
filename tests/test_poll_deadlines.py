"""A status or result poll's read deadline (``Timeouts.read``), over HTTP against the simulator.

Polls share one timer (``_deadlines``) instead of aiohttp's per-chunk ``sock_read``: a late
answer must still fail as :class:`ReadTimeoutError` (and be retried like one), a dripping
answer must not hold a poll past the deadline, and the deadline must never swallow, or
leave behind, a cancellation the caller asked for — whatever kind, at whatever moment.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator

import anyio
import pytest

from runcomfy_async import Client, ReadTimeoutError, RetryPolicy, Timeouts
from runcomfy_async._deadlines import Deadlines
from runcomfy_async.testing import Fault, FaultKind, Simulator

from .conftest import FAST_RETRY, GOOD_INPUTS, WAN25

pytestmark = pytest.mark.anyio

READ = 0.05
ONE_TRY = RetryPolicy(attempts=1)


@pytest.fixture
async def hanging(anyio_backend: str) -> AsyncIterator[tuple[Simulator, Client, str]]:
    """A job whose every /status poll hangs, and a client with a 50 ms read timeout."""
    async with (
        Simulator() as sim,
        Client(
            token=sim.token, base_url=sim.url, timeouts=Timeouts(read=READ), retry=ONE_TRY
        ) as client,
    ):
        handle = await client.submit(WAN25, GOOD_INPUTS)
        sim.add_fault(Fault(FaultKind.HANG, "status", times=None))
        yield sim, client, handle.request_id


async def test_a_hanging_poll_fails_as_a_read_timeout(
    hanging: tuple[Simulator, Client, str],
) -> None:
    """One /status sent, no answer: ReadTimeoutError, and the task holds no cancellation."""
    sim, client, request_id = hanging
    with anyio.fail_after(5):
        with pytest.raises(ReadTimeoutError):
            await client.status(request_id)
    assert sim.stats.requests_by_route["status"] == 1
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0


async def test_a_dripping_answer_is_cut_at_the_read_timeout() -> None:
    """A /status answer sent a few bytes every 50 ms (each gap well under the 0.3 s read
    timeout) used to hold the poll for as long as the server dripped; the deadline counts
    the whole answer."""
    async with (
        Simulator() as sim,
        Client(
            token=sim.token, base_url=sim.url, timeouts=Timeouts(read=0.3), retry=ONE_TRY
        ) as client,
    ):
        handle = await client.submit(WAN25, GOOD_INPUTS)
        sim.add_fault(Fault(FaultKind.DRIP, "status", rate=40.0, delay=30.0))
        with anyio.fail_after(10), pytest.raises(ReadTimeoutError):
            await client.status(handle.request_id)
        assert sim.stats.requests_by_route["status"] == 1


async def test_a_poll_that_timed_out_is_retried_and_the_job_collected() -> None:
    """Two hanging /status answers, then good ones: run() still returns the output, having
    sent those two polls again (timeouts are transient for a poll)."""
    async with Simulator() as sim:
        sim.add_fault(Fault(FaultKind.HANG, "status", times=2))
        async with Client(
            token=sim.token, base_url=sim.url, timeouts=Timeouts(read=0.1), retry=FAST_RETRY
        ) as client:
            with anyio.fail_after(20):
                result = await client.run(WAN25, GOOD_INPUTS)
        assert result.output is not None
        assert sim.stats.faults_injected["hang"] == 2


def _expect_callers(expired: bool, exc: BaseException | None) -> None:
    """The caller's own timeout, if it expired, is what the caller sees."""
    if expired:
        assert isinstance(exc, TimeoutError) and not isinstance(exc, ReadTimeoutError), exc
    else:
        assert isinstance(exc, ReadTimeoutError), exc


async def test_the_callers_asyncio_timeout_wins_a_race_with_the_deadline(
    hanging: tuple[Simulator, Client, str],
) -> None:
    """``asyncio.timeout`` due just before, at or after the poll's deadline, at random: when
    it expired the caller gets its TimeoutError (never a ReadTimeoutError in its place),
    and no cancellation is left pending on the task either way."""
    _, client, request_id = hanging
    rng = random.Random(7)
    task = asyncio.current_task()
    assert task is not None
    for _ in range(25):
        caught: BaseException | None = None
        cm = asyncio.timeout(READ + rng.uniform(-0.02, 0.02))
        try:
            async with cm:
                await client.status(request_id)
        except BaseException as exc:  # noqa: BLE001 - the test inspects what came out
            caught = exc
        _expect_callers(cm.expired(), caught)
        assert task.cancelling() == 0
        await asyncio.sleep(0)  # a cancellation left pending would strike here


async def test_wait_for_and_task_cancel_racing_the_deadline_are_never_lost(
    hanging: tuple[Simulator, Client, str],
) -> None:
    """``wait_for`` and a plain ``Task.cancel()`` at random moments around the deadline: a
    poll task the cancel reached ends cancelled (never with a ReadTimeoutError in its
    place), one it did not reach ended with ReadTimeoutError; nothing is left pending."""
    _, client, request_id = hanging
    rng = random.Random(11)
    task = asyncio.current_task()
    assert task is not None
    for _ in range(20):
        with pytest.raises(TimeoutError):  # wait_for's own, or the poll's ReadTimeoutError
            await asyncio.wait_for(client.status(request_id), READ + rng.uniform(-0.02, 0.02))
        assert task.cancelling() == 0
        poll = asyncio.ensure_future(client.status(request_id))
        await asyncio.sleep(READ + rng.uniform(-0.02, 0.02))
        asked = poll.cancel()
        await asyncio.wait([poll])
        if asked:
            assert poll.cancelled()
        else:
            assert isinstance(poll.exception(), ReadTimeoutError)


async def test_an_anyio_scope_and_a_task_group_around_a_timed_out_poll(
    hanging: tuple[Simulator, Client, str],
) -> None:
    """An anyio scope due at the deadline swallows only its own cancellation; a TaskGroup
    whose poll times out reports the ReadTimeoutError and cancels nothing else wrongly."""
    _, client, request_id = hanging
    rng = random.Random(3)
    for _ in range(15):
        timed_out = False
        with anyio.move_on_after(READ + rng.uniform(-0.02, 0.02)) as scope:
            try:
                await client.status(request_id)
            except ReadTimeoutError:
                timed_out = True
        assert scope.cancelled_caught != timed_out  # exactly one of the two ended it
    siblings: list[asyncio.Task[None]] = []

    async def poll_beside_a_sibling() -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(client.status(request_id))
            siblings.append(tg.create_task(asyncio.sleep(30)))

    with pytest.raises(ExceptionGroup) as group:
        await poll_beside_a_sibling()
    assert group.group_contains(ReadTimeoutError)
    (sibling,) = siblings
    assert sibling.cancelled()  # (3.11's TaskGroup itself leaves the parent's count at 1)


async def test_a_deadline_swallowed_on_the_way_is_taken_back() -> None:
    """Should anything under the transport swallow the deadline's cancellation, closing the
    poll takes it back: the task is not left counted as cancelling (which would confuse a
    caller's ``asyncio.timeout`` or ``TaskGroup`` later)."""
    line = Deadlines(0.0)  # due at once

    async def poll() -> int:
        deadline = line.arm()
        assert deadline is not None
        with contextlib.suppress(asyncio.CancelledError):  # as a library below might
            await asyncio.sleep(5)
        deadline.close()
        task = asyncio.current_task()
        assert task is not None
        return task.cancelling()

    with anyio.fail_after(5):
        assert await asyncio.create_task(poll()) == 0

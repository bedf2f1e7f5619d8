"""Cancellation of every kind: prompt for the caller, and the journal and the bill stay true.

Each kind a user meets — ``Task.cancel()``, ``asyncio.timeout``, ``asyncio.wait_for``, a
failing ``asyncio.TaskGroup`` sibling, anyio's scopes — is applied to keyed runs mid-POST
and at random moments; the batch is then rerun and must finish every key, paying once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import sqlite3
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from runcomfy_async import Client, RunComfyError, WaitTimeoutError
from runcomfy_async import _journal as journal_module
from runcomfy_async._journal import EntryState, Journal
from runcomfy_async.testing import Fault, FaultKind, Simulator

from ._money_support import SlowCommits, billed_per_prompt
from .conftest import FAST_POLL, FAST_RETRY, GOOD_INPUTS, STUCK, WAN25

pytestmark = pytest.mark.anyio

#: The caller regains control within this much of the cancellation (the issue's bound).
PROMPT = 0.25


def item(i: int) -> dict[str, object]:
    """Inputs of item ``i`` (the prompt tells items apart in the simulator's log)."""
    return {**GOOD_INPUTS, "prompt": f"item {i}"}


def states(db: Path) -> Counter[str]:
    """The journal's keys per state, read from outside."""
    conn = sqlite3.connect(db)
    try:
        return Counter(state for (state,) in conn.execute("SELECT state FROM jobs"))
    finally:
        conn.close()


def open_sockets() -> int:
    """Sockets this process holds open."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # closed meanwhile
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
    return count


# --- the kinds of cancellation --------------------------------------------------------------

Canceller = Callable[[Callable[[], Awaitable[Any]], float], Awaitable[None]]


async def by_task_cancel(run: Callable[[], Awaitable[Any]], after: float) -> None:
    """``Task.cancel()`` after ``after`` seconds."""
    task = asyncio.ensure_future(run())
    await asyncio.wait({task}, timeout=after)
    task.cancel()
    await asyncio.wait({task})
    if not task.cancelled():
        task.exception()


async def by_asyncio_timeout(run: Callable[[], Awaitable[Any]], after: float) -> None:
    """``async with asyncio.timeout(after)``."""
    with contextlib.suppress(TimeoutError, RunComfyError):
        async with asyncio.timeout(after):
            await run()


async def by_wait_for(run: Callable[[], Awaitable[Any]], after: float) -> None:
    """``asyncio.wait_for(..., after)``."""
    with contextlib.suppress(TimeoutError, RunComfyError):
        await asyncio.wait_for(run(), after)


async def by_task_group(run: Callable[[], Awaitable[Any]], after: float) -> None:
    """A sibling in an ``asyncio.TaskGroup`` fails after ``after`` seconds."""

    async def failing() -> None:
        await asyncio.sleep(after)
        raise LookupError("sibling failed")

    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(run())
            tg.create_task(failing())
    except* (LookupError, RunComfyError):
        pass


async def by_anyio_scope(run: Callable[[], Awaitable[Any]], after: float) -> None:
    """``anyio.move_on_after(after)``."""
    with anyio.move_on_after(after):
        with contextlib.suppress(RunComfyError):
            await run()


KINDS: dict[str, Canceller] = {
    "task_cancel": by_task_cancel,
    "asyncio_timeout": by_asyncio_timeout,
    "wait_for": by_wait_for,
    "task_group": by_task_group,
    "anyio_scope": by_anyio_scope,
}


# --- mid-POST: prompt, and the id recorded --------------------------------------------------


@pytest.mark.parametrize("kind", sorted(KINDS))
async def test_keyed_run_cancelled_mid_post_is_prompt_and_ends_submitted(
    jclient: Client, sim: Simulator, db: Path, kind: str
) -> None:
    """Any cancellation mid-POST: prompt; the key ends submitted, its job cancelled."""
    sim.script_next(STUCK)
    sim.add_fault(Fault(FaultKind.SLOW, "submit", delay=0.5))
    started = time.monotonic()
    await KINDS[kind](lambda: jclient.run(WAN25, GOOD_INPUTS, key="a"), 0.05)
    assert time.monotonic() - started < 0.05 + PROMPT
    await jclient.aclose()  # waits for the POST's cleanup
    entry = await read_entry(db, "a")
    assert entry is not None and entry.state is EntryState.SUBMITTED
    assert entry.request_id is not None
    assert sim.job(entry.request_id).state == "cancelled"
    assert sim.count("cancel", request_id=entry.request_id) == 1
    # The rerun re-attaches, sees the cancelled job, submits afresh: no false "uncertain".
    async with Client(
        token=sim.token, base_url=sim.url, retry=FAST_RETRY, polling=FAST_POLL, journal=db
    ) as again:
        result = await again.run(WAN25, GOOD_INPUTS, key="a")
    assert result.request_id != entry.request_id
    assert billed_per_prompt(sim) == {GOOD_INPUTS["prompt"]: 1}


async def read_entry(db: Path, key: str) -> journal_module.JournalEntry | None:
    """The key's entry, read through a fresh journal."""
    journal = Journal(db)
    try:
        return await journal.lookup(key)
    finally:
        await journal.aclose()


@pytest.mark.parametrize("kind", sorted(KINDS))
async def test_plain_run_cancelled_mid_post_is_prompt(
    jclient: Client, sim: Simulator, kind: str
) -> None:
    """Without a key too: control back at once; aclose() waits for the job's remote cancel."""
    sim.script_next(STUCK)
    sim.add_fault(Fault(FaultKind.SLOW, "submit", delay=0.5))
    started = time.monotonic()
    await KINDS[kind](lambda: jclient.run(WAN25, GOOD_INPUTS), 0.05)
    assert time.monotonic() - started < 0.05 + PROMPT


async def test_run_deadline_with_hanging_post_raises_in_time(
    jclient: Client, sim: Simulator
) -> None:
    """run(timeout=T) with the POST hanging raises within T + 0.25 s (a TimeoutError)."""
    sim.add_fault(Fault(FaultKind.SLOW, "submit", delay=1.5))
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await jclient.run(WAN25, GOOD_INPUTS, timeout=0.3)
    assert time.monotonic() - started < 0.3 + PROMPT


async def test_wait_deadline_with_hanging_poll_raises_in_time(
    jclient: Client, sim: Simulator
) -> None:
    """wait(timeout=T) with a status poll hanging raises within T + 0.25 s."""
    sim.script_next(STUCK)
    handle = await jclient.submit(WAN25, GOOD_INPUTS)
    sim.add_fault(Fault(FaultKind.SLOW, "status", delay=2.0, times=None))
    started = time.monotonic()
    with pytest.raises(WaitTimeoutError):
        await handle.wait(timeout=0.5)
    assert time.monotonic() - started < 0.5 + PROMPT


# --- at random moments, then the batch rerun --------------------------------------------------


async def cancelled_at_random_then_rerun(
    sim: Simulator, db: Path, count: int, seed: int, wave: int = 100
) -> None:
    """``count`` keyed runs, each cancelled at a random moment by a random kind; then rerun."""
    rng = random.Random(seed)
    kinds = list(KINDS.values())
    sockets_before = open_sockets()
    tasks_before = len(asyncio.all_tasks())
    # Some POSTs are slow, so that cancellations also land while a POST is on the wire.
    sim.add_fault(Fault(FaultKind.SLOW, "submit", delay=0.02, probability=0.3, times=count // 4))
    async with Client(
        token=sim.token, base_url=sim.url, retry=FAST_RETRY, polling=FAST_POLL, journal=db
    ) as client:
        for start in range(0, count, wave):
            async with anyio.create_task_group() as tg:
                for i in range(start, min(start + wave, count)):
                    kind, after = rng.choice(kinds), rng.uniform(0.0, 0.06)
                    tg.start_soon(kind, lambda i=i: client.run(WAN25, item(i), key=f"k{i}"), after)
    assert states(db)["intent"] == 0  # no stranded write, no half-made intent
    async with Client(
        token=sim.token, base_url=sim.url, retry=FAST_RETRY, polling=FAST_POLL, journal=db
    ) as client:
        outcomes = [
            o
            async for o in client.map(
                WAN25, [item(i) for i in range(count)], keys=[f"k{i}" for i in range(count)]
            )
        ]
    failed = [(o.key, o.error) for o in outcomes if not o.ok]
    assert not failed, failed[:5]  # no false "uncertain", no lost key
    assert billed_per_prompt(sim) == {f"item {i}": 1 for i in range(count)}
    assert states(db) == {"finished": count}
    with anyio.fail_after(5):
        while len(asyncio.all_tasks()) > tasks_before or open_sockets() > sockets_before:  # noqa: ASYNC110
            # Nothing signals the server side closing its sockets (it sees EOF): poll.
            await anyio.sleep(0.01)


async def test_random_cancellations_then_rerun(sim: Simulator, db: Path) -> None:
    """1,000 keyed runs cancelled at random moments, all kinds; the rerun pays once per key."""
    await cancelled_at_random_then_rerun(sim, db, 1000, seed=1000)


async def test_random_cancellations_with_slow_commits(
    sim: Simulator, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same with 50 ms commits: no batch stranded, no transaction reused, no hang."""
    real = journal_module._connect
    monkeypatch.setattr(journal_module, "_connect", lambda path: SlowCommits(real(path)))
    await cancelled_at_random_then_rerun(sim, db, 100, seed=7)

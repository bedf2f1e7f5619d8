"""Two processes resuming one journal at once: every key is billed at most once.

A first batch (in this process) leaves the journal with finished keys, keys whose jobs
were cancelled while queued (an abandoned run), and keys never started. Two copies of
the batch script (``_crash_batch``) then resume it at the same moment against one
simulator; each must end with every key finished and no key paid for twice.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path

import anyio
import msgspec
import pytest

from runcomfy_async import Client
from runcomfy_async.testing import JobScript, Simulator

from ._crash_batch import POLL, inputs_for, key_for
from ._money_support import billed_per_prompt
from .conftest import FAST_RETRY, WAN25
from .test_crash import ITEMS, command, environment

pytestmark = pytest.mark.anyio

FINISHED, CANCELLED = 10, 10
STUCK = JobScript(queue_polls=10**9)


async def prepare(sim: Simulator, db: Path) -> None:
    """Journal FINISHED keys, then CANCELLED keys whose queued jobs an abandoned run cancelled."""
    async with Client(
        token=sim.token, base_url=sim.url, retry=FAST_RETRY, polling=POLL, journal=db
    ) as client:
        for i in range(FINISHED):
            await client.run(WAN25, inputs_for(i), key=key_for(i))
        sim.script_next(STUCK, count=CANCELLED)
        with anyio.move_on_after(0.5):
            async with anyio.create_task_group() as tg:
                for i in range(FINISHED, FINISHED + CANCELLED):
                    tg.start_soon(lambda i=i: client.run(WAN25, inputs_for(i), key=key_for(i)))
    conn = sqlite3.connect(db)
    states = Counter(state for (state,) in conn.execute("SELECT state FROM jobs"))
    conn.close()
    assert states == {"finished": FINISHED, "submitted": CANCELLED}
    assert sim.count("cancel") == CANCELLED


async def test_two_processes_resuming_one_journal_bill_each_key_once(
    sim: Simulator, tmp_path: Path
) -> None:
    """Finished, cancelled and fresh keys, resumed by two processes at once: billed once each."""
    db = tmp_path / "batch.db"
    await prepare(sim, db)
    created_before = sim.stats.jobs_created
    outputs: list[bytes] = []

    async def batch() -> None:
        done = await anyio.run_process(
            command(sim, db, 10, "raise"), env=environment(sim), check=False
        )
        assert done.returncode == 0, done.stderr.decode()
        outputs.append(done.stdout)

    with anyio.fail_after(45):
        async with anyio.create_task_group() as tg:
            tg.start_soon(batch)
            tg.start_soon(batch)

    for stdout in outputs:
        lines = [msgspec.json.decode(line) for line in stdout.splitlines()]
        assert len(lines) == ITEMS
        assert all(line["ok"] for line in lines), [line for line in lines if not line["ok"]]
    assert billed_per_prompt(sim) == {f"item {i}": 1 for i in range(ITEMS)}
    # Only keys without a live job were submitted again, each by one process.
    assert sim.stats.jobs_created - created_before == ITEMS - FINISHED
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT count(*) FROM jobs WHERE state = 'finished'").fetchone() == (ITEMS,)
    conn.close()

"""The journal's writer under native cancellation, a removed file, and other writers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from pathlib import Path

import pytest

from runcomfy_async import Client, JournalError
from runcomfy_async import _journal as journal_module
from runcomfy_async._journal import EntryState, Journal, encode_inputs
from runcomfy_async.testing import Fault, FaultKind, Simulator

from ._money_support import SlowCommits
from .conftest import FAST_RETRY, GOOD_INPUTS, WAN25

pytestmark = pytest.mark.anyio

MODEL = WAN25
INPUTS = encode_inputs(GOOD_INPUTS)


async def test_task_cancel_mid_batch_strands_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Task.cancel() on writers mid-commit: their writes land, the others' complete, no hang."""
    real = journal_module._connect
    monkeypatch.setattr(journal_module, "_connect", lambda path: SlowCommits(real(path)))
    journal = Journal(tmp_path / "j.db")
    try:
        tasks = [
            asyncio.ensure_future(journal.record_intent(f"k{i}", MODEL, INPUTS)) for i in range(50)
        ]
        await asyncio.sleep(0.01)  # the first batch is committing now
        for task in tasks[::2]:
            task.cancel()
        async with asyncio.timeout(10):
            await asyncio.wait(tasks)
        assert all(t.cancelled() or t.exception() is None for t in tasks)
        assert len(await journal.entries(EntryState.INTENT)) == 50
    finally:
        await journal.aclose()


async def test_wait_for_on_a_write_does_not_reuse_the_connection(tmp_path: Path) -> None:
    """asyncio.wait_for cutting writes short, many times: later batches are unaffected."""
    journal = Journal(tmp_path / "j.db")
    try:
        for i in range(100):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(journal.record_intent(f"k{i}", MODEL, INPUTS), 0.0001)
        await journal.record_intent("last", MODEL, INPUTS)
        entries = await journal.entries()
        # A write whose task started is queued and lands; one cut before it started is not.
        assert entries[-1].key == "last"
        assert all(e.state is EntryState.INTENT for e in entries)
    finally:
        await journal.aclose()


async def test_removed_journal_file_fails_writes(tmp_path: Path) -> None:
    """A journal file deleted mid-run: every later write is a JournalError, not a lost write."""
    path = tmp_path / "j.db"
    journal = Journal(path)
    try:
        await journal.record_intent("a", MODEL, INPUTS)
        os.unlink(path)
        with pytest.raises(JournalError, match="removed"):
            await journal.record_intent("b", MODEL, INPUTS)
    finally:
        await journal.aclose()


async def test_replaced_journal_file_fails_writes(tmp_path: Path) -> None:
    """A journal file replaced by another: JournalError naming the replacement."""
    path = tmp_path / "j.db"
    journal = Journal(path)
    try:
        await journal.record_intent("a", MODEL, INPUTS)
        other = tmp_path / "other.db"
        sqlite3.connect(other).close()
        os.replace(other, path)
        with pytest.raises(JournalError, match="replaced"):
            await journal.lookup("a")
    finally:
        await journal.aclose()


async def test_keyed_run_with_removed_journal_submits_nothing(
    sim: Simulator, tmp_path: Path
) -> None:
    """The run after the file was removed fails before its POST: nothing paid, exit non-zero."""
    path = tmp_path / "j.db"
    async with Client(token=sim.token, base_url=sim.url, retry=FAST_RETRY, journal=path) as c:
        sim.add_fault(Fault(FaultKind.SLOW, "status", delay=0.0))
        await c.run(WAN25, GOOD_INPUTS, key="a")
        os.unlink(path)
        with pytest.raises(JournalError):
            await c.run(WAN25, {**GOOD_INPUTS, "prompt": "b"}, key="b")
    assert sim.count("submit") == 1


async def test_forget_leaves_a_row_another_process_rewrote(tmp_path: Path) -> None:
    """A conditional forget (by job id) does not delete the row another writer re-made."""
    path = tmp_path / "j.db"
    mine, theirs = Journal(path), Journal(path)
    try:
        attempt = await mine.record_intent("k", MODEL, INPUTS)
        await mine.record_submitted("k", "req-old", attempt=attempt)
        # The other process saw req-old cancelled, freed the key and submitted again.
        assert await theirs.forget("k", request_id="req-old")
        new = await theirs.record_intent("k", MODEL, INPUTS)
        await theirs.record_submitted("k", "req-new", attempt=new)
        assert not await mine.forget("k", request_id="req-old")
        entry = await mine.lookup("k")
        assert entry is not None and entry.request_id == "req-new"
        with pytest.raises(JournalError):
            await mine.record_submitted("k", "req-x", attempt=attempt)
    finally:
        await mine.aclose()
        await theirs.aclose()


async def test_submit_2xx_with_id_and_error_code_is_a_job(sim: Simulator, tmp_path: Path) -> None:
    """A 2xx carrying a request_id and an error_code is an accepted job, journaled as such."""
    sim.add_fault(Fault(FaultKind.SUCCESS_WITH_ERROR_CODE, "submit"))
    path = tmp_path / "j.db"
    async with Client(token=sim.token, base_url=sim.url, retry=FAST_RETRY, journal=path) as c:
        result = await c.run(WAN25, GOOD_INPUTS, key="a")
        assert sim.job(result.request_id).state == "succeeded"
    assert sim.stats.jobs_created == 1
    entry = await (j := Journal(path)).lookup("a")
    await j.aclose()
    assert entry is not None and entry.state is EntryState.FINISHED

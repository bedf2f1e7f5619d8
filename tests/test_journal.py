"""The SQLite journal on its own: states, durability settings, group commit, failures."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from runcomfy_async import _journal as journal_module
from runcomfy_async._errors import JournalError
from runcomfy_async._journal import (
    EntryState,
    Journal,
    JournalEntry,
    encode_inputs,
)
from runcomfy_async._journal_writer import JournalWriter, _Op
from runcomfy_async._wire import JobState, decode_result

pytestmark = pytest.mark.anyio

MODEL = "wan-ai/wan-2-5/image-to-video"
INPUTS = encode_inputs({"prompt": "a fox", "img_url": "https://example.com/fox.png"})
RESULT_JSON = (
    b'{"request_id": "req-1", "status": "succeeded",'
    b' "output": {"video": "https://storage.example.com/a.mp4"},'
    b' "created_at": "2025-01-01T00:00:00+00:00", "finished_at": "2025-01-01T00:01:00+00:00"}'
)
FAILED_JSON = b'{"request_id": "req-2", "status": "failed", "error": {"message": "boom"}}'


@pytest.fixture
async def journal(tmp_path: Path) -> AsyncIterator[Journal]:
    """A journal in a fresh file, closed after the test."""
    j = Journal(tmp_path / "batch.db")
    yield j
    await j.aclose()


class CountingWriter(JournalWriter):
    """A journal writer that counts its transactions and checks they never overlap."""

    def __init__(self, path: str) -> None:
        super().__init__(path, journal_module._connect)
        self.batches: list[int] = []
        self.active = 0
        self.overlapped = False

    def _apply(self, batch: list[_Op]) -> None:
        self.active += 1
        self.overlapped |= self.active > 1
        self.batches.append(len(batch))
        try:
            super()._apply(batch)
        finally:
            self.active -= 1


class CountingJournal(Journal):
    """A journal whose writer counts its transactions."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._writer = self.writer = CountingWriter(self.path)

    @property
    def batches(self) -> list[int]:
        return self.writer.batches

    @property
    def overlapped(self) -> bool:
        return self.writer.overlapped


async def test_canonical_inputs_ignore_key_order() -> None:
    """Inputs are stored as sorted-key JSON, so key order never makes a conflict."""
    assert encode_inputs({"b": 1, "a": 2}) == encode_inputs({"a": 2, "b": 1}) == b'{"a":2,"b":1}'


async def test_unknown_key_looks_up_as_none(journal: Journal) -> None:
    """A key never recorded has no entry."""
    assert await journal.lookup("nope") is None


async def test_lifecycle_intent_submitted_finished(journal: Journal) -> None:
    """intent → submitted → finished keeps the id, stores the result, stamps each step."""
    await journal.record_intent("k", MODEL, INPUTS)
    entry = await journal.lookup("k")
    assert entry is not None
    assert (entry.state, entry.request_id, entry.model_id) == (EntryState.INTENT, None, MODEL)
    assert entry.inputs == {"prompt": "a fox", "img_url": "https://example.com/fox.png"}
    assert entry.created_at > 0 and entry.submitted_at is None

    await journal.record_submitted("k", "req-1")
    entry = await journal.lookup("k")
    assert entry is not None and entry.state is EntryState.SUBMITTED
    assert entry.request_id == "req-1" and entry.submitted_at is not None

    result = decode_result(RESULT_JSON)
    await journal.record_outcome("k", EntryState.FINISHED, result=result)
    entry = await journal.lookup("k")
    assert entry is not None and entry.state is EntryState.FINISHED
    assert entry.result == result
    assert entry.result is not None and entry.result.status is JobState.SUCCEEDED
    assert entry.finished_at is not None


async def test_failed_result_round_trips(journal: Journal) -> None:
    """A failed job's result, error included, is stored and read back intact."""
    await journal.record_intent("k", MODEL, INPUTS)
    await journal.record_submitted("k", "req-2")
    failed = decode_result(FAILED_JSON)
    await journal.record_outcome("k", EntryState.FAILED, result=failed)
    entry = await journal.lookup("k")
    assert entry is not None and entry.state is EntryState.FAILED
    assert entry.result == failed and entry.result.error_text == "boom"


async def test_uncertain_keeps_the_reason(journal: Journal) -> None:
    """An ambiguous submit is recorded as uncertain with its reason, and no id."""
    await journal.record_intent("k", MODEL, INPUTS)
    await journal.record_outcome("k", EntryState.UNCERTAIN, reason="ReadTimeoutError")
    entry = await journal.lookup("k")
    assert entry is not None
    assert (entry.state, entry.reason, entry.request_id) == (
        EntryState.UNCERTAIN,
        "ReadTimeoutError",
        None,
    )


async def test_second_intent_for_a_key_is_refused(journal: Journal) -> None:
    """A key can be claimed once (submitted keys even with replace); the entry stays."""
    await journal.record_intent("k", MODEL, INPUTS)
    await journal.record_submitted("k", "req-1")
    with pytest.raises(JournalError, match="journaled already"):
        await journal.record_intent("k", MODEL, INPUTS)
    with pytest.raises(JournalError):
        await journal.record_intent("k", MODEL, INPUTS, replace=True)
    entry = await journal.lookup("k")
    assert entry is not None and entry.request_id == "req-1"


@pytest.mark.parametrize("state", [EntryState.INTENT, EntryState.UNCERTAIN, EntryState.FAILED])
async def test_replace_reclaims_retryable_keys(journal: Journal, state: EntryState) -> None:
    """replace=True turns an intent, uncertain or failed key back into a fresh intent."""
    await journal.record_intent("k", MODEL, INPUTS)
    if state is EntryState.UNCERTAIN:
        await journal.record_outcome("k", state, reason="reset")
    if state is EntryState.FAILED:
        await journal.record_submitted("k", "req-2")
        await journal.record_outcome("k", state, result=decode_result(FAILED_JSON))
    await journal.record_intent("k", MODEL, INPUTS, replace=True)
    entry = await journal.lookup("k")
    assert entry is not None
    assert (entry.state, entry.reason) == (EntryState.INTENT, None)


async def test_forget_frees_the_key(journal: Journal) -> None:
    """A forgotten key can be claimed again."""
    await journal.record_intent("k", MODEL, INPUTS)
    await journal.forget("k")
    assert await journal.lookup("k") is None
    await journal.record_intent("k", MODEL, INPUTS)


async def test_update_of_a_missing_key_names_the_request_id(journal: Journal) -> None:
    """A request id that cannot be recorded is carried by the error, never dropped."""
    with pytest.raises(JournalError) as info:
        await journal.record_submitted("ghost", "req-9")
    assert (info.value.key, info.value.request_id) == ("ghost", "req-9")


async def test_record_outcome_checks_its_arguments(journal: Journal) -> None:
    """Outcome states need a result (finished/failed) or none (uncertain)."""
    with pytest.raises(ValueError, match="not an outcome"):
        await journal.record_outcome("k", EntryState.SUBMITTED)
    with pytest.raises(ValueError, match="need a result"):
        await journal.record_outcome("k", EntryState.FINISHED)


async def test_entries_filter_by_state(journal: Journal) -> None:
    """entries() lists every key, or those in one state."""
    for key in ("a", "b", "c"):
        await journal.record_intent(key, MODEL, INPUTS)
    await journal.record_submitted("b", "req-b")
    everything = await journal.entries()
    assert [e.key for e in everything] == ["a", "b", "c"]
    assert [e.key for e in await journal.entries(EntryState.INTENT)] == ["a", "c"]
    assert all(isinstance(e, JournalEntry) for e in everything)


async def test_file_is_wal_and_survives_reopening(tmp_path: Path) -> None:
    """The file uses WAL with synchronous=FULL, and a new connection sees every commit."""
    path = tmp_path / "batch.db"
    first = Journal(path)
    await first.record_intent("k", MODEL, INPUTS)
    await first.record_submitted("k", "req-1")
    # Read with a plain connection while the journal is still open: committed means visible.
    raw = sqlite3.connect(path)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("SELECT state, request_id FROM jobs").fetchall() == [
            ("submitted", "req-1")
        ]
    finally:
        raw.close()
    assert first._writer._conn is not None
    assert first._writer._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    await first.aclose()
    second = Journal(path)
    entry = await second.lookup("k")
    await second.aclose()
    assert entry is not None and entry.request_id == "req-1"


async def test_concurrent_writes_are_group_committed(tmp_path: Path) -> None:
    """Writes issued together share transactions, which never overlap in threads."""
    journal = CountingJournal(tmp_path / "batch.db")
    try:
        async with anyio.create_task_group() as tg:
            for i in range(300):
                tg.start_soon(journal.record_intent, f"k{i}", MODEL, INPUTS)
        assert len(await journal.entries()) == 300
        assert sum(journal.batches) == 301  # the 300 intents and the entries() read
        assert len(journal.batches) < 100
        assert not journal.overlapped
    finally:
        await journal.aclose()


async def test_one_failing_write_does_not_undo_its_batch(tmp_path: Path) -> None:
    """Each write has its own savepoint: a refused one leaves the others committed."""
    journal = CountingJournal(tmp_path / "batch.db")
    try:
        await journal.record_intent("dup", MODEL, INPUTS)
        errors: list[BaseException] = []

        async def claim(key: str) -> None:
            try:
                await journal.record_intent(key, MODEL, INPUTS)
            except JournalError as exc:
                errors.append(exc)

        async with anyio.create_task_group() as tg:
            for key in ("a", "dup", "b"):
                tg.start_soon(claim, key)
        assert len(errors) == 1
        assert {e.key for e in await journal.entries()} == {"dup", "a", "b"}
    finally:
        await journal.aclose()


async def test_a_cancelled_caller_still_gets_its_write(journal: Journal) -> None:
    """A write, once queued, lands even if its caller is cancelled (no half-made intent)."""
    with anyio.CancelScope() as scope:
        scope.cancel()
        await journal.record_intent("k", MODEL, INPUTS)
    entry = await journal.lookup("k")
    assert entry is not None and entry.state is EntryState.INTENT


async def test_unwritable_path_raises_journal_error(tmp_path: Path) -> None:
    """A journal that cannot be opened fails with JournalError naming the file."""
    journal = Journal(tmp_path / "missing-dir" / "batch.db")
    with pytest.raises(JournalError, match="missing-dir"):
        await journal.lookup("k")
    await journal.aclose()


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    """A file written by a newer version is not touched."""
    path = tmp_path / "batch.db"
    raw = sqlite3.connect(path)
    raw.execute("PRAGMA user_version = 99")
    raw.close()
    journal = Journal(path)
    with pytest.raises(JournalError, match="newer"):
        await journal.lookup("k")
    await journal.aclose()


async def test_closed_journal_refuses_calls(journal: Journal) -> None:
    """aclose() is idempotent and later calls are a RuntimeError (misuse)."""
    await journal.record_intent("k", MODEL, INPUTS)
    await journal.aclose()
    await journal.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await journal.lookup("k")

"""The SQLite journal that makes keyed batches crash-safe.

One row per user-chosen key, moving through::

    intent ──▶ submitted ──▶ finished
       │           └───────▶ failed
       └──▶ uncertain

``intent`` is committed *before* the submit POST and ``submitted`` (with the
``request_id``) right after it, so after a crash every key is in one of three kinds of
state: never started (no row), certainly submitted (the id is known, re-attach), or
possibly submitted (``intent`` / ``uncertain``: the POST may or may not have created a
billed job, so it is never silently repeated). A deliberate resubmission (``failed``, or
an uncertain key the caller chose to resubmit) turns the row back into ``intent``; a key
that certainly has no job (a refused submit, a cancelled job) is deleted.

Durability: WAL mode with ``synchronous=FULL``. With ``NORMAL``, WAL commits survive the
process being killed but the last ones can be lost on power failure or an OS crash — and a
lost ``intent`` means a second POST on the rerun (paying twice), a lost ``request_id`` an
orphaned job. ``FULL`` fsyncs the WAL on each commit; that costs about a quarter of a
millisecond, and *group commit* spreads it over every write waiting at that moment, so
10 000 concurrent runs pay for a few hundred fsyncs, not 20 000. A write is awaited until
its own commit has finished: batching never delays a write past the point where its
caller goes on (to POST, or to poll).

All SQLite work runs in a worker thread (``anyio.to_thread``), one batch at a time, so the
single connection is only ever used by one thread at a time.
"""

from __future__ import annotations

import enum
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeVar, cast

import anyio
import anyio.to_thread
import msgspec

from . import _journal_sql as sql
from ._errors import RunComfyError
from ._types import Result

__all__ = [
    "EntryState",
    "Journal",
    "JournalEntry",
    "JournalError",
    "encode_inputs",
]

logger: Final = logging.getLogger("runcomfy_async")
T = TypeVar("T")

_encoder: Final = msgspec.json.Encoder(order="sorted")
_result_decoder: Final = msgspec.json.Decoder(Result)
_inputs_decoder: Final = msgspec.json.Decoder(dict[str, object])


class EntryState(enum.StrEnum):
    """Where a key stands in the journal."""

    INTENT = "intent"
    """About to POST, or crashed while posting: a job may or may not exist."""
    SUBMITTED = "submitted"
    """The POST answered with a ``request_id``: the job exists."""
    FINISHED = "finished"
    """The job succeeded; its result is stored."""
    FAILED = "failed"
    """The job ran and failed; its result (with the error) is stored until a retry."""
    UNCERTAIN = "uncertain"
    """The POST failed ambiguously (:class:`SubmitUncertainError`)."""


class JournalEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One key's row, as read from the journal.

    Attributes:
        key: The caller's key.
        model_id: The model the key was submitted to.
        inputs_json: The inputs as canonical JSON (sorted keys), exactly as sent.
        state: Where the key stands.
        request_id: The job's id, once known.
        result_json: The stored result, for ``finished`` and ``failed``.
        reason: Why the submit was uncertain, for ``uncertain``.
        created_at: When the intent was recorded (Unix time).
        submitted_at: When the request id was recorded.
        finished_at: When the outcome was recorded.
    """

    key: str
    model_id: str
    inputs_json: bytes
    state: EntryState
    request_id: str | None = None
    result_json: bytes | None = None
    reason: str | None = None
    created_at: float = 0.0
    submitted_at: float | None = None
    finished_at: float | None = None

    @property
    def inputs(self) -> dict[str, object]:
        """The stored inputs, decoded."""
        return _inputs_decoder.decode(self.inputs_json)

    @property
    def result(self) -> Result | None:
        """The stored result, decoded; ``None`` before the job finished."""
        return None if self.result_json is None else _result_decoder.decode(self.result_json)


class JournalError(RunComfyError):
    """The journal could not be read or written.

    Attributes:
        path: The journal file.
        key: The key concerned, when there is one.
        request_id: A job id that could not be recorded, so that it is not lost.
    """

    def __init__(
        self, message: str, *, path: str, key: str | None = None, request_id: str | None = None
    ) -> None:
        super().__init__(f"journal {path}: {message}")
        self.path = path
        self.key = key
        self.request_id = request_id


def encode_inputs(inputs: Mapping[str, object]) -> bytes:
    """Encode inputs as canonical JSON (sorted keys), the form stored and compared."""
    return _encoder.encode(inputs)


class _Op:
    __slots__ = ("done", "error", "fn", "value", "wake")

    def __init__(self, fn: Callable[[sqlite3.Connection], object]) -> None:
        self.fn = fn
        self.value: object = None
        self.error: BaseException | None = None
        self.done = False
        self.wake = anyio.Event()


class Journal:
    """A crash-safe record of keyed runs in one SQLite file.

    Each method is one operation; operations issued while another batch is being written
    are committed together in the next transaction (group commit), each in its own
    savepoint so that one failing write does not undo the others. Every method returns
    only after its own write is durable.

    Args:
        path: The SQLite file; created, with its schema, on first use.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        self._flushing = False
        self._pending: list[_Op] = []

    def __repr__(self) -> str:
        return f"<Journal {self.path!r}>"

    # --- the operations ----------------------------------------------------------------

    async def lookup(self, key: str) -> JournalEntry | None:
        """Return the key's entry, or ``None`` if the key was never recorded."""
        return await self._call(lambda conn: _entry(sql.select(conn, key)))

    async def entries(self, state: EntryState | None = None) -> list[JournalEntry]:
        """Return every entry (or those in ``state``), oldest intent first."""
        rows = await self._call(lambda conn: sql.select_all(conn, state))
        return [_row_to_entry(row) for row in rows]

    async def record_intent(
        self, key: str, model_id: str, inputs_json: bytes, *, replace: bool = False
    ) -> None:
        """Record, durably, that ``key`` is about to be submitted. Call before the POST.

        Args:
            key: The key.
            model_id: The model.
            inputs_json: The inputs from :func:`encode_inputs`.
            replace: Overwrite an ``intent``, ``uncertain`` or ``failed`` entry (a
                deliberate resubmission). Without it the key must be new.

        Raises:
            JournalError: The key is already recorded (in a state ``replace`` does not
                cover), or the write failed.
        """
        inputs_text = inputs_json.decode()
        await self._call(lambda conn: sql.insert_intent(conn, key, model_id, inputs_text, replace))

    async def record_submitted(self, key: str, request_id: str) -> None:
        """Record the job's ``request_id``, durably. Call right after the POST answers."""
        await self._update(
            key,
            "state = 'submitted', request_id = ?, reason = NULL, submitted_at = ?",
            (request_id, time.time()),
            request_id=request_id,
        )

    async def record_outcome(
        self,
        key: str,
        state: EntryState,
        *,
        result: Result | None = None,
        reason: str | None = None,
    ) -> None:
        """Record how a key ended.

        Args:
            key: The key.
            state: ``finished`` or ``failed`` (with ``result``), or ``uncertain`` (with
                ``reason``).
            result: The job's result.
            reason: Why the submit was uncertain.

        Raises:
            JournalError: The key has no entry, or the write failed.
        """
        if state not in (EntryState.FINISHED, EntryState.FAILED, EntryState.UNCERTAIN):
            raise ValueError(f"not an outcome state: {state!r}")
        if (result is None) == (state is not EntryState.UNCERTAIN):
            raise ValueError("finished and failed need a result; uncertain takes none")
        result_text = None if result is None else msgspec.json.encode(result).decode()
        await self._update(
            key,
            "state = ?, result = ?, reason = ?, finished_at = ?",
            (state.value, result_text, reason, time.time()),
        )

    async def forget(self, key: str) -> None:
        """Delete the key: no job exists for it (refused submit, cancelled job)."""

        def delete(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM jobs WHERE key = ?", (key,))

        await self._call(delete)

    async def aclose(self) -> None:
        """Close the connection after the writes already queued; idempotent."""
        if self._closed:
            return
        self._closed = True
        # Queued last, after every write already queued: once it is done, so are they.
        await self._submit(_Op(lambda conn: None))
        conn, self._conn = self._conn, None
        if conn is not None:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(conn.close)

    # --- batching ------------------------------------------------------------------------

    async def _update(
        self, key: str, assignments: str, params: tuple[object, ...], request_id: str | None = None
    ) -> None:
        def update(conn: sqlite3.Connection) -> None:
            cursor = conn.execute(f"UPDATE jobs SET {assignments} WHERE key = ?", (*params, key))
            if cursor.rowcount != 1:
                raise JournalError(
                    "the key has no entry to update", path=self.path, key=key, request_id=request_id
                )

        try:
            await self._call(update)
        except JournalError as exc:
            if request_id is not None:
                # The POST created a job; its id must not vanish with the failed write.
                logger.error("journal: could not record request %s for key %r", request_id, key)
                exc.key, exc.request_id = key, request_id
            raise

    async def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise RuntimeError("the journal is closed")
        op = await self._submit(_Op(fn))
        if op.error is not None:
            raise op.error
        return cast("T", op.value)

    async def _submit(self, op: _Op) -> _Op:
        """Queue ``op`` and return once it is committed (or failed).

        Whoever finds no batch in progress writes one — every op queued by then — and on
        finishing wakes the callers of that batch at once, and the first caller still
        queued to write the next. So there is never more than one batch (one thread) at
        a time, and a burst of callers costs one wake-up each, not a lock hand-off each.
        """
        self._pending.append(op)
        # Shielded: once queued, an op is written and its caller learns the outcome; a
        # cancelled intent write would otherwise leave a key looking uncertain.
        with anyio.CancelScope(shield=True):
            while not op.done:
                if self._flushing:
                    await op.wake.wait()
                    op.wake = anyio.Event()
                    continue
                self._flushing = True
                batch, self._pending = self._pending, []
                try:
                    await anyio.to_thread.run_sync(self._apply, batch)
                finally:
                    self._flushing = False
                    for done in batch:
                        done.wake.set()
                    if self._pending:
                        self._pending[0].wake.set()
        return op

    def _apply(self, batch: list[_Op]) -> None:
        """Run a batch in one transaction, one savepoint per op (in a worker thread)."""
        try:
            conn = self._connect()
            conn.execute("BEGIN IMMEDIATE")
            for op in batch:
                conn.execute("SAVEPOINT op")
                try:
                    op.value = op.fn(conn)
                except (sqlite3.Error, JournalError) as exc:
                    conn.execute("ROLLBACK TO op")
                    op.error = _wrap(exc, self.path)
                conn.execute("RELEASE op")
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            for op in batch:
                op.error = op.error or _wrap(exc, self.path)
        except BaseException as exc:  # noqa: BLE001 - handed to every waiting caller
            self._rollback()
            for op in batch:
                op.error = op.error or exc
        finally:
            for op in batch:
                op.done = True

    def _rollback(self) -> None:
        if self._conn is not None and self._conn.in_transaction:
            self._conn.execute("ROLLBACK")

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = sql.connect(self.path)
        return self._conn


def _wrap(exc: BaseException, path: str) -> BaseException:
    if isinstance(exc, sqlite3.Error):
        wrapped = JournalError(str(exc), path=path)
        wrapped.__cause__ = exc
        return wrapped
    return exc


def _entry(row: tuple[Any, ...] | None) -> JournalEntry | None:
    return None if row is None else _row_to_entry(row)


def _row_to_entry(row: tuple[Any, ...]) -> JournalEntry:
    key, model_id, inputs, state, request_id, result, reason, created, submitted, finished = row
    return JournalEntry(
        key=str(key),
        model_id=str(model_id),
        inputs_json=str(inputs).encode(),
        state=EntryState(state),
        request_id=None if request_id is None else str(request_id),
        result_json=None if result is None else str(result).encode(),
        reason=None if reason is None else str(reason),
        created_at=float(created),
        submitted_at=None if submitted is None else float(submitted),
        finished_at=None if finished is None else float(finished),
    )

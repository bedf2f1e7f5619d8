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

The connection and the batching belong to :class:`~._journal_writer.JournalWriter`; this
module holds what is stored: the states, the rows, and every SQL statement.
"""

from __future__ import annotations

import enum
import logging
import os
import sqlite3
import time
from collections.abc import Mapping
from typing import Any, Final, TypeVar

import msgspec

from ._attempts import new_attempt
from ._errors import JournalError
from ._journal_writer import JournalWriter
from ._wire import Result

__all__ = [
    "EntryState",
    "Journal",
    "JournalEntry",
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
        attempt: A token naming the submit attempt that wrote the row's intent; a
            conditional update made on behalf of that attempt names it, so a row another
            process has rewritten since is never touched.
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
    attempt: str | None = None

    @property
    def inputs(self) -> dict[str, object]:
        """The stored inputs, decoded."""
        return _inputs_decoder.decode(self.inputs_json)

    @property
    def result(self) -> Result | None:
        """The stored result, decoded; ``None`` before the job finished."""
        return None if self.result_json is None else _result_decoder.decode(self.result_json)


def encode_inputs(inputs: Mapping[str, object]) -> bytes:
    """Encode inputs as canonical JSON (sorted keys), the form stored and compared."""
    return _encoder.encode(inputs)


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
        self._writer = JournalWriter(self.path, _connect)

    def __repr__(self) -> str:
        return f"<Journal {self.path!r}>"

    # --- the operations ----------------------------------------------------------------

    async def lookup(self, key: str) -> JournalEntry | None:
        """Return the key's entry, or ``None`` if the key was never recorded."""
        return await self._writer.call(lambda conn: _entry(_select(conn, key)))

    async def entries(self, state: EntryState | None = None) -> list[JournalEntry]:
        """Return every entry (or those in ``state``), oldest intent first."""
        rows = await self._writer.call(lambda conn: _select_all(conn, state))
        return [_row_to_entry(row) for row in rows]

    async def record_intent(
        self,
        key: str,
        model_id: str,
        inputs_json: bytes,
        *,
        replace: bool | JournalEntry = False,
        attempt: str | None = None,
    ) -> str:
        """Record, durably, that ``key`` is about to be submitted. Call before the POST.

        Args:
            key: The key.
            model_id: The model.
            inputs_json: The inputs from :func:`encode_inputs`.
            replace: Overwrite an ``intent``, ``uncertain`` or ``failed`` entry (a
                deliberate resubmission). Pass the entry that was looked up to overwrite
                only that very row: if another process rewrote it since, nothing is
                written and :class:`JournalError` is raised. Without it the key must be
                new.
            attempt: The attempt's token (see :func:`new_attempt`); a fresh one by
                default.

        Returns:
            The attempt's token, for the conditional writes that follow.

        Raises:
            JournalError: The key is already recorded (in a state ``replace`` does not
                cover, or rewritten since it was looked up), or the write failed.
        """
        inputs_text = inputs_json.decode()
        attempt = attempt or new_attempt()
        expect = replace if isinstance(replace, JournalEntry) else None
        await self._writer.call(
            lambda conn: _insert_intent(
                conn, key, model_id, inputs_text, bool(replace), attempt, expect
            )
        )
        return attempt

    async def record_submitted(
        self, key: str, request_id: str, *, attempt: str | None = None
    ) -> None:
        """Record the job's ``request_id``, durably. Call right after the POST answers.

        Args:
            key: The key.
            request_id: The job's id.
            attempt: The token :meth:`record_intent` returned: the row is updated only
                while it is still that attempt's intent.

        Raises:
            JournalError: The key has no such entry, or the write failed. The id is
                logged and carried by the error, so that it is never lost.
        """
        where, args = _attempt_clause(attempt, "state IN ('intent', 'uncertain')")
        await self._update(
            key,
            "state = 'submitted', request_id = ?, reason = NULL, submitted_at = ?",
            (request_id, time.time()),
            where,
            args,
            request_id=request_id,
        )

    async def record_outcome(
        self,
        key: str,
        state: EntryState,
        *,
        result: Result | None = None,
        reason: str | None = None,
        request_id: str | None = None,
        attempt: str | None = None,
    ) -> None:
        """Record how a key ended.

        Args:
            key: The key.
            state: ``finished`` or ``failed`` (with ``result``), or ``uncertain`` (with
                ``reason``).
            result: The job's result.
            reason: Why the submit was uncertain.
            request_id: Update the row only while it holds this job.
            attempt: Update the row only while it belongs to this attempt.

        Raises:
            JournalError: The key has no (such) entry, or the write failed.
        """
        if state not in (EntryState.FINISHED, EntryState.FAILED, EntryState.UNCERTAIN):
            raise ValueError(f"not an outcome state: {state!r}")
        if (result is None) == (state is not EntryState.UNCERTAIN):
            raise ValueError("finished and failed need a result; uncertain takes none")
        result_text = None if result is None else msgspec.json.encode(result).decode()
        where, args = _attempt_clause(attempt, None)
        if request_id is not None:
            where += " AND request_id = ?"
            args = (*args, request_id)
        await self._update(
            key,
            "state = ?, result = ?, reason = ?, finished_at = ?",
            (state.value, result_text, reason, time.time()),
            where,
            args,
        )

    async def forget(
        self, key: str, *, request_id: str | None = None, attempt: str | None = None
    ) -> bool:
        """Delete the key: no job exists for it (refused submit, cancelled job).

        Args:
            key: The key.
            request_id: Delete only while the row holds this (cancelled) job.
            attempt: Delete only while the row is still this attempt's, with no job id.

        Returns:
            Whether a row was deleted (False: another process rewrote it meanwhile).
        """
        where, args = _attempt_clause(attempt, None)
        if attempt is not None:
            where += " AND request_id IS NULL"
        if request_id is not None:
            where += " AND request_id = ?"
            args = (*args, request_id)

        def delete(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(f"DELETE FROM jobs WHERE key = ?{where}", (key, *args))
            return cursor.rowcount == 1

        return await self._writer.call(delete)

    def forget_later(self, key: str, *, attempt: str) -> None:
        """Queue :meth:`forget` for an attempt without waiting (from a cancelled caller)."""
        self._writer.queue(
            lambda conn: conn.execute(
                "DELETE FROM jobs WHERE key = ? AND attempt = ? AND request_id IS NULL",
                (key, attempt),
            )
        )

    async def aclose(self) -> None:
        """Close the connection after the writes already queued; idempotent."""
        await self._writer.aclose()

    async def _update(
        self,
        key: str,
        assignments: str,
        params: tuple[object, ...],
        where: str,
        where_params: tuple[object, ...],
        request_id: str | None = None,
    ) -> None:
        sql = f"UPDATE jobs SET {assignments} WHERE key = ?{where}"

        def update(conn: sqlite3.Connection) -> None:
            cursor = conn.execute(sql, (*params, key, *where_params))
            if cursor.rowcount != 1:
                what = "no entry" if _select(conn, key) is None else "no entry in that state"
                raise JournalError(
                    f"the key has {what} to update (another process may have rewritten it)",
                    path=self.path,
                    key=key,
                    request_id=request_id,
                )

        try:
            await self._writer.call(update)
        except JournalError as exc:
            if request_id is not None:
                # The POST created a job; its id must not vanish with the failed write.
                logger.error("journal: could not record request %s for key %r", request_id, key)
                exc.key, exc.request_id = key, request_id
            raise


def _attempt_clause(attempt: str | None, otherwise: str | None) -> tuple[str, tuple[object, ...]]:
    """The extra WHERE terms of a write made for one attempt (or, without one, by state)."""
    if attempt is not None:
        return " AND attempt = ?", (attempt,)
    if otherwise is not None:
        return f" AND {otherwise}", ()
    return "", ()


def _entry(row: tuple[Any, ...] | None) -> JournalEntry | None:
    return None if row is None else _row_to_entry(row)


def _row_to_entry(row: tuple[Any, ...]) -> JournalEntry:
    key, model_id, inputs, state, request_id, result, reason, created, submitted, finished = row[
        :10
    ]
    attempt = row[10]
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
        attempt=None if attempt is None else str(attempt),
    )


# --- SQL ------------------------------------------------------------------------------

_SCHEMA_VERSION: Final = 2
_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS jobs (
    key          TEXT PRIMARY KEY,
    model_id     TEXT NOT NULL,
    inputs       TEXT NOT NULL,
    state        TEXT NOT NULL
                 CHECK (state IN ('intent', 'submitted', 'finished', 'failed', 'uncertain')),
    request_id   TEXT,
    result       TEXT,
    reason       TEXT,
    created_at   REAL NOT NULL,
    submitted_at REAL,
    finished_at  REAL,
    attempt      TEXT
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state);
"""
_COLUMNS: Final = (
    "key, model_id, inputs, state, request_id, result, reason, created_at, submitted_at, "
    "finished_at, attempt"
)


def _connect(path: str) -> sqlite3.Connection:
    """Open the journal file in WAL mode with ``synchronous=FULL``, creating its schema.

    Raises:
        sqlite3.Error: The file cannot be opened, or a newer version wrote it.
    """
    # Autocommit mode (isolation_level=None): transactions are the journal's, explicit.
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA busy_timeout = 10000")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > _SCHEMA_VERSION:
            raise sqlite3.DatabaseError(
                f"written by a newer runcomfy_async (schema {version} > {_SCHEMA_VERSION})"
            )
        if version == 1:
            # Version 1 had no attempt tokens: its rows are updated by state alone.
            conn.execute("ALTER TABLE jobs ADD COLUMN attempt TEXT")
            conn.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
        elif version < _SCHEMA_VERSION:
            conn.executescript(_SCHEMA)
            conn.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
    except sqlite3.Error:
        conn.close()
        raise
    return conn


def _select(conn: sqlite3.Connection, key: str) -> tuple[Any, ...] | None:
    """Return the key's row, or None."""
    row: tuple[Any, ...] | None = conn.execute(
        f"SELECT {_COLUMNS} FROM jobs WHERE key = ?", (key,)
    ).fetchone()
    return row


def _select_all(conn: sqlite3.Connection, state: str | None) -> list[tuple[Any, ...]]:
    """Return every row (or those in ``state``), oldest intent first."""
    sql = f"SELECT {_COLUMNS} FROM jobs"
    params: tuple[str, ...] = ()
    if state is not None:
        sql += " WHERE state = ?"
        params = (state,)
    return list(conn.execute(sql + " ORDER BY created_at", params))


def _insert_intent(
    conn: sqlite3.Connection,
    key: str,
    model_id: str,
    inputs: str,
    replace: bool,
    attempt: str,
    expect: JournalEntry | None,
) -> None:
    """Insert the key as ``intent``; with ``replace``, also over a retryable row.

    With ``expect``, only that very row is replaced (same state, attempt and id), so two
    processes resubmitting one key cannot both claim it.

    Raises:
        sqlite3.IntegrityError: The key exists (and, with ``replace``, is not ``intent``,
            ``uncertain`` or ``failed``, or is no longer the row expected).
    """
    now = time.time()
    taken = f"key {key!r} is journaled already" + (" and is not retryable" if replace else "")
    if expect is not None:
        cursor = conn.execute(
            "UPDATE jobs SET model_id = ?, inputs = ?, state = 'intent', request_id = NULL,"
            " result = NULL, reason = NULL, created_at = ?, submitted_at = NULL,"
            " finished_at = NULL, attempt = ? WHERE key = ? AND state = ?"
            " AND state IN ('intent', 'uncertain', 'failed') AND created_at = ?"
            " AND attempt IS ? AND request_id IS ?",
            (
                model_id,
                inputs,
                now,
                attempt,
                key,
                expect.state.value,
                expect.created_at,
                expect.attempt,
                expect.request_id,
            ),
        )
        if cursor.rowcount != 1:
            raise sqlite3.IntegrityError(taken + " (rewritten since it was looked up)")
        return
    sql = (
        "INSERT INTO jobs (key, model_id, inputs, state, created_at, attempt)"
        " VALUES (?, ?, ?, 'intent', ?, ?)"
    )
    if replace:
        sql += (
            " ON CONFLICT (key) DO UPDATE SET model_id = excluded.model_id,"
            " inputs = excluded.inputs, state = 'intent', request_id = NULL, result = NULL,"
            " reason = NULL, created_at = excluded.created_at, submitted_at = NULL,"
            " finished_at = NULL, attempt = excluded.attempt"
            " WHERE state IN ('intent', 'uncertain', 'failed')"
        )
    try:
        cursor = conn.execute(sql, (key, model_id, inputs, now, attempt))
    except sqlite3.IntegrityError as exc:
        raise sqlite3.IntegrityError(taken) from exc
    if cursor.rowcount != 1:
        raise sqlite3.IntegrityError(taken)

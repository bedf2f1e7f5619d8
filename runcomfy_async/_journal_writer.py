"""The journal's writer: the one owner of the SQLite connection, with group commit.

Each operation is a function on the connection; operations issued while another batch
is being written are committed together in the next transaction (group commit), each in
its own savepoint so that one failing write does not undo the others, and each caller
returns only after its own write is durable. All SQLite work runs in a worker thread
(``anyio.to_thread``), one batch at a time, so the connection is only ever used by one
thread at a time.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TypeVar, cast

import anyio
import anyio.to_thread

from ._errors import JournalError

__all__ = ["JournalWriter"]

T = TypeVar("T")


class _Op:
    __slots__ = ("done", "error", "fn", "value", "wake")

    def __init__(self, fn: Callable[[sqlite3.Connection], object]) -> None:
        self.fn = fn
        self.value: object = None
        self.error: BaseException | None = None
        self.done = False
        self.wake = anyio.Event()


class JournalWriter:
    """Owns one SQLite connection and writes callers' operations to it in batches.

    Args:
        path: The SQLite file.
        open_connection: Opens (and sets up) the connection, in the worker thread, on
            first use.
    """

    def __init__(self, path: str, open_connection: Callable[[str], sqlite3.Connection]) -> None:
        self.path = path
        self._open = open_connection
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        self._flushing = False
        self._pending: list[_Op] = []

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

    async def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on the connection in the next batch; return once it is committed.

        Raises:
            JournalError: ``fn`` or the commit failed (SQLite errors are wrapped).
            RuntimeError: The writer is closed.
        """
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
            self._conn = self._open(self.path)
        return self._conn


def _wrap(exc: BaseException, path: str) -> BaseException:
    if isinstance(exc, sqlite3.Error):
        wrapped = JournalError(str(exc), path=path)
        wrapped.__cause__ = exc
        return wrapped
    return exc

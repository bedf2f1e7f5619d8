"""The journal's writer: the one owner of the SQLite connection, with group commit.

One dedicated thread owns the connection. Callers hand it operations (functions on the
connection) through a queue and await a future; the thread takes every operation queued
by then, runs them in one transaction (group commit), each in its own savepoint so that
one failing write does not undo the others, commits, and completes each caller's future.

Because the connection belongs to the thread and not to whichever caller happened to be
writing, nothing a caller does can strand a batch: a caller cancelled in any way (an
anyio scope, ``Task.cancel()``, ``asyncio.timeout``) stops waiting, but the write it
queued is still applied and its future still completed; no batch ever shares the
connection with another, and no waiter depends on another caller's task.

Before each batch the thread checks that the file at the journal's path is still the
one it opened (same device and inode): if a cleanup script removed or replaced it, every
write fails with :class:`~runcomfy_async.JournalError` rather than going to an unlinked
file that no rerun will ever read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import Callable
from typing import Final, TypeVar, cast

from ._cleanup import wait_uncancelled
from ._errors import JournalError

__all__ = ["JournalWriter"]

logger: Final = logging.getLogger("runcomfy_async")
T = TypeVar("T")


class _Op:
    __slots__ = ("fn", "future", "loop")

    def __init__(
        self,
        fn: Callable[[sqlite3.Connection], object] | None,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.fn = fn
        self.loop = loop
        self.future: asyncio.Future[object] = loop.create_future()
        # Retrieved here, so a result nobody awaits (a cancelled caller) is never
        # reported as "exception was never retrieved".
        self.future.add_done_callback(_retrieve)

    def complete(self, value: object, error: BaseException | None) -> None:
        """Complete the caller's future from the writer thread (the loop may be gone)."""
        # A closed loop (RuntimeError) means nobody is waiting any more.
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(_settle, self.future, value, error)


def _settle(future: asyncio.Future[object], value: object, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)


def _retrieve(future: asyncio.Future[object]) -> None:
    if not future.cancelled():
        future.exception()


class JournalWriter:
    """Owns one SQLite connection, in a thread of its own, and writes callers' ops in batches.

    Args:
        path: The SQLite file.
        open_connection: Opens (and sets up) the connection, in the writer thread, on
            first use.
    """

    def __init__(self, path: str, open_connection: Callable[[str], sqlite3.Connection]) -> None:
        self.path = path
        self._open = open_connection
        self._conn: sqlite3.Connection | None = None
        self._identity: tuple[int, int] | None = None
        self._closed = False
        self._queue: queue.SimpleQueue[_Op] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    async def aclose(self) -> None:
        """Close the connection after the writes already queued; idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._thread is None:
            return
        stop = _Op(None, asyncio.get_running_loop())
        self._queue.put(stop)
        # Queued last, after every write already queued: once it is done, so are they.
        await wait_uncancelled(stop.future)

    async def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on the connection in the next batch; return once it is committed.

        If the caller is cancelled while waiting, the write still happens (it is
        queued); only the waiting stops.

        Raises:
            JournalError: ``fn`` or the commit failed (SQLite errors are wrapped), or the
                file was removed or replaced.
            RuntimeError: The writer is closed.
        """
        op = self.queue(fn)
        return cast("T", await asyncio.shield(op.future))

    def queue(self, fn: Callable[[sqlite3.Connection], object]) -> _Op:
        """Queue ``fn`` and return its op, whose future completes once it is committed.

        Raises:
            RuntimeError: The writer is closed.
        """
        if self._closed:
            raise RuntimeError("the journal is closed")
        op = _Op(fn, asyncio.get_running_loop())
        self._queue.put(op)
        self._start()
        return op

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name=f"runcomfy-journal {self.path}", daemon=True
                )
                self._thread.start()

    # --- the writer thread ----------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            batch = [self._queue.get()]
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stops = [op for op in batch if op.fn is None]
            writes = [op for op in batch if op.fn is not None]
            if writes:
                self._apply(writes)
            if stops:
                # Writes queued after a stop (none: the writer refuses them) would be lost.
                self._close_connection()
                for op in stops:
                    op.complete(None, None)
                return

    def _apply(self, batch: list[_Op]) -> None:
        """Run a batch in one transaction, one savepoint per op."""
        results: list[tuple[object, BaseException | None]] = [(None, None)] * len(batch)
        try:
            conn = self._connect()
            self._check_identity()
            conn.execute("BEGIN IMMEDIATE")
            for i, op in enumerate(batch):
                assert op.fn is not None
                conn.execute("SAVEPOINT op")
                try:
                    results[i] = (op.fn(conn), None)
                except (sqlite3.Error, JournalError) as exc:
                    conn.execute("ROLLBACK TO op")
                    results[i] = (None, _wrap(exc, self.path))
                except Exception as exc:  # noqa: BLE001 - a bug in one op: that op's error
                    conn.execute("ROLLBACK TO op")
                    results[i] = (None, exc)
                conn.execute("RELEASE op")
            conn.execute("COMMIT")
        except (sqlite3.Error, JournalError) as exc:
            self._rollback()
            failed = _wrap(exc, self.path)
            results = [(None, error or failed) for _, error in results]
        except Exception as exc:  # noqa: BLE001 - handed to every waiting caller
            self._rollback()
            results = [(None, error or exc) for _, error in results]
        for op, (value, error) in zip(batch, results, strict=True):
            op.complete(value, error)

    def _check_identity(self) -> None:
        try:
            st = os.stat(self.path)
        except OSError as exc:
            raise JournalError(
                f"the journal file was removed while in use ({exc.strerror})", path=self.path
            ) from exc
        if (st.st_dev, st.st_ino) != self._identity:
            raise JournalError("the journal file was replaced while in use", path=self.path)

    def _rollback(self) -> None:
        try:
            if self._conn is not None and self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
        except sqlite3.Error as exc:
            logger.error("journal %s: rollback failed: %s", self.path, exc)

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = self._open(self.path)
            st = os.stat(self.path)
            self._identity = (st.st_dev, st.st_ino)
        return self._conn

    def _close_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except sqlite3.Error as exc:
                logger.error("journal %s: close failed: %s", self.path, exc)


def _wrap(exc: BaseException, path: str) -> BaseException:
    if isinstance(exc, sqlite3.Error):
        wrapped = JournalError(str(exc), path=path)
        wrapped.__cause__ = exc
        return wrapped
    return exc

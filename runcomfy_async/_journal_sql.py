"""The journal's SQLite side: schema, connection set-up and statements.

Plain ``sqlite3``, called only from the journal's worker thread (``_journal``), one batch
at a time. Rows come back as tuples in :data:`COLUMNS` order.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any, Final

__all__ = ["COLUMNS", "SCHEMA_VERSION", "connect", "insert_intent", "select", "select_all"]

SCHEMA_VERSION: Final = 1
SCHEMA: Final = """
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
    finished_at  REAL
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state);
"""
COLUMNS: Final = (
    "key, model_id, inputs, state, request_id, result, reason, created_at, submitted_at, "
    "finished_at"
)


def connect(path: str) -> sqlite3.Connection:
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
        if version > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(
                f"written by a newer runcomfy_async (schema {version} > {SCHEMA_VERSION})"
            )
        if version < SCHEMA_VERSION:
            conn.executescript(SCHEMA)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except sqlite3.Error:
        conn.close()
        raise
    return conn


def select(conn: sqlite3.Connection, key: str) -> tuple[Any, ...] | None:
    """Return the key's row, or None."""
    row: tuple[Any, ...] | None = conn.execute(
        f"SELECT {COLUMNS} FROM jobs WHERE key = ?", (key,)
    ).fetchone()
    return row


def select_all(conn: sqlite3.Connection, state: str | None) -> list[tuple[Any, ...]]:
    """Return every row (or those in ``state``), oldest intent first."""
    sql = f"SELECT {COLUMNS} FROM jobs"
    params: tuple[str, ...] = ()
    if state is not None:
        sql += " WHERE state = ?"
        params = (state,)
    return list(conn.execute(sql + " ORDER BY created_at", params))


def insert_intent(
    conn: sqlite3.Connection, key: str, model_id: str, inputs: str, replace: bool
) -> None:
    """Insert the key as ``intent``; with ``replace``, also over a retryable row.

    Raises:
        sqlite3.IntegrityError: The key exists (and, with ``replace``, is not ``intent``,
            ``uncertain`` or ``failed``).
    """
    sql = (
        "INSERT INTO jobs (key, model_id, inputs, state, created_at) VALUES (?, ?, ?, 'intent', ?)"
    )
    if replace:
        sql += (
            " ON CONFLICT (key) DO UPDATE SET model_id = excluded.model_id,"
            " inputs = excluded.inputs, state = 'intent', request_id = NULL, result = NULL,"
            " reason = NULL, created_at = excluded.created_at, submitted_at = NULL,"
            " finished_at = NULL WHERE state IN ('intent', 'uncertain', 'failed')"
        )
    taken = f"key {key!r} is journaled already" + (" and is not retryable" if replace else "")
    try:
        cursor = conn.execute(sql, (key, model_id, inputs, time.time()))
    except sqlite3.IntegrityError as exc:
        raise sqlite3.IntegrityError(taken) from exc
    if cursor.rowcount != 1:
        raise sqlite3.IntegrityError(taken)

"""Helpers the money-safety tests share: billed jobs per item, and a slow disk."""

from __future__ import annotations

import sqlite3
import time
from collections import Counter
from typing import Any

import msgspec

from runcomfy_async.testing import Simulator

__all__ = ["SlowCommits", "billed_per_prompt"]


def billed_per_prompt(sim: Simulator) -> Counter[str]:
    """Jobs created per item that were not cancelled (a cancelled queued job costs nothing)."""
    billed: Counter[str] = Counter()
    for record in sim.log:
        rid = record.request_id
        submitted = record.route == "submit" and record.status == 200 and rid is not None
        if submitted and sim.job(str(rid)).state != "cancelled":
            billed[msgspec.json.decode(record.body or b"{}")["prompt"]] += 1
    return billed


class SlowCommits:
    """A connection whose commits take 50 ms (a network disk)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if sql == "COMMIT":
            time.sleep(0.05)
        return self._conn.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

"""Run the RunComfy simulator in a process of its own, for the benchmarks.

The simulator's CPU and memory must not be counted as the client's, so it is served from a
``spawn``-ed child; a pipe carries its URL back and, on request, its counters.
"""

from __future__ import annotations

import multiprocessing
from multiprocessing.connection import Connection
from types import TracebackType
from typing import Any

import anyio
import anyio.to_thread


def _serve(conn: Connection, options: dict[str, Any]) -> None:
    from runcomfy_async.testing import JobScript, Simulator

    async def main() -> None:
        script = options.pop("script", None)
        async with Simulator(
            script=None if script is None else JobScript(**script), **options
        ) as sim:
            conn.send((sim.url, sim.token))
            while (command := await anyio.to_thread.run_sync(conn.recv)) != "stop":
                if command == "stats":
                    stats = sim.stats
                    conn.send(
                        {
                            "requests_by_route": stats.requests_by_route,
                            "jobs_created": stats.jobs_created,
                            "max_concurrent_connections": stats.max_concurrent_connections,
                            "rate_limited": stats.rate_limited,
                        }
                    )
                else:  # ("routes" | "timed", start): each job's requests in log[start:]
                    kind, start = command
                    log = sim.log
                    sequences: dict[str | None, list[object]] = {}
                    begin = log[start].t if len(log) > start else 0.0
                    for record in log[start:]:
                        entry = (
                            record.route if kind == "routes" else (record.route, record.t - begin)
                        )
                        sequences.setdefault(record.request_id, []).append(entry)
                    conn.send((len(log), [tuple(s) for k, s in sequences.items() if k]))

    anyio.run(main)


class SimProcess:
    """A simulator served by a child process; ``with SimProcess(clock="wall") as sim:``."""

    def __init__(self, **options: Any) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(child, options), daemon=True)
        self.url = ""
        self.token = ""

    def __enter__(self) -> SimProcess:
        self._process.start()
        self.url, self.token = self._conn.recv()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._conn.send("stop")
        self._process.join(10)
        if self._process.is_alive():
            self._process.kill()

    def stats(self) -> dict[str, Any]:
        """The simulator's counters now (requests per route, jobs created, connections)."""
        self._conn.send("stats")
        stats: dict[str, Any] = self._conn.recv()
        return stats

    def routes(self, start: int = 0) -> tuple[int, list[tuple[str, ...]]]:
        """The log's length now, and each job's route sequence among records ``start:``."""
        self._conn.send(("routes", start))
        answer: tuple[int, list[tuple[str, ...]]] = self._conn.recv()
        return answer

    def timed_routes(self, start: int = 0) -> list[tuple[tuple[str, float], ...]]:
        """Each job's requests among records ``start:``: route and arrival, in seconds
        after the first of those records."""
        self._conn.send(("timed", start))
        answer: tuple[int, list[tuple[tuple[str, float], ...]]] = self._conn.recv()
        return answer[1]

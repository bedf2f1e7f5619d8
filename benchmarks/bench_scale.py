"""Scale: 10,000 concurrent ``client.run()`` on ONE client, through ``asyncio.gather``.

What is measured: the naive batch script — ``await asyncio.gather(*(client.run(...) for
...))`` over 10,000 jobs — against the wall-clock simulator served from a separate process
(so its CPU and memory are not counted). Every job must succeed. Reported: the client's
peak RSS above its baseline (``ru_maxrss``), CPU seconds per job (process time), requests
per job (from the simulator's counters), the most jobs in flight at once, and per-job
latency (median, p95).

Why: batch scripts gather thousands of jobs on one client; the session must bound
connections, submits and polls on its own, and hold 10,000 in-flight jobs in under
100 MB, with the client's DEFAULTS (no polling policy given). The simulator runs every
job at once (one worker per job) for a short, fixed-range run time, so all 10,000 are
in flight together and the run ends in about a minute.

Run it from the repository root: ``python benchmarks/bench_scale.py``; add ``--keyed`` to
give every run a journal key (``Client(journal=...)``) and see what the journal costs.
Loopback only.
"""

from __future__ import annotations

import asyncio
import resource
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from _sim_process import SimProcess

from runcomfy_async import Client, Result

JOBS = 10_000
WARMUP_JOBS = 200
RUN_SECONDS = (15.0, 20.0)  # wall-clock run time of each simulated job
SIM_WORKERS = JOBS + WARMUP_JOBS  # no queue: every job runs as soon as it is submitted
TARGET_RSS_MB = 100.0
TIMEOUT = 600.0  # seconds; the whole benchmark is abandoned past this
#: Run keyed through a journal in a temporary directory (run(..., key=...)), to see its cost.
KEYED = "--keyed" in sys.argv
MODEL = "wan-ai/wan-2-5/image-to-video"
INPUTS = {"prompt": "a red fox running through snow", "img_url": "https://example.com/fox.png"}


def rss_mb() -> float:
    """The process's peak resident set so far, in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Progress:
    """Jobs finished so far, read by the in-flight sampler."""

    finished = 0


async def timed_run(client: Client, index: int, started: float) -> tuple[Result, float]:
    """Run one job; return its result and its latency from the batch's start."""
    key = f"job-{index}-{started}" if KEYED else None
    result = await client.run(MODEL, {**INPUTS, "prompt": f"job {index}"}, key=key)
    Progress.finished += 1
    return result, time.perf_counter() - started


async def batch(client: Client, jobs: int) -> tuple[list[Result], list[float]]:
    """The naive script: gather every run at once."""
    started = time.perf_counter()
    done = await asyncio.gather(*(timed_run(client, i, started) for i in range(jobs)))
    return [r for r, _ in done], [t for _, t in done]


class InFlight:
    """Samples jobs submitted (simulator) minus jobs finished (client) from a thread."""

    def __init__(self, sim: SimProcess, base_submits: int) -> None:
        self.sim, self.base = sim, base_submits
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> InFlight:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.wait(0.25):
            submitted = self.sim.stats()["requests_by_route"].get("submit", 0) - self.base
            self.peak = max(self.peak, submitted - Progress.finished)


async def main() -> None:
    """Warm up, run the batch, print the table."""
    with (
        SimProcess(clock="wall", workers=SIM_WORKERS, run_seconds=RUN_SECONDS) as sim,
        tempfile.TemporaryDirectory() as tmp,
    ):
        journal = Path(tmp, "bench.db") if KEYED else None
        async with Client(token=sim.token, base_url=sim.url, journal=journal) as client:
            await batch(client, WARMUP_JOBS)  # connections, imports, learned run times
            before = sim.stats()
            baseline = rss_mb()
            cpu = time.process_time()
            wall = time.perf_counter()
            Progress.finished = 0
            with InFlight(sim, before["requests_by_route"]["submit"]) as flight:
                results, latencies = await asyncio.wait_for(batch(client, JOBS), TIMEOUT)
            wall = time.perf_counter() - wall
            cpu = time.process_time() - cpu
            peak = rss_mb()
        after = sim.stats()
    report(results, latencies, before, after, baseline, peak, cpu, wall, flight.peak)


def report(
    results: list[Result],
    latencies: list[float],
    before: dict[str, object],
    after: dict[str, object],
    baseline: float,
    peak: float,
    cpu: float,
    wall: float,
    in_flight: int,
) -> None:
    """Print the figures as a table."""
    by_route_before: dict[str, int] = before["requests_by_route"]  # type: ignore[assignment]
    by_route_after: dict[str, int] = after["requests_by_route"]  # type: ignore[assignment]
    routes = {k: by_route_after.get(k, 0) - by_route_before.get(k, 0) for k in by_route_after}
    ok = sum(1 for r in results if r.output is not None)
    growth = peak - baseline
    q = statistics.quantiles(latencies, n=20)
    rows = [
        ("jobs", f"{JOBS:,}", ""),
        ("succeeded", f"{ok:,}", "all" if ok == JOBS else "NOT ALL"),
        ("peak jobs in flight (sampled)", f"{in_flight:,}", ""),
        ("client peak RSS above baseline", f"{growth:.1f} MB", f"target < {TARGET_RSS_MB:.0f} MB"),
        ("client RSS baseline / peak", f"{baseline:.1f} / {peak:.1f} MB", ""),
        ("client CPU per job", f"{cpu / JOBS * 1e3:.3f} ms", f"{cpu:.1f} s in all"),
        ("requests per job", f"{sum(routes.values()) / JOBS:.2f}", _routes(routes)),
        ("max API connections (sim)", str(after["max_concurrent_connections"]), ""),
        ("job latency median / p95", f"{statistics.median(latencies):.1f} / {q[18]:.1f} s", ""),
        ("wall time", f"{wall:.1f} s", f"run time {RUN_SECONDS[0]:g}-{RUN_SECONDS[1]:g} s"),
    ]
    width = max(len(r[0]) for r in rows)
    keyed = ", keyed (journal)" if KEYED else ""
    print(f"bench_scale: {JOBS:,} x client.run() via asyncio.gather on one Client{keyed}")
    for name, value, note in rows:
        print(f"  {name:<{width}}  {value:>18}  {note}")
    verdict = "PASS" if ok == JOBS and growth < TARGET_RSS_MB else "FAIL"
    print(f"  {verdict}: all succeeded and RSS growth under {TARGET_RSS_MB:.0f} MB")


def _routes(routes: dict[str, int]) -> str:
    return ", ".join(f"{name} {count / JOBS:.2f}" for name, count in sorted(routes.items()))


if __name__ == "__main__":
    asyncio.run(main())

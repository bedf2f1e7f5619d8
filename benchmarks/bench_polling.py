"""Poll requests per job and completion-detection latency: our polling vs the usual ones.

What is measured: jobs of 10 s, 60 s and 300 s (each run time drawn uniformly within ±5 %)
run on the wall-clock simulator, in a separate process so it is never the bottleneck, with
its clock compressed by ``time_scale`` so the whole benchmark takes about a minute. Each
job is awaited with ``client.run()`` under one of four polling policies:

* ``ours``          the default :class:`~runcomfy_async.PollPolicy` (learns run times);
* ``fixed 0.1 s``   fal-client's interval;
* ``fixed 0.5 s``   Replicate's interval — the baseline every ratio is taken against;
* ``0.5→5 s``       Comfy Router's SDK: 0.5 s × 1.5 up to 5 s.

Why: polling is the product's cost (requests) against its latency (how late the user
learns the video is ready). For each policy: poll requests per job — ``/status`` and
``/result`` together, since ours polls ``/result`` near the expected finish (counted by the
simulator) and detection latency, the time from the job's ``finished_at`` to ``run()``
returning, p50 and p95, in *simulated* seconds. Policy intervals are divided by the time
scale (and our request budget multiplied by it) so every policy sees the same simulated
world. Jobs arrive every quarter of a run time, one per policy at each arrival, so a
session learns as it goes: the ``warm`` rows leave out jobs submitted before that policy
saw its first job finish (a model's first jobs have no history and use plain backoff).

Run: ``python benchmarks/bench_polling.py`` (prints a table; not a test).
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing as mp
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from typing import Final

import anyio
import msgspec

from runcomfy_async import Client, PollPolicy, RetryPolicy

# --- tunables --------------------------------------------------------------------------------
RUN_SECONDS: Final = (10.0, 60.0, 300.0)  # simulated run time of each scenario
TIME_SCALE: Final = {10.0: 1.5, 60.0: 8.0, 300.0: 35.0}  # simulated seconds per wall second
SPREAD: Final = 0.05  # run times drawn uniformly within ±5 %
JOBS: Final = 24  # arrivals per scenario; each brings one job per policy …
EVERY: Final = {"fixed 0.1 s": 6, "fixed 0.5 s": 2}  # … except these costly baselines,
# which take every n-th arrival: their cost and latency hardly vary from job to job, and
# their request flood would otherwise slow the shared event loop for every policy.
ARRIVAL_GAP: Final = 0.25  # a new job every quarter of a run time
MODEL: Final = "wan-ai/wan-2-5/image-to-video"
INPUTS: Final = {"prompt": "a red fox running through snow", "img_url": "https://e.com/f.png"}
BASELINE: Final = "fixed 0.5 s"
TARGET: Final = (60.0, 12.0, 2.0)  # for 60 s jobs: at most 12 requests a job, p95 within 2 s


def _fixed(interval: float) -> PollPolicy:
    return PollPolicy(
        first_interval=interval, growth=1.0, max_interval=interval, jitter=0.0, learn=False
    )


POLICIES: Final[dict[str, PollPolicy]] = {
    "ours": PollPolicy(),
    "fixed 0.1 s": _fixed(0.1),
    "fixed 0.5 s": _fixed(0.5),
    "0.5→5 s": PollPolicy(
        first_interval=0.5, growth=1.5, max_interval=5.0, jitter=0.0, learn=False
    ),
}
_UNLIMITED: Final = 1e6


def scaled(policy: PollPolicy, scale: float) -> PollPolicy:
    """The policy in wall-clock terms for a world running ``scale`` times faster."""
    fixed = not policy.learn
    return msgspec.structs.replace(
        policy,
        first_interval=policy.first_interval / scale,
        max_interval=policy.max_interval / scale,
        finish_interval=policy.finish_interval / scale,
        max_learned_interval=policy.max_learned_interval / scale,
        max_retry_after=policy.max_retry_after / scale,
        # Baselines poll per job with no session budget, as their SDKs do.
        requests_per_second=_UNLIMITED
        if fixed
        else None
        if policy.requests_per_second is None
        else policy.requests_per_second * scale,
        start_requests_per_second=policy.start_requests_per_second * scale,
        burst=1000 if fixed else policy.burst,
    )


# --- the simulator process ----------------------------------------------------------------


def _serve(conn: Connection, specs: Sequence[tuple[float, float]]) -> None:
    asyncio.run(_serve_async(conn, specs))


async def _serve_async(conn: Connection, specs: Sequence[tuple[float, float]]) -> None:
    from runcomfy_async.testing import Simulator

    sims = [
        Simulator(
            clock="wall",
            workers=100_000,  # no queue: the run time is what is measured
            run_seconds=(run * (1 - SPREAD), run * (1 + SPREAD)),
            time_scale=scale,
            seed=7,
        )
        for run, scale in specs
    ]
    for sim in sims:
        await sim.start()
    conn.send([(sim.url, sim.token) for sim in sims])
    # The parent asks once, at the end: poll requests (/status and /result) per job id.
    wanted: list[list[str]] = await anyio.to_thread.run_sync(conn.recv)
    conn.send(
        [
            {
                rid: sim.count("status", request_id=rid) + sim.count("result", request_id=rid)
                for rid in ids
            }
            for sim, ids in zip(sims, wanted, strict=True)
        ]
    )
    for sim in sims:
        await sim.aclose()


# --- the client side ----------------------------------------------------------------------


@dataclass
class Cell:
    """One policy in one scenario: its jobs' ids, latencies and warm flags."""

    ids: list[str] = field(default_factory=list)
    latency: list[float] = field(default_factory=list)
    warm: list[bool] = field(default_factory=list)
    first_done: float = math.inf


async def _one_job(client: Client, cell: Cell, scale: float) -> None:
    submitted = time.time()
    result = await client.run(MODEL, INPUTS)
    seen = datetime.now(UTC)
    assert result.finished_at is not None
    cell.ids.append(result.request_id)
    cell.latency.append((seen - result.finished_at).total_seconds() * scale)
    cell.warm.append(submitted > cell.first_done)
    cell.first_done = min(cell.first_done, time.time())


async def _scenario(url: str, token: str, run: float, scale: float) -> dict[str, Cell]:
    cells = {name: Cell() for name in POLICIES}
    gap = run * ARRIVAL_GAP / scale
    clients = {
        name: Client(token=token, base_url=url, polling=scaled(policy, scale), retry=RetryPolicy())
        for name, policy in POLICIES.items()
    }
    try:
        async with anyio.create_task_group() as tg:
            for i in range(JOBS):
                for name, client in clients.items():
                    if i % EVERY.get(name, 1):
                        continue
                    tg.start_soon(_one_job, client, cells[name], scale)
                await anyio.sleep(gap)
    finally:
        for client in clients.values():
            await client.aclose()
    return cells


def _pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def _rows(run: float, cells: dict[str, Cell], counts: dict[str, int]) -> list[str]:
    base = cells[BASELINE]
    base_req = sum(counts[r] for r in base.ids) / len(base.ids)
    base_p95 = _pct(base.latency, 0.95)
    lines = []
    for name, cell in cells.items():
        for label, keep in (("all", None), ("warm", True)):
            idx = [i for i, w in enumerate(cell.warm) if keep is None or w == keep]
            if not idx or (label == "warm" and len(idx) == len(cell.ids)):
                continue
            req = sum(counts[cell.ids[i]] for i in idx) / len(idx)
            lat = [cell.latency[i] for i in idx]
            p50, p95 = _pct(lat, 0.5), _pct(lat, 0.95)
            lines.append(
                f"{run:>5.0f} s  {name:<12} {label:<4} {len(idx):>4}  {req:>9.1f}  "
                f"{base_req / req:>6.1f}×  {p50:>6.2f}  {p95:>6.2f}  {p95 / base_p95:>6.2f}×"
            )
    return lines


async def _main(urls: Sequence[tuple[str, str]]) -> list[dict[str, Cell]]:
    results: list[dict[str, Cell]] = [{} for _ in RUN_SECONDS]

    async def scenario(i: int, run: float) -> None:
        url, token = urls[i]
        results[i] = await _scenario(url, token, run, TIME_SCALE[run])

    async with anyio.create_task_group() as tg:
        for i, run in enumerate(RUN_SECONDS):
            tg.start_soon(scenario, i, run)
    return results


def main() -> None:
    """Run every scenario at once against a simulator process and print the table."""
    parent, child = mp.get_context("spawn").Pipe()
    specs = [(run, TIME_SCALE[run]) for run in RUN_SECONDS]
    proc = mp.get_context("spawn").Process(target=_serve, args=(child, specs), daemon=True)
    proc.start()
    urls = parent.recv()
    started = time.perf_counter()
    results = asyncio.run(_main(urls))
    wall = time.perf_counter() - started
    parent.send([[rid for cell in cells.values() for rid in cell.ids] for cells in results])
    counts = parent.recv()
    proc.join(timeout=10)
    print(
        f"Polling benchmark: run times ±{SPREAD:.0%}, latency in simulated seconds, "
        f"ratios against {BASELINE} (requests: how many times fewer; p95: ours / theirs)."
    )
    print(
        f"{'run':>7}  {'policy':<12} {'jobs':<4} {'n':>4}  {'req/job':>9}  {'fewer':>7}  "
        f"{'p50':>6}  {'p95':>6}  {'p95 vs':>7}"
    )
    verdict = ""
    for run, cells, count in zip(RUN_SECONDS, results, counts, strict=True):
        print("\n".join(_rows(run, cells, count)))
        if run == TARGET[0]:
            verdict = _verdict(cells["ours"], count)
    print(verdict)
    print(f"wall time {wall:.0f} s")


def _verdict(cell: Cell, counts: dict[str, int]) -> str:
    run, most, p95 = TARGET
    req = sum(counts[r] for r in cell.ids) / len(cell.ids)
    late = _pct(cell.latency, 0.95)
    met = "met" if req <= most and late <= p95 else "NOT met"
    return (
        f"target for {run:.0f} s jobs (all jobs, cold ones included): <= {most:.0f} req/job "
        f"and p95 <= {p95:.0f} s -> {req:.1f} req/job, p95 {late:.2f} s: {met}"
    )


if __name__ == "__main__":
    main()

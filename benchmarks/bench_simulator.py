"""How many status polls per second the simulator answers while it holds 10,000 live jobs.

Why: the simulator backs our load tests and demos (thousands of concurrent ``run()`` calls), so
it must not be the bottleneck. Its wall clock is simulated lazily (a heap of slot-free times and
a Fenwick tree for queue positions), which should keep a status poll O(log n) however many jobs
are live. This script checks that claim end to end over real HTTP on loopback.

Setup: the server runs in its own process (pinned to its own CPU when the machine has two), in
wall-clock mode with ``JOBS`` queued jobs that never finish during the run. The load generator
(this process) polls random jobs through a bounded aiohttp connection pool. The same load is
sent to a bare aiohttp.web handler answering a canned status body in the same setup: the
*ratio* to that baseline is the figure to watch, not the absolute rate, which depends on the
machine and on the load generator (also aiohttp, also one core).

Run: ``python benchmarks/bench_simulator.py``. Loopback only; nothing leaves the machine.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import random
import statistics
import time
from multiprocessing.connection import Connection
from typing import Final, NamedTuple

import aiohttp
from aiohttp import web

JOBS: Final = 10_000  # live (queued) jobs in the simulator during the measurement
REQUESTS_PER_ROUND: Final = 4_000  # status polls per measured round
ROUNDS: Final = 5  # measured rounds per target; the median round is reported
WARMUP_REQUESTS: Final = 1_000  # unmeasured polls first (connections, caches, JIT-free warm-up)
CONNECTIONS: Final = 32  # the client's connection pool size = concurrent requests in flight
MAX_SECONDS_PER_ROUND: Final = 20.0  # a round stops early past this, so the bench is bounded
TOKEN: Final = "bench-token"
MODEL: Final = "wan-ai/wan-2-5/image-to-video"
INPUTS: Final = {"prompt": "a red fox running through snow", "img_url": "https://x.test/f.png"}


def _pin(cpu: int) -> None:
    """Pin this process to one CPU when the OS and the machine allow it."""
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {cpu})


def _control(conn: Connection) -> None:
    """Answer the parent's CPU-time queries until it says stop (runs in a worker thread)."""
    while conn.recv() == "cpu":
        conn.send(time.process_time())


async def _sim_main(conn: Connection) -> None:
    from runcomfy_async.testing import Simulator

    async with Simulator(token=TOKEN, clock="wall", workers=4, run_seconds=86_400.0) as sim:
        conn.send(sim.url)
        await asyncio.get_running_loop().run_in_executor(None, _control, conn)


async def _hello_main(conn: Connection) -> None:
    body = (
        b'{"request_id":"x","status":"in_queue","queue_position":1,'
        b'"status_url":"http://127.0.0.1/v1/requests/x/status",'
        b'"result_url":"http://127.0.0.1/v1/requests/x/result"}'
    )

    async def status(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/v1/requests/{request_id}/status", status)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    conn.send(f"http://127.0.0.1:{runner.addresses[0][1]}")
    await asyncio.get_running_loop().run_in_executor(None, _control, conn)
    await runner.cleanup()


def _serve(kind: str, conn: Connection) -> None:
    _pin(1)
    asyncio.run(_sim_main(conn) if kind == "sim" else _hello_main(conn))


async def _create_jobs(session: aiohttp.ClientSession, url: str) -> list[str]:
    ids: list[str] = []

    async def worker(count: int) -> None:
        for _ in range(count):
            async with session.post(f"{url}/v1/models/{MODEL}", json=INPUTS) as response:
                ids.append((await response.json())["request_id"])

    share = JOBS // CONNECTIONS
    await asyncio.gather(*(worker(share + (i < JOBS % CONNECTIONS)) for i in range(CONNECTIONS)))
    return ids


async def _poll_round(
    session: aiohttp.ClientSession, url: str, ids: list[str], total: int
) -> tuple[float, list[float]]:
    """Send ``total`` status polls on random jobs; return (requests/s, latencies in s)."""
    latencies: list[float] = []
    rng = random.Random(total)
    deadline = time.perf_counter() + MAX_SECONDS_PER_ROUND
    remaining = [total]

    async def worker() -> None:
        while remaining[0] > 0 and time.perf_counter() < deadline:
            remaining[0] -= 1
            started = time.perf_counter()
            async with session.get(f"{url}/v1/requests/{rng.choice(ids)}/status") as response:
                await response.read()
                if response.status != 200:
                    raise RuntimeError(f"unexpected status {response.status}")
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))
    return len(latencies) / (time.perf_counter() - started), latencies


class Figures(NamedTuple):
    """What one target scored."""

    rate: float  # observed requests/s, median round (bounded by the load generator too)
    p50_ms: float  # median latency
    p95_ms: float  # 95th percentile latency
    cpu_us: float  # server CPU time per request, median round
    capacity: float  # requests per second of server CPU: what one server core could answer


def _server_cpu(conn: Connection) -> float:
    conn.send("cpu")
    return float(conn.recv())


async def _measure(url: str, ids: list[str], conn: Connection) -> Figures:
    """Warm up, then run the measured rounds against one target."""
    connector = aiohttp.TCPConnector(limit=CONNECTIONS)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        await _poll_round(session, url, ids, WARMUP_REQUESTS)
        rates, cpu_per_request, latencies = [], [], []
        for _ in range(ROUNDS):
            cpu_before = _server_cpu(conn)
            rate, lats = await _poll_round(session, url, ids, REQUESTS_PER_ROUND)
            cpu_per_request.append((_server_cpu(conn) - cpu_before) / len(lats))
            rates.append(rate)
            latencies.extend(lats)
    cpu = statistics.median(cpu_per_request)
    return Figures(
        rate=statistics.median(rates),
        p50_ms=statistics.median(latencies) * 1e3,
        p95_ms=statistics.quantiles(latencies, n=20)[-1] * 1e3,
        cpu_us=cpu * 1e6,
        capacity=1.0 / cpu,
    )


def _start(kind: str) -> tuple[multiprocessing.process.BaseProcess, Connection, str]:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    process = ctx.Process(target=_serve, args=(kind, child), daemon=True)
    process.start()
    if not parent.poll(60):
        raise RuntimeError(f"{kind} server did not start")
    return process, parent, parent.recv()


def _stop(process: multiprocessing.process.BaseProcess, conn: Connection) -> None:
    conn.send("stop")
    process.join(10)
    if process.is_alive():
        process.terminate()


async def _bench_sim() -> tuple[Figures, float]:
    process, conn, url = _start("sim")
    try:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        connector = aiohttp.TCPConnector(limit=CONNECTIONS)
        async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
            started = time.perf_counter()
            ids = await _create_jobs(session, url)
            submit_rate = len(ids) / (time.perf_counter() - started)
        return await _measure(url, ids, conn), submit_rate
    finally:
        _stop(process, conn)


async def _bench_hello() -> Figures:
    process, conn, url = _start("hello")
    try:
        return await _measure(url, [f"job-{i}" for i in range(JOBS)], conn)
    finally:
        _stop(process, conn)


def main() -> None:
    """Run both targets and print a table with the ratios to the baseline."""
    _pin(0)
    sim, submit_rate = asyncio.run(_bench_sim())
    hello = asyncio.run(_bench_hello())
    print(
        f"{JOBS:,} live jobs; {ROUNDS} rounds x {REQUESTS_PER_ROUND:,} polls; {CONNECTIONS} conns"
    )
    print(
        f"{'target':<26}{'req/s':>8}{'p50 ms':>8}{'p95 ms':>8}{'CPU us/req':>12}{'req/CPU-s':>11}"
    )
    for name, f in (("bare aiohttp.web handler", hello), ("simulator GET /status", sim)):
        print(
            f"{name:<26}{f.rate:>8,.0f}{f.p50_ms:>8.2f}{f.p95_ms:>8.2f}"
            f"{f.cpu_us:>12.0f}{f.capacity:>11,.0f}"
        )
    print(
        f"simulator / baseline: {sim.rate / hello.rate:.2f}x observed rate, "
        f"{sim.capacity / hello.capacity:.2f}x server capacity (submits: {submit_rate:,.0f}/s)"
    )


if __name__ == "__main__":
    main()

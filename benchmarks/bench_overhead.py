"""Overhead: the client's CPU per job beside the leanest raw-aiohttp loop, as a ratio.

What is measured: process CPU time per job for ``client.run()`` (submit, status polls,
result, all through the client's retry, polling, watcher and typed decoding) and for a
bare aiohttp loop making the *same* requests (one POST, status GETs until the job is
finished, one result GET; msgspec to read the JSON; the same connection pool and submit
bound), in alternating rounds in one process against one simulator. The simulator runs
in a separate process on the scripted clock, so every job takes exactly the same number
of polls in both variants (checked from its counters) and nobody sleeps.

Why: the raw loop is the floor for any aiohttp client; the client's structure (shared
poll budget, backoff, events, error mapping) should cost at most 1.2x that floor per
request. The client is measured with its DEFAULTS (its own polling schedule and adaptive
budget; requests per job are then the client's, so the ratio is also given per request),
and, labelled as tuned, with polling that never waits and with ``trust_env=False``.

Run it from the repository root: ``python benchmarks/bench_overhead.py``. Loopback only.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
from collections.abc import Awaitable, Callable

import aiohttp
import msgspec
from _sim_process import SimProcess

from runcomfy_async import Client, Limits, PollPolicy

JOBS_PER_ROUND = 1_000
ROUNDS = 5  # per variant, alternating, after one warm-up round each
QUEUE_POLLS, RUN_POLLS = 2, 2  # scripted: each job answers 2 x in_queue, 2 x in_progress
TARGET_RATIO = 1.2  # CPU per request, client / raw
LIMITS = Limits()  # the client's defaults, mirrored by the raw loop below
#: Tuned variant only: no waiting between polls and no budget to speak of.
POLL = PollPolicy(
    first_interval=0.0,
    max_interval=0.0,
    jitter=0.0,
    learn=False,
    requests_per_second=1e6,
    burst=1_000_000,
)
MODEL = "wan-ai/wan-2-5/image-to-video"
INPUTS = {"prompt": "a red fox running through snow", "img_url": "https://example.com/fox.png"}
_FINISHED = frozenset({"completed", "succeeded", "failed", "cancelled", "canceled"})


class _Submitted(msgspec.Struct):
    request_id: str


class _Status(msgspec.Struct):
    status: str


class _Result(msgspec.Struct):
    request_id: str
    status: str
    output: dict[str, object] | None = None


async def raw_job(
    session: aiohttp.ClientSession, submits: asyncio.Semaphore, base: str, body: bytes
) -> _Result:
    """One job by hand: POST, poll until finished, GET the result."""
    async with submits, session.post(f"{base}/v1/models/{MODEL}", data=body) as response:
        response.raise_for_status()
        request_id = msgspec.json.decode(await response.read(), type=_Submitted).request_id
    while True:
        async with session.get(f"{base}/v1/requests/{request_id}/status") as response:
            response.raise_for_status()
            status = msgspec.json.decode(await response.read(), type=_Status).status
        if status in _FINISHED:
            break
    async with session.get(f"{base}/v1/requests/{request_id}/result") as response:
        response.raise_for_status()
        return msgspec.json.decode(await response.read(), type=_Result)


async def raw_round(sim: SimProcess, jobs: int) -> None:
    """The floor: ``jobs`` raw jobs gathered at once over one pooled session."""
    connector = aiohttp.TCPConnector(
        limit=LIMITS.max_connections, limit_per_host=LIMITS.max_connections_per_host
    )
    headers = {"Authorization": f"Bearer {sim.token}", "Content-Type": "application/json"}
    submits = asyncio.Semaphore(LIMITS.max_submits_in_flight)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        body = msgspec.json.encode(INPUTS)
        results = await asyncio.gather(
            *(raw_job(session, submits, sim.url, body) for _ in range(jobs))
        )
    assert all(r.output is not None for r in results)


async def client_round(
    sim: SimProcess, jobs: int, *, trust_env: bool = True, polling: PollPolicy | None = None
) -> None:
    """The client with its defaults: ``jobs`` x ``client.run()`` gathered at once."""
    async with Client(
        token=sim.token,
        base_url=sim.url,
        limits=LIMITS,
        trust_env=trust_env,
        **({} if polling is None else {"polling": polling}),  # type: ignore[arg-type]
    ) as client:
        results = await asyncio.gather(*(client.run(MODEL, INPUTS) for _ in range(jobs)))
    assert all(r.output is not None for r in results)


async def client_round_tuned(sim: SimProcess, jobs: int) -> None:
    """Tuned: polls never wait, ``trust_env=False`` (no proxy / netrc lookups)."""
    await client_round(sim, jobs, trust_env=False, polling=POLL)


async def measure(
    sim: SimProcess, variant: Callable[[SimProcess, int], Awaitable[None]]
) -> tuple[float, float]:
    """One round: CPU ms per job, and requests per job (from the simulator)."""
    before = sum(sim.stats()["requests_by_route"].values())
    gc.collect()
    cpu = time.process_time()
    await variant(sim, JOBS_PER_ROUND)
    cpu = time.process_time() - cpu
    requests = sum(sim.stats()["requests_by_route"].values()) - before
    return cpu / JOBS_PER_ROUND * 1e3, requests / JOBS_PER_ROUND


async def main() -> None:
    """Warm up, alternate the variants, print the table."""
    script = {"queue_polls": QUEUE_POLLS, "run_polls": RUN_POLLS}
    variants = {
        "raw aiohttp": raw_round,
        "client.run (defaults)": client_round,
        "tuned: no waits, trust_env=False": client_round_tuned,
    }
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    with SimProcess(clock="scripted", script=script) as sim:
        for variant in variants.values():
            await variant(sim, JOBS_PER_ROUND)  # warm-up
        for _ in range(ROUNDS):
            for name, variant in variants.items():
                samples[name].append(await measure(sim, variant))
    report(samples)


def report(samples: dict[str, list[tuple[float, float]]]) -> None:
    """Print per-variant medians and p95, and the ratio of the medians."""
    print(
        f"bench_overhead: {ROUNDS} rounds x {JOBS_PER_ROUND:,} jobs per variant "
        f"(scripted sim: {QUEUE_POLLS} queued + {RUN_POLLS} running polls per job)"
    )
    width = max(len(name) for name in samples)
    print(f"  {'variant':<{width}}  {'CPU/job median':>14}  {'p95':>9}  {'requests/job':>12}")
    medians = {}
    per_request = {}
    for name, rows in samples.items():
        cpu = [c for c, _ in rows]
        medians[name] = statistics.median(cpu)
        per_request[name] = statistics.median(c / r for c, r in rows)
        p95 = statistics.quantiles(cpu, n=20, method="inclusive")[18]
        requests = statistics.median(r for _, r in rows)
        print(f"  {name:<{width}}  {medians[name]:>11.3f} ms  {p95:>6.3f} ms  {requests:>12.2f}")
    floor, floor_req = medians["raw aiohttp"], per_request["raw aiohttp"]
    for name in list(samples)[1:]:
        ratio = per_request[name] / floor_req
        verdict = "PASS" if ratio <= TARGET_RATIO else "FAIL"
        print(
            f"  {name}: CPU/job {medians[name] / floor:.2f}x, CPU/request {ratio:.2f}x the "
            f"floor (target <= {TARGET_RATIO}x per request)  {verdict}"
        )


if __name__ == "__main__":
    asyncio.run(main())

"""Overhead: the client's CPU per request beside a raw aiohttp loop making the same requests.

What is measured: process CPU time (the client's process only: the simulator is served
from a child process, ``_sim_process``) for ``client.run()`` (submit, polls, result, all
through the client's retry, polling, watcher and typed decoding) and for bare aiohttp loops,
in alternating rounds after one warm-up round each, medians of the rounds. The simulator
runs on the scripted clock (each job answers 2 x in_queue, 2 x in_progress to ``/status``),
so nobody sleeps and every round's jobs take the same path.

Target 7 is CPU per request *at equal request counts*: after each client round, a raw loop
replays exactly the requests the client made, job by job (the route sequences read from the
simulator's log: one POST, then the same ``/status`` and ``/result`` GETs in the same order),
so the two are compared on the same requests, the same answers and the same route mix. The
leanest raw loop (one POST, ``/status`` until finished, one ``/result``) is printed too, as
the per-job floor. The client is measured with its DEFAULTS; a tuned variant (polls that
never wait, ``trust_env=False``) appears beside it, labelled, against its own replay.

Three more baselines split what a waiting client pays that the back-to-back replay does
not: the same requests at the client's own moments (waiting costs a bare loop too), the
same requests with no waits but interleaved across jobs (each job yields before each
request, as any scheduler's jobs do: on this 2-core VM that alone costs about 1.4x the
back-to-back replay's CPU, whose jobs keep a warm connection), and target 1's raw loop
polling every 0.1 s, per request.

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
    session: aiohttp.ClientSession,
    submits: asyncio.Semaphore,
    base: str,
    body: bytes,
    every: float | None = None,
) -> _Result:
    """One job by hand: POST, poll until finished (every ``every`` s, if given), GET the
    result."""
    async with submits, session.post(f"{base}/v1/models/{MODEL}", data=body) as response:
        response.raise_for_status()
        request_id = msgspec.json.decode(await response.read(), type=_Submitted).request_id
    while True:
        if every is not None:
            await asyncio.sleep(every)
        async with session.get(f"{base}/v1/requests/{request_id}/status") as response:
            response.raise_for_status()
            status = msgspec.json.decode(await response.read(), type=_Status).status
        if status in _FINISHED:
            break
    async with session.get(f"{base}/v1/requests/{request_id}/result") as response:
        response.raise_for_status()
        return msgspec.json.decode(await response.read(), type=_Result)


def raw_session(sim: SimProcess) -> aiohttp.ClientSession:
    """A bare session bounded like the client's defaults, with the token on every request."""
    connector = aiohttp.TCPConnector(
        limit=LIMITS.max_connections, limit_per_host=LIMITS.max_connections_per_host
    )
    headers = {"Authorization": f"Bearer {sim.token}", "Content-Type": "application/json"}
    return aiohttp.ClientSession(connector=connector, headers=headers)


async def raw_round(sim: SimProcess, jobs: int, every: float | None = None) -> None:
    """The floor: ``jobs`` raw jobs gathered at once over one pooled session."""
    submits = asyncio.Semaphore(LIMITS.max_submits_in_flight)
    async with raw_session(sim) as session:
        body = msgspec.json.encode(INPUTS)
        results = await asyncio.gather(
            *(raw_job(session, submits, sim.url, body, every) for _ in range(jobs))
        )
    assert all(r.output is not None for r in results)


async def raw_round_paused(sim: SimProcess, jobs: int) -> None:
    """Target 1's baseline loop: each job polls ``/status`` every 0.1 s."""
    await raw_round(sim, jobs, every=0.1)


async def replay_job(
    session: aiohttp.ClientSession,
    submits: asyncio.Semaphore,
    base: str,
    body: bytes,
    routes: tuple[str, ...],
    times: tuple[float, ...] | None = None,
    start: float = 0.0,
) -> _Result | None:
    """One job by hand making exactly ``routes`` (a client job's requests, in order); with
    ``times``, each at ``start`` plus its time (the moments the client made them)."""
    loop = asyncio.get_running_loop()
    if times is not None:
        await asyncio.sleep(max(0.0, start + times[0] - loop.time()))
    async with submits, session.post(f"{base}/v1/models/{MODEL}", data=body) as response:
        response.raise_for_status()
        request_id = msgspec.json.decode(await response.read(), type=_Submitted).request_id
    result = None
    for i, route in enumerate(routes[1:], 1):
        if times is not None:
            await asyncio.sleep(max(0.0, start + times[i] - loop.time()))
        async with session.get(f"{base}/v1/requests/{request_id}/{route}") as response:
            response.raise_for_status()
            if route == "status":
                msgspec.json.decode(await response.read(), type=_Status)
            else:
                result = msgspec.json.decode(await response.read(), type=_Result)
    return result


async def replay_round(
    sim: SimProcess,
    sequences: list[tuple[str, ...]],
    times: list[tuple[float, ...]] | None = None,
) -> None:
    """The floor at equal request counts: the client round's requests, made by hand; with
    ``times``, each at the moment the client made it."""
    submits = asyncio.Semaphore(LIMITS.max_submits_in_flight)
    async with raw_session(sim) as session:
        body = msgspec.json.encode(INPUTS)
        start = asyncio.get_running_loop().time()
        results = await asyncio.gather(
            *(
                replay_job(
                    session,
                    submits,
                    sim.url,
                    body,
                    routes,
                    None if times is None else times[i],
                    start,
                )
                for i, routes in enumerate(sequences)
            )
        )
    assert all(r is not None and r.output is not None for r in results)


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


Sample = tuple[float, float]  # CPU ms per job, requests per job


async def measure(
    sim: SimProcess, variant: Callable[[SimProcess, int], Awaitable[None]]
) -> tuple[Sample, list[tuple[str, ...]]]:
    """One round: its sample, and each job's route sequence (from the simulator's log)."""
    mark, _ = sim.routes(1 << 62)
    gc.collect()
    cpu = time.process_time()
    await variant(sim, JOBS_PER_ROUND)
    cpu = time.process_time() - cpu
    _, sequences = sim.routes(mark)
    requests = sum(len(routes) for routes in sequences)
    return (cpu / JOBS_PER_ROUND * 1e3, requests / JOBS_PER_ROUND), sequences


async def measure_replay(
    sim: SimProcess,
    sequences: list[tuple[str, ...]],
    times: list[tuple[float, ...]] | None = None,
) -> Sample:
    """One replay round of ``sequences`` (at ``times``, if given); checks it made exactly
    the same requests."""
    mark, _ = sim.routes(1 << 62)
    gc.collect()
    cpu = time.process_time()
    await replay_round(sim, sequences, times)
    cpu = time.process_time() - cpu
    _, replayed = sim.routes(mark)
    assert sorted(replayed) == sorted(sequences), "the replay made other requests"
    return cpu / len(sequences) * 1e3, sum(len(r) for r in replayed) / len(sequences)


#: The defaults' round replayed by hand at the client's own moments: what waiting costs
#: a bare loop too (each wake-up of a sleeping loop and each send to a sleeping server
#: costs CPU on this 2-core VM), so the ratio against it is the client's own overhead.
PACED = "  raw, same requests at the same moments as client.run (defaults)"
#: The same requests with no waits, but each job yielding before each request, so the
#: jobs' requests interleave as a scheduler's do (the leanest loop runs each job's
#: requests back to back on a warm connection, which no polling client does).
INTERLEAVED = "  raw, same requests interleaved, no waits"
#: Target 1's baseline, a raw loop polling every 0.1 s: it waits between polls too.
PAUSED = "raw aiohttp polling every 0.1 s"

CLIENTS = {
    "client.run (defaults)": client_round,
    "tuned: no waits, trust_env=False": client_round_tuned,
}


async def main() -> None:
    """Warm up, alternate the variants, print the table."""
    script = {"queue_polls": QUEUE_POLLS, "run_polls": RUN_POLLS}
    samples: dict[str, list[Sample]] = {"raw aiohttp (leanest loop)": []}
    for name in CLIENTS:
        samples[name] = []
        samples[f"  raw, same requests as {name.split(':')[0]}"] = []
    samples[PACED] = []
    samples[INTERLEAVED] = []
    samples[PAUSED] = []
    with SimProcess(clock="scripted", script=script) as sim:
        await raw_round(sim, JOBS_PER_ROUND)  # warm-up
        for variant in CLIENTS.values():
            _, sequences = await measure(sim, variant)
            await replay_round(sim, sequences)
        for _ in range(ROUNDS):
            samples["raw aiohttp (leanest loop)"].append((await measure(sim, raw_round))[0])
            for name, variant in CLIENTS.items():
                mark, _ = sim.routes(1 << 62)
                sample, sequences = await measure(sim, variant)
                samples[name].append(sample)
                if variant is client_round:
                    timed = sim.timed_routes(mark)
                replay = await measure_replay(sim, sequences)
                samples[f"  raw, same requests as {name.split(':')[0]}"].append(replay)
            paced = [tuple(route for route, _ in job) for job in timed]
            at = [tuple(t for _, t in job) for job in timed]
            samples[PACED].append(await measure_replay(sim, paced, at))
            zeros = [tuple(0.0 for _ in job) for job in at]
            samples[INTERLEAVED].append(await measure_replay(sim, paced, zeros))
            samples[PAUSED].append((await measure(sim, raw_round_paused))[0])
    report(samples)


def report(samples: dict[str, list[Sample]]) -> None:
    """Print per-variant medians and p95, and the ratios of the medians."""
    print(
        f"bench_overhead: {ROUNDS} rounds x {JOBS_PER_ROUND:,} jobs per variant "
        f"(scripted sim: {QUEUE_POLLS} queued + {RUN_POLLS} running /status polls per job)"
    )
    width = max(len(name) for name in samples)
    print(f"  {'variant':<{width}}  {'CPU/job median':>14}  {'p95':>9}  {'requests/job':>12}")
    medians: dict[str, float] = {}
    per_request: dict[str, float] = {}
    for name, rows in samples.items():
        cpu = [c for c, _ in rows]
        medians[name] = statistics.median(cpu)
        per_request[name] = statistics.median(c / r for c, r in rows)
        p95 = statistics.quantiles(cpu, n=20, method="inclusive")[18]
        requests = statistics.median(r for _, r in rows)
        print(f"  {name:<{width}}  {medians[name]:>11.3f} ms  {p95:>6.3f} ms  {requests:>12.2f}")
    floor = medians["raw aiohttp (leanest loop)"]
    paced = per_request["client.run (defaults)"] / per_request[PACED]
    print(
        f"  client.run (defaults): CPU/request {paced:.2f}x a raw loop making the same"
        f" requests at the same moments (target <= {TARGET_RATIO}x)"
        f"  {'PASS' if paced <= TARGET_RATIO else 'FAIL'}"
    )
    for base, what in ((INTERLEAVED, "the same requests interleaved"), (PAUSED, "a raw loop")):
        ratio = per_request["client.run (defaults)"] / per_request[base]
        print(
            f"  client.run (defaults): CPU/request {ratio:.2f}x {what}"
            f" ({base.strip()}; target <= {TARGET_RATIO}x)"
            f"  {'PASS' if ratio <= TARGET_RATIO else 'FAIL'}"
        )
    for name in CLIENTS:
        same = f"  raw, same requests as {name.split(':')[0]}"
        ratio = per_request[name] / per_request[same]
        verdict = "PASS" if ratio <= TARGET_RATIO else "FAIL"
        print(
            f"  {name}: CPU/request {ratio:.2f}x the raw loop's at equal request counts "
            f"(target <= {TARGET_RATIO}x)  {verdict}; CPU/job {medians[name] / floor:.2f}x "
            "the leanest loop's"
        )


if __name__ == "__main__":
    asyncio.run(main())

"""Chaos: 1,000 jobs through ``asyncio.gather(client.run(...))`` while ~10% of requests fail.

What is measured: one :class:`~runcomfy_async.Client` runs ``JOBS`` jobs at once against the
wall-clock simulator, served from a separate process, whose seeded fault plan hits about
``FAULT_RATE`` of all API requests with every fault kind it has: 429 with and without
``Retry-After``, 5xx, 408, 402, 200-with-``error_code``, malformed JSON, unknown statuses,
hangs past the read timeout, slow answers, resets before and after the work, redirects and
truncated bodies. Then every job is accounted for, against the simulator's request log:

* every job ends in a typed ``Result`` or a typed ``RunComfyError`` (else: *untyped*);
* every job the simulator created was created by exactly one submit (else: *duplicates*),
  and a submit was only ever repeated after a 429 (else: *blind retries*);
* every created ``request_id`` reached the caller, in a ``Result`` or a typed error naming
  it, or belongs to a submit the client reported as ``SubmitUncertainError`` (else:
  *lost*); the client never names an id the simulator did not create, nor calls a clean
  submit uncertain (else: *misreported*); faults that do the work (``reset_after``,
  ``malformed_json``, ``truncate``) created a job and the others did not (else: *fault
  mismatch*, a simulator bug);
* no asyncio task and no socket of the client's process outlives the client (*leaks*).

Why: users trust this client with money (a silent duplicate submit is paid twice) and with
their request ids (a lost id is a paid job whose result nobody collects).

``--soak SECONDS`` runs a steady load instead (``SOAK_CONCURRENCY`` jobs in flight, a new
one as each ends) for that long, samples the client process's resident memory every
``SAMPLE_EVERY`` seconds after ``WARMUP`` seconds, and reports its growth; the bookkeeping
of this script is preallocated, so growth is the client's.

Both print ONE summary line and exit non-zero on any duplicate, lost id, leak or untyped
outcome. Run from the repository root: ``python benchmarks/chaos.py`` and
``python benchmarks/chaos.py --soak 60``. Loopback only; nothing leaves the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import logging
import multiprocessing
import os
import resource
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, Final

import msgspec

from runcomfy_async import (
    Client,
    PollPolicy,
    Result,
    RetryPolicy,
    RunComfyError,
    SubmitUncertainError,
    Timeouts,
)

JOBS: Final = 1_000
FAULT_RATE: Final = 0.10  # share of API requests that meet a fault, all kinds together
SEED: Final = 8
MODEL: Final = "wan-ai/wan-2-5/image-to-video"
IMG_URL: Final = "https://example.com/fox.png"
# The simulated world: enough workers that the queue stays short, runs of a second or so,
# and a few jobs that fail on their own (JobFailedError is a typed outcome too).
SIM_WORKERS: Final = 256
RUN_SECONDS: Final = (0.3, 1.5)
FAILURE_RATE: Final = 0.03
RETRY_AFTER: Final = 0.2  # seconds, sent with half of the 429s
SLOW_DELAY: Final = 0.05  # seconds: a slow answer that still beats the read timeout
# The client: a read timeout short enough that hangs cost little, and pacing that keeps a
# run of 1,000 jobs well under a minute.
TIMEOUTS: Final = Timeouts(connect=5.0, read=1.0)
RETRY: Final = RetryPolicy(attempts=5, initial=0.05, max_delay=1.0, max_retry_after=0.25)
POLLING: Final = PollPolicy(
    first_interval=0.1,
    max_interval=1.0,
    requests_per_second=1_000.0,
    burst=200,
    max_retry_after=0.25,
)
MAX_SECONDS: Final = 300.0  # a safety net: past this the run is abandoned (and fails)
# The soak.
SOAK_CONCURRENCY: Final = 200
WARMUP: Final = 10.0
SAMPLE_EVERY: Final = 5.0
LEDGER_CAPACITY: Final = 200_000  # jobs the preallocated soak bookkeeping can hold

#: Fault kinds whose work is done before the answer is spoiled: a submit hit by one of
#: them creates its job. Every other kind refuses or drops the request before any work.
WORK_DONE: Final = frozenset(
    {"reset_after", "malformed_json", "truncate", "slow", "unknown_status"}
)
#: Kinds after which a submit answer still arrives whole.
CLEAN: Final = frozenset({"slow", "unknown_status"})
#: The only failure after which a submit may be sent again: the server refused it (429).
RETRIABLE_SUBMIT: Final = frozenset({"rate_limit"})


def fault_specs() -> list[dict[str, Any]]:
    """Every fault kind once (429 twice: with and without Retry-After), as Fault kwargs."""
    return [
        {"kind": "rate_limit"},
        {"kind": "rate_limit", "retry_after": RETRY_AFTER},
        {"kind": "server_error"},
        {"kind": "server_error", "status": 500},
        {"kind": "request_timeout"},
        {"kind": "insufficient_balance"},
        {"kind": "error_in_200"},
        {"kind": "malformed_json"},
        {"kind": "unknown_status"},
        {"kind": "hang"},
        {"kind": "slow", "delay": SLOW_DELAY},
        {"kind": "reset_before"},
        {"kind": "reset_after"},
        {"kind": "redirect"},
        {"kind": "truncate"},
    ]


def per_fault_probability(rate: float, count: int) -> float:
    """The chance per fault entry that makes ``count`` entries together hit ``rate``.

    The plan checks its entries in order and the first that fires wins, so a request
    escapes all of them with probability ``(1 - p) ** count``.
    """
    return 1.0 - float((1.0 - rate) ** (1.0 / count))


def inputs_for(index: int) -> dict[str, object]:
    """Job ``index``'s inputs: the prompt names the job, so the server log can be matched."""
    return {"prompt": f"chaos job {index}", "img_url": IMG_URL}


def job_of(body: bytes | None) -> int | None:
    """The job index a submit body names, or None."""
    try:
        prompt = msgspec.json.decode(body or b"{}").get("prompt", "")
        return int(prompt.removeprefix("chaos job "))
    except (msgspec.MsgspecError, AttributeError, ValueError):
        return None


# --- the simulator, in a process of its own -------------------------------------------------


def _serve(conn: Connection, options: dict[str, Any]) -> None:
    asyncio.run(_sim_main(conn, options))


async def _sim_main(conn: Connection, options: dict[str, Any]) -> None:
    from runcomfy_async.testing import Fault, Simulator

    probability = per_fault_probability(options["fault_rate"], len(fault_specs()))
    faults = [Fault(route="*", times=None, probability=probability, **s) for s in fault_specs()]
    async with Simulator(
        clock="wall",
        workers=SIM_WORKERS,
        run_seconds=RUN_SECONDS,
        failure_rate=FAILURE_RATE,
        seed=options["seed"],
        faults=faults,
    ) as sim:
        conn.send((sim.url, sim.token))
        loop = asyncio.get_running_loop()
        while await loop.run_in_executor(None, conn.recv) == "report":
            stats = sim.stats
            submits = [
                (job_of(r.body), r.request_id, r.fault, r.status)
                for r in sim.log
                if r.route == "submit"
            ]
            conn.send(
                {
                    "jobs_created": stats.jobs_created,
                    "faults": stats.faults_injected,
                    "requests": sum(stats.requests_by_route.values()),
                    "max_connections": stats.max_concurrent_connections,
                    "submits": submits,
                }
            )


class SimChild:
    """The simulator served by a spawned child process, with its log on request."""

    def __init__(self, **options: Any) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(child, options), daemon=True)
        self.url = self.token = ""

    def __enter__(self) -> SimChild:
        self._process.start()
        if not self._conn.poll(60):
            raise RuntimeError("the simulator did not start")
        self.url, self.token = self._conn.recv()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._conn.send("stop")
        self._process.join(10)
        if self._process.is_alive():
            self._process.kill()

    def report(self) -> dict[str, Any]:
        """The simulator's counters and every submit it saw."""
        self._conn.send("report")
        report: dict[str, Any] = self._conn.recv()
        return report


# --- accounting ---------------------------------------------------------------------------

Outcome = tuple[str, str | None]  # (Result / error class name / "untyped:<class>", request id)


def outcome_of(value: object) -> Outcome:
    """What one job ended in: its class, and the request id it names, if any."""
    if isinstance(value, Result):
        return "Result", value.request_id
    if isinstance(value, RunComfyError):
        return type(value).__name__, getattr(value, "request_id", None)
    return f"untyped:{type(value).__name__}", None


@dataclass
class Tally:
    """The figures of one run."""

    jobs: int = 0
    ok: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    untyped: int = 0
    created: int = 0
    uncertain_created: int = 0
    uncertain_not_created: int = 0
    duplicates: int = 0
    blind_retries: int = 0
    lost: int = 0
    misreported: int = 0
    fault_mismatch: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        """No duplicate, lost id, untyped outcome, misreport or unsafe retry."""
        bad = (self.duplicates, self.blind_retries, self.lost, self.untyped, self.misreported)
        return not any(bad) and not self.fault_mismatch


SubmitRecord = tuple[int | None, str | None, str | None, int | None]  # job, id, fault, status


def account(
    outcomes: Iterable[tuple[int, Outcome]], submits: list[SubmitRecord], jobs_created: int
) -> Tally:
    """Check every job's outcome against the submits the simulator logged."""
    tally = Tally()
    by_job: dict[int | None, list[SubmitRecord]] = {}
    for record in submits:
        by_job.setdefault(record[0], []).append(record)
        job, rid, fault, _ = record
        if fault is not None and (rid is not None) != (fault in WORK_DONE):
            tally.fault_mismatch += 1
            tally.notes.append(f"submit fault {fault} but created={rid is not None}")
    created = {rid for _, rid, _, _ in submits if rid is not None}
    tally.created = len(created)
    if len(created) != jobs_created or None in by_job:
        tally.fault_mismatch += 1
        tally.notes.append(f"log has {len(created)} created ids, stats say {jobs_created}")
    accounted: set[str] = set()
    for job, (kind, rid) in outcomes:
        tally.jobs += 1
        records = by_job.get(job, [])
        made = [r[1] for r in records if r[1] is not None]
        tally.duplicates += max(0, len(made) - 1)
        tally.blind_retries += sum(1 for r in records[:-1] if r[2] not in RETRIABLE_SUBMIT)
        if kind.startswith("untyped:"):
            tally.untyped += 1
            tally.notes.append(f"job {job}: {kind}")
            continue
        if kind == "Result":
            tally.ok += 1
        else:
            tally.errors[kind] += 1
        if kind == SubmitUncertainError.__name__:
            if made:
                tally.uncertain_created += 1
                accounted.update(made)
            else:
                tally.uncertain_not_created += 1
            last = records[-1] if records else None
            if last is not None and last[1] is not None and last[2] in (None, *CLEAN):
                tally.misreported += 1  # the answer arrived whole, yet called uncertain
                tally.notes.append(f"job {job}: clean submit reported uncertain")
            continue
        if rid is not None:
            accounted.add(rid)
            if rid not in made:
                tally.misreported += 1
                tally.notes.append(f"job {job}: names {rid}, not the job it created")
        elif made:
            tally.misreported += 1  # a certain refusal, yet a job exists
            tally.notes.append(f"job {job}: {kind} without an id, yet {made} was created")
    tally.lost = len(created - accounted)
    return tally


# --- leaks --------------------------------------------------------------------------------


def open_sockets() -> int | None:
    """Sockets open in this process (Linux), or None where /proc is not available."""
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return None
    count = 0
    for name in names:
        with contextlib.suppress(OSError):
            count += os.readlink(f"/proc/self/fd/{name}").startswith("socket:")
    return count


async def leaked_tasks(before: set[asyncio.Task[Any]]) -> int:
    """Tasks started since ``before`` that are still alive after the loop has settled."""
    current = asyncio.current_task()
    alive: list[asyncio.Task[Any]] = []
    for _ in range(100):  # yield to the loop, never sleep: finished work ends in a few turns
        alive = [t for t in asyncio.all_tasks() if t not in before and t is not current]
        if not alive:
            return 0
        await asyncio.sleep(0)
    return len(alive)


def rss_mb() -> float:
    """This process's resident memory now, in MB (peak RSS where /proc is missing)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            pages = int(statm.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 1e6
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3


# --- the runs -----------------------------------------------------------------------------


def _client(sim: SimChild) -> Client:
    return Client(
        token=sim.token, base_url=sim.url, timeouts=TIMEOUTS, retry=RETRY, polling=POLLING
    )


def _fmt(counts: dict[str, int]) -> str:
    return "{" + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) + "}"


def _figures(tally: Tally, report: dict[str, Any], tasks: int, sockets: int | None) -> str:
    uncertain = tally.uncertain_created + tally.uncertain_not_created
    return (
        f"jobs={tally.jobs} ok={tally.ok} typed_errors={sum(tally.errors.values())} "
        f"{_fmt(tally.errors)} untyped={tally.untyped} | "
        f"requests={report['requests']} faults={sum(report['faults'].values())} "
        f"{_fmt(report['faults'])} | created={tally.created} "
        f"uncertain={uncertain} (created {tally.uncertain_created}, "
        f"not {tally.uncertain_not_created}) | duplicates={tally.duplicates} "
        f"lost={tally.lost} blind_retries={tally.blind_retries} "
        f"misreported={tally.misreported} fault_mismatch={tally.fault_mismatch} | "
        f"leaked_tasks={tasks} leaked_sockets={'n/a' if sockets is None else sockets} "
        f"peak_connections={report['max_connections']}"
    )


async def chaos(jobs: int, seed: int) -> int:
    """Run ``jobs`` jobs at once through gather; print the figures; return the exit status."""
    with SimChild(fault_rate=FAULT_RATE, seed=seed) as sim:
        tasks_before = asyncio.all_tasks()
        sockets_before = open_sockets()
        started = time.perf_counter()
        async with asyncio.timeout(MAX_SECONDS), _client(sim) as client:
            values = await asyncio.gather(
                *(client.run(MODEL, inputs_for(i)) for i in range(jobs)), return_exceptions=True
            )
        elapsed = time.perf_counter() - started
        tasks = await leaked_tasks(tasks_before)
        after = open_sockets()
        sockets = None if sockets_before is None or after is None else after - sockets_before
        report = sim.report()
    tally = account(
        ((i, outcome_of(v)) for i, v in enumerate(values)),
        report["submits"],
        report["jobs_created"],
    )
    print(f"chaos: {_figures(tally, report, tasks, sockets)} | {elapsed:.1f} s")
    for note in tally.notes[:10]:
        print(f"  note: {note}", file=sys.stderr)
    return 0 if tally.clean and not tasks and not sockets else 1


class Ledger:
    """Per-job outcomes in preallocated, pre-touched arrays, so the soak's own bookkeeping
    does not grow the resident memory it measures."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._ids = bytearray(b"\xff" * (16 * capacity))
        self._kinds = bytearray(b"\xff" * capacity)
        self._names: list[str] = []
        self._overflow: dict[int, Outcome] = {}
        self.count = 0

    def record(self, index: int, outcome: Outcome) -> None:
        """Store job ``index``'s outcome."""
        kind, rid = outcome
        self.count = max(self.count, index + 1)
        try:
            raw = uuid.UUID(rid).bytes if rid is not None else b"\0" * 16
        except ValueError:
            raw = None
        if index >= self.capacity or raw is None or len(self._names) >= 255:
            self._overflow[index] = outcome
            return
        if kind not in self._names:
            self._names.append(kind)
        self._kinds[index] = self._names.index(kind)
        self._ids[16 * index : 16 * index + 16] = raw

    def __iter__(self) -> Iterator[tuple[int, Outcome]]:
        for index in range(self.count):
            if index in self._overflow:
                yield index, self._overflow[index]
                continue
            raw = bytes(self._ids[16 * index : 16 * index + 16])
            rid = None if raw == b"\0" * 16 else str(uuid.UUID(bytes=raw))
            yield index, (self._names[self._kinds[index]], rid)


async def soak(seconds: float, seed: int) -> int:
    """Keep ``SOAK_CONCURRENCY`` jobs in flight for ``seconds``; report memory and leaks."""
    ledger = Ledger(LEDGER_CAPACITY)
    samples: list[float] = []
    with SimChild(fault_rate=FAULT_RATE, seed=seed) as sim:
        tasks_before = asyncio.all_tasks()
        sockets_before = open_sockets()
        numbers = itertools.count()
        started = time.monotonic()
        deadline = started + seconds

        async def worker(client: Client) -> None:
            while time.monotonic() < deadline:
                index = next(numbers)
                [value] = await asyncio.gather(
                    client.run(MODEL, inputs_for(index)), return_exceptions=True
                )
                ledger.record(index, outcome_of(value))

        async def sampler() -> None:
            await asyncio.sleep(min(WARMUP, seconds / 2))
            while True:
                samples.append(rss_mb())
                await asyncio.sleep(SAMPLE_EVERY)

        async with asyncio.timeout(seconds + MAX_SECONDS), _client(sim) as client:
            watch = asyncio.create_task(sampler())
            await asyncio.gather(*(worker(client) for _ in range(SOAK_CONCURRENCY)))
            samples.append(rss_mb())
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch
        elapsed = time.monotonic() - started
        tasks = await leaked_tasks(tasks_before)
        after = open_sockets()
        sockets = None if sockets_before is None or after is None else after - sockets_before
        report = sim.report()
    tally = account(ledger, report["submits"], report["jobs_created"])
    base, last, peak = samples[0], samples[-1], max(samples)
    growth = last - base
    print(
        f"soak: {elapsed:.0f} s, {SOAK_CONCURRENCY} in flight | "
        f"rss {base:.1f} -> {last:.1f} MB (growth {growth:+.1f} MB, {100 * growth / base:+.1f}%,"
        f" peak {peak:.1f} MB, {len(samples)} samples after {WARMUP:.0f} s warm-up) | "
        f"{_figures(tally, report, tasks, sockets)}"
    )
    for note in tally.notes[:10]:
        print(f"  note: {note}", file=sys.stderr)
    return 0 if tally.clean and not tasks and not sockets else 1


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the chaos run or the soak."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--soak", type=float, metavar="SECONDS", help="steady load instead")
    parser.add_argument("--jobs", type=int, default=JOBS, help="jobs in the chaos run")
    parser.add_argument("--seed", type=int, default=SEED, help="seeds the fault plan")
    args = parser.parse_args(argv)
    # The injected unknown statuses are logged as warnings, by design; the summary counts them.
    logging.getLogger("runcomfy_async").setLevel(logging.ERROR)
    if args.soak is not None:
        return asyncio.run(soak(args.soak, args.seed))
    return asyncio.run(chaos(args.jobs, args.seed))


if __name__ == "__main__":
    sys.exit(main())

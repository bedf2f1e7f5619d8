"""A small chaos run: 150 jobs through gather while ~10% of API requests fail, all accounted.

The full run (1,000 jobs, wall clock, simulator in its own process) and the soak are
``benchmarks/chaos.py``; this one runs in the suite on the scripted clock with no waiting.
Every job's outcome is checked against the simulator's request log: no silent duplicate
submit, no lost request id, no untyped outcome, no leaked task or socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import Counter
from typing import Any

import msgspec
import pytest

from runcomfy_async import (
    Client,
    PollPolicy,
    Result,
    RunComfyError,
    SubmitUncertainError,
    Timeouts,
)
from runcomfy_async.testing import Fault, FaultKind, JobScript, RequestRecord, Simulator

from .conftest import FAST_RETRY, WAN25

JOBS = 150
FAULT_RATE = 0.10
SEED = 3
FAST_POLL = PollPolicy(
    first_interval=0.0, max_interval=0.0, requests_per_second=1e5, burst=1000, max_retry_after=0.0
)
#: Short enough that hangs cost little; long enough that a busy loop never fakes one.
TIMEOUTS = Timeouts(read=0.5)
SPECS: list[dict[str, Any]] = [
    {"kind": "rate_limit"},
    {"kind": "rate_limit", "retry_after": 1},  # honoured up to FAST_RETRY's cap: 0 s
    {"kind": "server_error"},
    {"kind": "server_error", "status": 500},
    {"kind": "request_timeout"},
    {"kind": "insufficient_balance"},
    {"kind": "error_in_200"},
    {"kind": "malformed_json"},
    {"kind": "unknown_status"},
    {"kind": "hang"},
    {"kind": "slow", "delay": 0.01},
    {"kind": "reset_before"},
    {"kind": "reset_after"},
    {"kind": "redirect"},
    {"kind": "truncate"},
]
#: Faults that let the handler run first: a submit they hit did create its job.
WORK_DONE = {"reset_after", "malformed_json", "truncate", "slow", "unknown_status"}


def fault_plan() -> list[Fault]:
    """Every fault kind on every API route, ~10% of requests in all, seeded."""
    p = 1.0 - (1.0 - FAULT_RATE) ** (1.0 / len(SPECS))
    return [Fault(route="*", times=None, probability=p, **spec) for spec in SPECS]


def job_of(record: RequestRecord) -> int:
    """The job a submit was for, read from the prompt it carried."""
    prompt: str = msgspec.json.decode(record.body or b"{}")["prompt"]
    return int(prompt.removeprefix("chaos job "))


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


async def settle(
    tasks_before: set[asyncio.Task[Any]], sockets_before: int | None
) -> tuple[int, int]:
    """Yield to the loop (never sleep) until closed work is gone; return what is left."""
    tasks = sockets = 0
    for _ in range(200):
        current = asyncio.current_task()
        tasks = sum(1 for t in asyncio.all_tasks() if t not in tasks_before and t is not current)
        now = open_sockets()
        sockets = 0 if now is None or sockets_before is None else now - sockets_before
        if not tasks and not sockets:
            break
        await asyncio.sleep(0)
    return tasks, sockets


@pytest.mark.anyio
@pytest.mark.slow
async def test_chaos_every_job_typed_no_duplicate_no_loss_no_leak(anyio_backend: str) -> None:
    """150 concurrent runs under ~10% faults: typed outcomes, no duplicate, no loss, no leak."""
    script = JobScript(queue_polls=2, run_polls=2)
    async with Simulator(seed=SEED, faults=fault_plan(), script=script) as sim:
        sim.script_next(JobScript(queue_polls=1, run_polls=1, outcome="failed"), count=10)
        tasks_before, sockets_before = asyncio.all_tasks(), open_sockets()
        async with Client(
            token=sim.token,
            base_url=sim.url,
            retry=FAST_RETRY,
            polling=FAST_POLL,
            timeouts=TIMEOUTS,
        ) as client:
            values = await asyncio.gather(
                *(
                    client.run(
                        WAN25, {"prompt": f"chaos job {i}", "img_url": "https://x.test/a.png"}
                    )
                    for i in range(JOBS)
                ),
                return_exceptions=True,
            )
        leaked_tasks, leaked_sockets = await settle(tasks_before, sockets_before)
        log, stats = sim.log, sim.stats

    submits: dict[int, list[RequestRecord]] = {}
    for record in log:
        if record.route == "submit":
            submits.setdefault(job_of(record), []).append(record)
            if record.fault is not None:  # the simulator's own promise, cross-checked
                assert (record.request_id is not None) == (record.fault in WORK_DONE), record
    created = {r.request_id for rs in submits.values() for r in rs if r.request_id}
    assert len(created) == stats.jobs_created

    outcomes: Counter[str] = Counter()
    duplicates = blind_retries = untyped = misreported = 0
    accounted: set[str] = set()
    for job, value in enumerate(values):
        records = submits.get(job, [])
        made = [r.request_id for r in records if r.request_id]
        duplicates += max(0, len(made) - 1)
        # A submit may be sent again only after the server refused it with a 429.
        blind_retries += sum(1 for r in records[:-1] if r.fault != FaultKind.RATE_LIMIT)
        if not isinstance(value, Result | RunComfyError):
            untyped += 1
            continue
        outcomes[type(value).__name__] += 1
        if isinstance(value, SubmitUncertainError):
            accounted.update(made)
            assert value.inputs["prompt"] == f"chaos job {job}"
            misreported += bool(made) and records[-1].fault in (None, "slow", "unknown_status")
            continue
        rid = value.request_id if isinstance(value, Result) else getattr(value, "request_id", None)
        if rid is not None:
            accounted.add(rid)
            misreported += rid not in made
        else:
            misreported += bool(made)  # a certain refusal, yet a job exists
    lost = len(created - accounted)

    figures = {
        "duplicates": duplicates,
        "blind_retries": blind_retries,
        "lost": lost,
        "untyped": untyped,
        "misreported": misreported,
        "leaked_tasks": leaked_tasks,
        "leaked_sockets": leaked_sockets,
    }
    assert figures == dict.fromkeys(figures, 0), (figures, outcomes)
    assert sum(outcomes.values()) == JOBS
    assert outcomes["Result"] >= JOBS * 0.6
    assert outcomes["SubmitUncertainError"] > 0
    injected = sum(stats.faults_injected.values())
    assert 0.06 <= injected / len(log) <= 0.14, stats.faults_injected
    assert len(stats.faults_injected) >= len({s["kind"] for s in SPECS}) - 1, stats.faults_injected

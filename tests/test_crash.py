"""Crash safety: a keyed batch in a subprocess is killed with SIGKILL mid-way, then rerun.

The simulator runs in the test process on the scripted clock; the batch (``_crash_batch``)
polls it. Ten jobs are scripted to stay queued, so the batch reaches a stable state — some
keys finished, ten submitted and waiting, the rest not started — in which it is killed.
The test waits for that state in the journal and the simulator's log, never on a timer.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import anyio
import anyio.to_thread
import msgspec
import pytest
from anyio.abc import Process

from runcomfy_async.testing import Fault, FaultKind, JobScript, Simulator

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent
ITEMS = 40
FAST, STUCK_COUNT = 15, 10
STUCK = JobScript(queue_polls=10**9)


def journal_states(db: Path) -> Counter[str]:
    """Count the journal's keys per state, read-only, from outside the batch process."""
    if not db.exists():
        return Counter()
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        rows = conn.execute("SELECT state, request_id IS NOT NULL FROM jobs").fetchall()
    except sqlite3.OperationalError:  # the batch has not created its table yet
        return Counter()
    finally:
        conn.close()
    states = Counter(state for state, _ in rows)
    states["with_id"] = sum(1 for _, has_id in rows if has_id)
    return states


def command(sim: Simulator, db: Path, concurrency: int, on_uncertain: str) -> list[str]:
    """The batch's command line (the token goes through the environment)."""
    args = [sim.url, str(db), str(ITEMS), str(concurrency), on_uncertain]
    return [sys.executable, "-m", "tests._crash_batch", *args]


def environment(sim: Simulator) -> dict[str, str]:
    """The batch's environment: the simulator's token, and this checkout on the path."""
    return {**os.environ, "RUNCOMFY_API_TOKEN": sim.token, "PYTHONPATH": str(ROOT)}


async def kill_when(
    sim: Simulator, db: Path, concurrency: int, ready: Callable[[Counter[str]], bool]
) -> Counter[str]:
    """Start the batch, SIGKILL it once the journal shows ``ready``, return its states."""
    log = db.with_suffix(".stderr")
    with log.open("wb") as stderr:
        process: Process = await anyio.open_process(
            command(sim, db, concurrency, "raise"),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=environment(sim),
            cwd=ROOT,
        )
        try:
            with anyio.fail_after(15):
                while not ready(states := await anyio.to_thread.run_sync(journal_states, db)):
                    assert process.returncode is None, log.read_text()
                    await anyio.sleep(0.005)  # lets the simulator answer the batch
            process.kill()
        finally:
            if process.returncode is None:
                process.kill()
            await process.wait()
    assert process.returncode == -signal.SIGKILL
    return states


async def rerun(sim: Simulator, db: Path, on_uncertain: str = "raise") -> list[dict[str, object]]:
    """Run the whole batch again to its end; return its outcome lines."""
    done = await anyio.run_process(
        command(sim, db, 10, on_uncertain), env=environment(sim), cwd=ROOT, check=False
    )
    assert done.returncode == 0, done.stderr.decode()
    return [msgspec.json.decode(line) for line in done.stdout.splitlines()]


def finish_stuck_jobs(sim: Simulator) -> None:
    """Let the jobs the killed batch was waiting on finish (as they would on RunComfy)."""
    for record in sim.log:
        rid = record.request_id
        if record.route == "submit" and rid is not None and sim.job(rid).state == "in_queue":
            sim.advance(rid, 10**9 + 1)


def posts_per_prompt(sim: Simulator, *, accepted_only: bool = False) -> Counter[str]:
    """How many submit POSTs the simulator received for each item."""
    return Counter(
        msgspec.json.decode(record.body or b"{}")["prompt"]
        for record in sim.log
        if record.route == "submit" and (record.status == 200 or not accepted_only)
    )


def check_collected(sim: Simulator, lines: list[dict[str, object]]) -> None:
    """Every key has a result, and it is the job made from that key's own inputs."""
    assert len(lines) == ITEMS
    assert all(line["ok"] for line in lines), [line for line in lines if not line["ok"]]
    for line in lines:
        index = int(str(line["key"]).removeprefix("key-"))
        job = sim.job(str(line["request_id"]))
        assert job.inputs["prompt"] == f"item {index}"  # type: ignore[index]


async def test_killed_batch_reruns_with_one_post_per_key(sim: Simulator, tmp_path: Path) -> None:
    """SIGKILL mid-batch, rerun: exactly one POST per key and every result collected."""
    db = tmp_path / "batch.db"
    sim.script_next(JobScript(), count=FAST)
    sim.script_next(STUCK, count=STUCK_COUNT)
    states = await kill_when(
        sim, db, 10, lambda s: s["finished"] == FAST and s["with_id"] == FAST + STUCK_COUNT
    )
    assert states["intent"] == 0 and states["with_id"] < ITEMS  # some, not all, ids journaled
    finish_stuck_jobs(sim)

    lines = await rerun(sim, db)

    check_collected(sim, lines)
    assert posts_per_prompt(sim) == {f"item {i}": 1 for i in range(ITEMS)}
    assert sim.stats.jobs_created == ITEMS
    assert journal_states(db)["finished"] == ITEMS


async def test_killed_mid_post_keys_are_reported_not_resubmitted(
    sim: Simulator, tmp_path: Path
) -> None:
    """Keys killed mid-POST are uncertain: the rerun reports them; only opting in resubmits."""
    db = tmp_path / "batch.db"
    sim.script_next(JobScript(), count=FAST)
    sim.script_next(STUCK, count=STUCK_COUNT)
    sim.add_fault(Fault(FaultKind.HANG, "submit", after=FAST + STUCK_COUNT, times=2))
    states = await kill_when(
        sim,
        db,
        12,
        lambda s: s["intent"] == 2 and s["with_id"] == 25 and sim.count("submit") == 27,
    )
    assert sim.stats.jobs_created == 25  # the two hung POSTs made no job
    assert states["finished"] == FAST
    finish_stuck_jobs(sim)

    lines = await rerun(sim, db)
    uncertain = {str(line["key"]) for line in lines if not line["ok"]}
    assert len(uncertain) == 2
    assert {line["error"] for line in lines if not line["ok"]} == {"UncertainKeyError"}
    assert posts_per_prompt(sim) == {f"item {i}": 1 for i in range(ITEMS)}  # none repeated

    # The dashboard (here: the simulator) shows the hung POSTs made no job: opt in.
    assert sim.stats.jobs_created == ITEMS - 2
    lines = await rerun(sim, db, on_uncertain="resubmit")
    check_collected(sim, lines)
    assert sim.stats.jobs_created == ITEMS
    assert posts_per_prompt(sim, accepted_only=True) == {f"item {i}": 1 for i in range(ITEMS)}

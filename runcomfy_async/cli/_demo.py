"""``runcomfy demo``: a realistic batch against the embedded simulator; no token, no network.

24 Wan 2.5 image-to-video jobs go through a wall-clock simulator with 4 workers, so most
of them really queue. One job is scripted to fail and one queued job is cancelled. The
whole world runs time-lapsed: the simulator's clock and the client's poll policy are
sped up by the same factor, so every time and request count shown is what the same batch
would take and spend for real, while the demo itself lasts about 20 seconds.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Final

import anyio
import msgspec

from .._client import Client
from .._config import PollPolicy
from .._events import Cancelled, Completed, Failed, InProgress, Queued
from ..models import Wan25ImageToVideo
from ..testing import JobScript, Simulator
from ._demo_summary import print_summary
from ._demo_view import Board, Row, open_view
from ._exit import ExitCode

if TYPE_CHECKING:
    from .._handle import RequestHandle
    from .._wire import Result
    from ._context import Context

__all__ = ["cmd_demo"]

TIME_LAPSE: Final = 20.0
"""Simulated seconds per real second: a ~1 min Wan run takes ~3 s of the demo."""
WORKERS: Final = 4
RUN_SECONDS: Final = (40.0, 75.0)
"""Simulated run time of one job, drawn uniformly (Wan 2.5 at 720P takes about a minute)."""
FAIL_JOB: Final = 9
CANCEL_JOB: Final = 24
CANCEL_AFTER: Final = 10.0
"""Simulated seconds after its submit when the last job, still queued, is cancelled."""
DOWNLOAD_CONCURRENCY: Final = 4
SEED: Final = 7

_SUBJECTS: Final = (
    "a red fox running through fresh snow",
    "a paper boat drifting down a rainy street",
    "a lighthouse beam sweeping over a stormy sea",
    "a hummingbird hovering at a purple flower",
    "an astronaut planting a flag on a glittering dune",
    "a steam train crossing a stone viaduct at dawn",
    "koi fish circling in a moonlit pond",
    "a hot-air balloon rising over lavender fields",
    "a cat chasing a laser dot across a wooden floor",
    "waves breaking over black volcanic rocks",
    "a city skyline as night lights switch on",
    "a dandelion losing its seeds to the wind",
)
_STYLES: Final = ("cinematic, slow dolly-in", "handheld, golden hour")


def _inputs(count: int) -> list[Wan25ImageToVideo]:
    jobs = []
    for n in range(count):
        subject = _SUBJECTS[n % len(_SUBJECTS)]
        style = _STYLES[(n // len(_SUBJECTS)) % len(_STYLES)]
        jobs.append(
            Wan25ImageToVideo(
                f"{subject}, {style}",
                f"https://example.com/stills/{n + 1:02d}.png",
                resolution="720P",
                duration=10 if n % 5 == 4 else 5,
            )
        )
    return jobs


def _time_lapse(policy: PollPolicy, speed: float) -> PollPolicy:
    """The same poll policy run ``speed`` times faster: intervals divided, rates multiplied."""
    changes: dict[str, float] = {}
    for name in policy.__struct_fields__:
        value = getattr(policy, name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if name.endswith(("_interval", "_retry_after", "_seconds")):
            changes[name] = value / speed
        elif name.endswith("per_second"):
            changes[name] = value * speed
    return msgspec.structs.replace(policy, **changes)


def _script(job: Wan25ImageToVideo, *, failing: bool) -> JobScript:
    """How the simulator plays one job: its price, and for one of them, a failure."""
    cost = round(0.05 * job.duration, 2)  # the catalog's $0.05 per second of video
    if not failing:
        return JobScript(cost=cost)
    return JobScript(
        outcome="failed",
        run_seconds=RUN_SECONDS[0] / 2,
        error="worker ran out of GPU memory at 720P; retry later",
        cost=cost,
    )


async def _follow(board: Board, row: Row, handle: RequestHandle) -> None:
    """Feed one job's transitions to the board, as a user's own loop would."""
    async for event in handle.watch():
        match event:
            case Queued(position=position):
                board.update(row, "queued", position=position)
            case InProgress():
                board.update(row, "running")
            case Completed(result=result):
                board.update(row, "succeeded", result=result)
            case Failed(result=result):
                board.update(row, "failed", result=result, error=result.error_text)
            case Cancelled():
                board.update(row, "cancelled")
            case _:
                pass


async def _cancel_later(board: Board, row: Row, handle: RequestHandle) -> None:
    """Change our mind about one queued job: cancelling it costs nothing."""
    await anyio.sleep(max(0.0, row.submitted + CANCEL_AFTER / board.speed - time.monotonic()))
    answer = await handle.cancel()
    board.note(row, f"cancel requested while queued: {answer.outcome}")


async def _download(client: Client, board: Board, out: Path) -> None:
    limiter = anyio.CapacityLimiter(DOWNLOAD_CONCURRENCY)
    done = [(row, row.result) for row in board.rows if row.state == "succeeded" and row.result]

    async def one(row: Row, result: Result) -> None:
        async with limiter:
            row.files = await client.download(result, out / f"job-{row.number:02d}", overwrite=True)
        board.downloaded(row)

    with board.download_phase(len(done)):
        async with anyio.create_task_group() as tg:
            for row, result in done:
                tg.start_soon(one, row, result)


async def cmd_demo(ctx: Context) -> int:
    """Run the demo batch and print its summary."""
    args = ctx.args
    speed = TIME_LAPSE * args.speed
    count: int = args.jobs
    out: Path = args.out
    fail_at = FAIL_JOB if count >= FAIL_JOB else max(1, count // 2)
    cancel_at = count if count > WORKERS else None  # the last job must still be queued
    inputs = _inputs(count)
    started = time.monotonic()
    async with (
        Simulator(
            clock="wall",
            workers=WORKERS,
            run_seconds=RUN_SECONDS,
            time_scale=speed,
            seed=SEED,
        ) as sim,
        Client(
            sim.token,
            base_url=sim.url,
            include_cost=True,
            polling=_time_lapse(PollPolicy(), speed),
        ) as client,
    ):
        board = Board(
            inputs, speed=speed, workers=WORKERS, out=out, fail_at=fail_at, cancel_at=cancel_at
        )
        with open_view(board, live=not args.plain):
            async with anyio.create_task_group() as tg:
                for row, job in zip(board.rows, inputs, strict=True):
                    sim.script_next(_script(job, failing=row.number == fail_at))
                    handle = await client.submit(job)
                    board.submitted(row, handle.request_id)
                    tg.start_soon(_follow, board, row, handle)
                    if row.number == cancel_at:
                        tg.start_soon(_cancel_later, board, row, handle)
            board.jobs_finished()
            await _download(client, board, out)
        for row in board.rows:
            row.polls = sim.count("status", request_id=row.request_id)
            row.requests = sim.count(request_id=row.request_id)
        stats = sim.stats
    print_summary(board, stats.requests_by_route, wall=time.monotonic() - started)
    return ExitCode.OK

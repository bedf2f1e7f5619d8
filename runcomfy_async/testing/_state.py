"""The simulated world: jobs, the two clocks, queue positions, cancel rules and expiry.

Pure: no aiohttp, no asyncio, no I/O. The server turns each HTTP request into one call here and
writes the JSON answer itself. Times are *simulated seconds* since the world began:
``(now() - start) * time_scale``; ``now`` is injectable so tests never sleep.

* Scripted clock: a job moves one step per ``/status`` poll (or :meth:`World.advance`) along the
  timeline of its :class:`JobScript`.
* Wall clock: jobs wait FIFO for one of ``workers`` slots, then run for a drawn duration. The world
  is advanced lazily to "now" on every call with a heap of slot-free times (no task or timer per
  job); a Fenwick tree of jobs that left the queue gives queue positions in O(log n).
"""

from __future__ import annotations

import heapq
import random
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Final, Literal, TypeAlias

import msgspec

from ._fenwick import Fenwick

__all__ = [
    "CancelRule",
    "Clock",
    "JobInfo",
    "JobScript",
    "JobState",
    "JobView",
    "Snapshot",
    "World",
]

JobState: TypeAlias = Literal["in_queue", "in_progress", "succeeded", "failed", "cancelled"]
Outcome: TypeAlias = Literal["succeeded", "failed", "cancelled"]
Clock: TypeAlias = Literal["scripted", "wall"]
CancelRule: TypeAlias = Literal["not_cancellable", "cancellation_requested"]
_TERMINAL: Final = frozenset({"succeeded", "failed", "cancelled"})
_OUTCOMES: Final = frozenset({"succeeded", "failed", "cancelled"})


class JobScript(msgspec.Struct, frozen=True, kw_only=True):
    """How one simulated job behaves.

    Attributes:
        queue_polls: Scripted clock: status polls answered ``in_queue`` (positions count down).
        run_polls: Scripted clock: status polls answered ``in_progress`` after that.
        outcome: ``"succeeded"``, ``"failed"`` or ``"cancelled"`` (cancelled by the server).
        error: On failure, any JSON value placed verbatim as ``error`` in ``/result``.
        output: ``None`` (the model's own shape, see :class:`ModelSpec`), ``"object"``,
            ``"url"``, ``"list"``, or any JSON value replayed verbatim with placeholders filled
            in: ``"{url}"`` / ``"{url:N}"`` (a file's URL), ``"{urls}"`` (every file's URL, as
            a list element or the whole value), ``"{storage}"``, ``"{request_id}"``.
        output_files: File names served on the storage origin for this job; ``None``: the
            model's own (numbered by its count input), else ``("output.mp4",)``.
        cost: The ``cost`` answered with ``include_cost=true``; ``None``: by the model's
            catalog pricing (0.25 on a model the catalog does not know).
        status_sequence: Raw status words answered by successive ``/status`` polls (the last
            one repeats), overriding the timeline's words; the job still advances underneath.
        run_seconds: Wall clock: run duration overriding the drawn one.
    """

    queue_polls: int = 1
    run_polls: int = 1
    outcome: Outcome = "succeeded"
    error: object = "The generation failed."
    output: object = None
    output_files: tuple[str, ...] | None = None
    cost: float | None = None
    status_sequence: Sequence[str] | None = None
    run_seconds: float | None = None

    def __post_init__(self) -> None:
        if self.queue_polls < 0 or self.run_polls < 0:
            raise ValueError("queue_polls and run_polls must be >= 0")
        if self.outcome not in _OUTCOMES:
            raise ValueError(f"outcome must be one of {sorted(_OUTCOMES)}, not {self.outcome!r}")
        if self.run_seconds is not None and self.run_seconds < 0:
            raise ValueError("run_seconds must be >= 0")


class JobView(msgspec.Struct, frozen=True, kw_only=True):
    """A read-only snapshot of one job, for assertions in tests."""

    request_id: str
    model_id: str
    token: str
    inputs: object
    state: JobState
    queue_position: int | None
    polls: int
    result_polls: int
    created_at: str
    finished_at: str | None
    expired: bool
    cancel_requested: bool
    script: JobScript


class JobInfo(msgspec.Struct, frozen=True):
    """A job's fixed facts: model, script, creation / finish times as ISO-8601, inputs."""

    model_id: str
    script: JobScript
    created_at: str
    finished_at: str | None
    inputs: object = None


class Snapshot(msgspec.Struct, frozen=True, gc=False):
    """What one request sees of a job: its state, queue position and any scripted raw word."""

    state: JobState
    queue_position: int | None
    raw_status: str | None = None


class _Job:
    __slots__ = (
        "cancel_requested",
        "created",
        "duration",
        "expired",
        "finished",
        "inputs",
        "model_id",
        "outcome",
        "polls",
        "qidx",
        "request_id",
        "result_polls",
        "script",
        "state",
        "step",
        "token",
    )

    def __init__(self, request_id: str, model_id: str, token: str, inputs: object) -> None:
        self.request_id = request_id
        self.model_id = model_id
        self.token = token
        self.inputs = inputs
        self.script = JobScript()
        self.outcome: Outcome = "succeeded"
        self.state: JobState = "in_queue"
        self.created = 0.0
        self.finished: float | None = None
        self.duration = 0.0
        self.qidx = -1
        self.step = 0
        self.polls = 0
        self.result_polls = 0
        self.expired = False
        self.cancel_requested = False


class World:
    """Every job of one simulator, and the clock that moves them."""

    def __init__(
        self,
        *,
        clock: Clock = "scripted",
        script: JobScript | None = None,
        workers: int = 4,
        run_seconds: float | tuple[float, float] = (5.0, 10.0),
        time_scale: float = 1.0,
        failure_rate: float = 0.0,
        seed: int = 0,
        retention_seconds: float | None = None,
        cancel_running: CancelRule = "not_cancellable",
        now: Callable[[], float] = time.monotonic,
        wall_now: Callable[[], float] = time.time,
    ) -> None:
        if clock not in ("scripted", "wall"):
            raise ValueError(f"clock must be 'scripted' or 'wall', not {clock!r}")
        if workers < 1 or time_scale <= 0 or not 0.0 <= failure_rate <= 1.0:
            raise ValueError("need workers >= 1, time_scale > 0 and 0 <= failure_rate <= 1")
        lo, hi = run_seconds if isinstance(run_seconds, tuple) else (run_seconds, run_seconds)
        if not 0 <= lo <= hi:
            raise ValueError("run_seconds must be >= 0 and (lo, hi) with lo <= hi")
        self.clock: Clock = clock
        self.default_script = script if script is not None else JobScript()
        self.cancel_running: CancelRule = cancel_running
        self.retention_seconds = retention_seconds
        self._run_range = (float(lo), float(hi))
        self._scale = time_scale
        self._failure_rate = failure_rate
        self._rng = random.Random(seed)
        self._now = now
        self._start = now()
        self._wall_start = wall_now()
        self._jobs: dict[str, _Job] = {}
        self._next_scripts: deque[JobScript] = deque()
        self._waiting: deque[_Job] = deque()
        self._running: list[tuple[float, int, _Job]] = []
        self._left = Fenwick()
        self._free = workers
        self._enqueued = 0

    @property
    def jobs_created(self) -> int:
        """How many jobs were ever created."""
        return len(self._jobs)

    def time(self) -> float:
        """Return the simulated time now, and bring the wall-clock world up to it."""
        t = (self._now() - self._start) * self._scale
        if self.clock == "wall":
            self._sync(t)
        return t

    def iso(self, t: float) -> str:
        """Format a simulated time as ISO-8601 with a UTC offset."""
        return datetime.fromtimestamp(self._wall_start + t / self._scale, tz=UTC).isoformat()

    def script_next(self, script: JobScript, count: int = 1) -> None:
        """Use ``script`` for the next ``count`` created jobs (FIFO), then the default again."""
        if count < 0:
            raise ValueError("count must be >= 0")
        self._next_scripts.extend([script] * count)

    def create(self, model_id: str, token: str, inputs: object) -> str:
        """Create a job and return its request id."""
        t = self.time()
        job = _Job(str(uuid.uuid4()), model_id, token, inputs)
        job.script = self._next_scripts.popleft() if self._next_scripts else self.default_script
        job.outcome = job.script.outcome
        job.created = t
        self._jobs[job.request_id] = job
        if self.clock == "scripted":
            self._settle(job, t)
            return job.request_id
        if job.outcome == "succeeded" and self._failure_rate:
            job.outcome = "failed" if self._rng.random() < self._failure_rate else "succeeded"
        fixed = job.script.run_seconds
        job.duration = self._rng.uniform(*self._run_range) if fixed is None else fixed
        job.qidx = self._enqueued
        self._enqueued += 1
        self._waiting.append(job)
        self._fill(t)
        return job.request_id

    def exists(self, request_id: str) -> bool:
        """Tell whether a job with this id was ever created (expired or not)."""
        return request_id in self._jobs

    def live(self, request_id: str) -> bool:
        """Tell whether the id names a job that is neither unknown nor expired."""
        job = self._jobs.get(request_id)
        return job is not None and not self._is_expired(job, self.time())

    def other_job(self, request_id: str) -> str | None:
        """Return the newest job other than ``request_id`` (for ``wrong_id``), if any."""
        for rid in reversed(self._jobs):
            if rid != request_id:
                return rid
        return None

    def owner(self, request_id: str) -> str:
        """Return the token that created the job."""
        return self._jobs[request_id].token

    def info(self, request_id: str) -> JobInfo:
        """Return what ``/result`` needs to know about a job besides its state."""
        job = self._jobs[request_id]
        finished = None if job.finished is None else self.iso(job.finished)
        return JobInfo(job.model_id, job.script, self.iso(job.created), finished, job.inputs)

    def poll_status(self, request_id: str) -> Snapshot:
        """Answer a ``/status`` poll: the current state, then one step on (scripted clock)."""
        job = self._jobs[request_id]
        snap = self._snapshot(job, self.time())
        seq = job.script.status_sequence
        if seq:
            snap = Snapshot(snap.state, snap.queue_position, seq[min(job.polls, len(seq) - 1)])
        job.polls += 1
        if self.clock == "scripted":
            self._step(job, 1)
        return snap

    def peek(self, request_id: str, *, result: bool = False) -> Snapshot:
        """Return the job's state without moving it (``/result``, ``/cancel``)."""
        job = self._jobs[request_id]
        if result:
            job.result_polls += 1
        return self._snapshot(job, self.time())

    def cancel(self, request_id: str) -> tuple[Snapshot, str]:
        """Apply RunComfy's cancel rules and return the state after it plus the ``outcome`` word.

        Queued: cancelled. Running: ``cancel_running`` (the job runs on either way). Finished:
        a no-op; ``"cancelled"`` if it was cancelled already, else ``"not_cancellable"``.
        """
        job = self._jobs[request_id]
        t = self.time()
        if job.state == "in_queue":
            job.outcome = "cancelled"
            self._finish(job, t)
            if job.qidx >= 0:
                self._left.mark(job.qidx)
            return self._snapshot(job, t), "cancelled"
        if job.state == "in_progress":
            if self.cancel_running == "cancellation_requested":
                job.cancel_requested = True
            return self._snapshot(job, t), self.cancel_running
        word = "cancelled" if job.state == "cancelled" else "not_cancellable"
        return self._snapshot(job, t), word

    def advance(self, request_id: str, steps: int = 1) -> None:
        """Move a scripted-clock job on by ``steps`` without a poll."""
        if self.clock != "scripted":
            raise RuntimeError("advance() needs the scripted clock")
        if steps < 0:
            raise ValueError("steps must be >= 0")
        self._step(self._jobs[request_id], steps)

    def expire(self, request_id: str) -> None:
        """Make the job unknown (404001) from now on."""
        self._jobs[request_id].expired = True

    def view(self, request_id: str) -> JobView:
        """Return a read-only snapshot of a job."""
        job = self._jobs[request_id]
        t = self.time()
        snap = self._snapshot(job, t)
        return JobView(
            request_id=job.request_id,
            model_id=job.model_id,
            token=job.token,
            inputs=job.inputs,
            state=snap.state,
            queue_position=snap.queue_position,
            polls=job.polls,
            result_polls=job.result_polls,
            created_at=self.iso(job.created),
            finished_at=None if job.finished is None else self.iso(job.finished),
            expired=self._is_expired(job, t),
            cancel_requested=job.cancel_requested,
            script=job.script,
        )

    def _is_expired(self, job: _Job, t: float) -> bool:
        if job.expired:
            return True
        keep = self.retention_seconds
        if keep is not None and job.finished is not None and t - job.finished >= keep:
            job.expired = True
        return job.expired

    def _snapshot(self, job: _Job, t: float) -> Snapshot:
        if job.state != "in_queue":
            return Snapshot(job.state, None)
        if self.clock == "scripted":
            return Snapshot("in_queue", job.script.queue_polls - job.step)
        return Snapshot("in_queue", job.qidx - self._left.below(job.qidx) + 1)

    def _finish(self, job: _Job, t: float) -> None:
        job.state = job.outcome
        job.finished = t

    def _step(self, job: _Job, steps: int) -> None:
        if job.state in _TERMINAL:
            return
        job.step += steps
        self._settle(job, self.time())

    def _settle(self, job: _Job, t: float) -> None:
        queue, run = job.script.queue_polls, job.script.run_polls
        if job.step >= queue + run:
            self._finish(job, t)
        elif job.step >= queue:
            job.state = "in_progress"

    def _fill(self, t: float) -> None:
        while self._free and self._waiting:
            job = self._waiting.popleft()
            if job.state != "in_queue":
                continue
            job.state = "in_progress"
            self._left.mark(job.qidx)
            self._free -= 1
            heapq.heappush(self._running, (t + job.duration, job.qidx, job))

    def _sync(self, t: float) -> None:
        running = self._running
        while running and running[0][0] <= t:
            done_at, _, job = heapq.heappop(running)
            self._finish(job, done_at)
            self._free += 1
            self._fill(done_at)

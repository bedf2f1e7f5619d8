"""The simulator's pure parts: the job state machine, both clocks, the fault plan, payloads."""

from __future__ import annotations

import base64
import time
import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runcomfy_async.testing import Fault, FaultKind, JobScript
from runcomfy_async.testing._assets import MP4_BYTES, PNG_BYTES, content_for, make_png
from runcomfy_async.testing._catalog import Catalog
from runcomfy_async.testing._faults import FaultPlan
from runcomfy_async.testing._payloads import render_output, result_body, status_body
from runcomfy_async.testing._state import Snapshot, World

MODEL = "wan-ai/wan-2-5/image-to-video"


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def scripted(script: JobScript | None = None, **options: object) -> World:
    return World(clock="scripted", script=script, **options)  # type: ignore[arg-type]


def wall(clock: FakeClock, **options: object) -> World:
    return World(clock="wall", now=clock, **options)  # type: ignore[arg-type]


def timeline(world: World, rid: str, polls: int) -> list[tuple[str, int | None]]:
    return [(s.state, s.queue_position) for s in (world.poll_status(rid) for _ in range(polls))]


# --- scripted clock -------------------------------------------------------------------------


def test_scripted_job_counts_down_then_runs_then_finishes() -> None:
    """JobScript(2, 1) answers in_queue/2, in_queue/1, in_progress, then its outcome for good."""
    world = scripted(JobScript(queue_polls=2, run_polls=1))
    rid = world.create(MODEL, "t", {})
    assert timeline(world, rid, 5) == [
        ("in_queue", 2),
        ("in_queue", 1),
        ("in_progress", None),
        ("succeeded", None),
        ("succeeded", None),
    ]
    assert world.view(rid).polls == 5


def test_request_ids_are_uuid4_strings() -> None:
    """Request ids are fresh uuid4 strings."""
    world = scripted()
    ids = {world.create(MODEL, "t", {}) for _ in range(50)}
    assert len(ids) == 50
    assert all(uuid.UUID(rid).version == 4 for rid in ids)


@pytest.mark.parametrize(
    ("queue", "run", "first"),
    [(0, 2, "in_progress"), (0, 0, "succeeded"), (3, 0, "in_queue")],
)
def test_scripted_job_can_skip_phases(queue: int, run: int, first: str) -> None:
    """A zero-length phase is skipped: no queue starts running, no run at all starts terminal."""
    world = scripted(JobScript(queue_polls=queue, run_polls=run))
    rid = world.create(MODEL, "t", {})
    assert world.peek(rid).state == first
    if first == "succeeded":
        assert world.view(rid).finished_at is not None


def test_result_and_cancel_reads_do_not_advance_the_clock() -> None:
    """peek (result) never moves a job; only status polls and advance do."""
    world = scripted(JobScript(queue_polls=1, run_polls=1))
    rid = world.create(MODEL, "t", {})
    for _ in range(5):
        assert world.peek(rid, result=True).state == "in_queue"
    assert world.view(rid).result_polls == 5
    world.advance(rid, 2)
    assert world.peek(rid).state == "succeeded"


@pytest.mark.parametrize("outcome", ["failed", "cancelled"])
def test_scripted_outcomes(outcome: str) -> None:
    """The job ends in the scripted outcome."""
    world = scripted(JobScript(queue_polls=0, run_polls=1, outcome=outcome))  # type: ignore[arg-type]
    rid = world.create(MODEL, "t", {})
    world.advance(rid)
    assert world.peek(rid).state == outcome


def test_status_sequence_overrides_words_and_repeats_the_last() -> None:
    """status_sequence words are answered in order, the last one repeating."""
    world = scripted(JobScript(queue_polls=1, run_polls=1, status_sequence=["paused", "canceled"]))
    rid = world.create(MODEL, "t", {})
    words = [world.poll_status(rid).raw_status for _ in range(4)]
    assert words == ["paused", "canceled", "canceled", "canceled"]
    assert world.peek(rid).state == "succeeded"


def test_script_next_is_fifo_then_default() -> None:
    """script_next applies to the next `count` jobs in order, then the default script returns."""
    world = scripted(JobScript(queue_polls=5))
    world.script_next(JobScript(queue_polls=1), count=2)
    world.script_next(JobScript(queue_polls=2))
    positions = [world.peek(world.create(MODEL, "t", {})).queue_position for _ in range(4)]
    assert positions == [1, 1, 2, 5]


def test_advance_needs_the_scripted_clock() -> None:
    """advance() on the wall clock is a usage error."""
    world = wall(FakeClock())
    rid = world.create(MODEL, "t", {})
    with pytest.raises(RuntimeError):
        world.advance(rid)


@pytest.mark.parametrize(
    "bad",
    [{"queue_polls": -1}, {"run_polls": -2}, {"outcome": "exploded"}, {"run_seconds": -1.0}],
)
def test_job_script_rejects_nonsense(bad: dict[str, object]) -> None:
    """Invalid scripts fail fast with ValueError."""
    with pytest.raises(ValueError):  # noqa: PT011 - any of several messages
        JobScript(**bad)  # type: ignore[arg-type]


# --- cancel rules and expiry ----------------------------------------------------------------


def test_cancel_rules_scripted() -> None:
    """Queued: cancelled. Running: not_cancellable. Finished: a no-op."""
    world = scripted(JobScript(queue_polls=1, run_polls=1))
    queued = world.create(MODEL, "t", {})
    snap, outcome = world.cancel(queued)
    assert (snap.state, outcome) == ("cancelled", "cancelled")
    assert world.cancel(queued)[1] == "cancelled"  # cancelling twice stays cancelled
    running = world.create(MODEL, "t", {})
    world.advance(running)
    assert world.cancel(running) == (Snapshot("in_progress", None), "not_cancellable")
    world.advance(running)
    assert world.cancel(running) == (Snapshot("succeeded", None), "not_cancellable")


def test_cancellation_requested_still_completes() -> None:
    """With cancel_running='cancellation_requested' the job is flagged but completes."""
    world = scripted(JobScript(queue_polls=0, run_polls=1), cancel_running="cancellation_requested")
    rid = world.create(MODEL, "t", {})
    assert world.cancel(rid)[1] == "cancellation_requested"
    assert world.view(rid).cancel_requested
    world.advance(rid)
    assert world.peek(rid).state == "succeeded"


def test_expire_and_retention() -> None:
    """expire() kills an id at once; retention_seconds kills finished jobs after that long."""
    clock = FakeClock()
    world = World(
        clock="scripted",
        script=JobScript(queue_polls=0, run_polls=0),
        retention_seconds=60.0,
        now=clock,
    )
    done = world.create(MODEL, "t", {})
    other = world.create(MODEL, "t", {})
    world.expire(other)
    assert world.live(done)
    assert not world.live(other)
    clock.t += 59.0
    assert world.live(done)
    clock.t += 1.0
    assert not world.live(done)
    assert world.exists(done)
    assert world.view(done).expired


# --- wall clock -----------------------------------------------------------------------------


def test_wall_clock_fifo_slots_and_positions() -> None:
    """Two workers run 10 s jobs; the rest wait FIFO with 1-based positions, all lazily."""
    clock = FakeClock()
    world = wall(clock, workers=2, run_seconds=10.0)
    ids = [world.create(MODEL, "t", {}) for _ in range(5)]
    assert [world.peek(r).queue_position for r in ids] == [None, None, 1, 2, 3]
    clock.t += 10.0
    assert [world.peek(r).state for r in ids] == ["succeeded"] * 2 + ["in_progress"] * 2 + [
        "in_queue"
    ]
    assert world.peek(ids[4]).queue_position == 1
    clock.t += 25.0
    assert all(world.peek(r).state == "succeeded" for r in ids)
    finished = [world.view(r).finished_at for r in ids]
    assert finished[0] == finished[1] != finished[2] == finished[3] != finished[4]


def test_wall_clock_cancel_frees_a_place() -> None:
    """Cancelling a queued job moves everyone behind it up; a running one cannot be cancelled."""
    clock = FakeClock()
    world = wall(clock, workers=1, run_seconds=10.0)
    ids = [world.create(MODEL, "t", {}) for _ in range(4)]
    assert world.cancel(ids[1])[1] == "cancelled"
    assert world.cancel(ids[0])[1] == "not_cancellable"
    assert [world.peek(r).queue_position for r in ids[2:]] == [1, 2]
    clock.t += 10.0
    assert world.peek(ids[2]).state == "in_progress"  # the cancelled job's slot was skipped
    assert world.peek(ids[3]).queue_position == 1


def test_wall_clock_time_scale_and_script_override() -> None:
    """time_scale speeds the world up; JobScript.run_seconds overrides the drawn duration."""
    clock = FakeClock()
    world = wall(clock, workers=4, run_seconds=(100.0, 200.0), time_scale=10.0)
    world.script_next(JobScript(run_seconds=5.0))
    quick = world.create(MODEL, "t", {})
    slow = world.create(MODEL, "t", {})
    clock.t += 0.5  # 5 simulated seconds
    assert world.peek(quick).state == "succeeded"
    assert world.peek(slow).state == "in_progress"
    clock.t += 20.0
    assert world.peek(slow).state == "succeeded"


def test_wall_clock_failures_are_seeded() -> None:
    """failure_rate draws are reproducible from the seed and roughly at the rate asked."""

    def outcomes(seed: int) -> list[str]:
        clock = FakeClock()
        world = wall(clock, workers=1000, run_seconds=(1.0, 2.0), failure_rate=0.3, seed=seed)
        ids = [world.create(MODEL, "t", {}) for _ in range(1000)]
        clock.t += 3.0
        return [world.peek(r).state for r in ids]

    first = outcomes(7)
    assert first == outcomes(7)
    assert first != outcomes(8)
    assert 200 < first.count("failed") < 400


def test_ten_thousand_live_jobs_are_cheap() -> None:
    """10,000 queued jobs: positions stay exact after cancellations, in well under a second."""
    clock = FakeClock()
    world = wall(clock, workers=4, run_seconds=1000.0)
    started = time.perf_counter()
    ids = [world.create(MODEL, "t", {}) for _ in range(10_000)]
    for rid in ids[4::10]:
        world.cancel(rid)
    positions = [world.peek(rid).queue_position for rid in ids]
    elapsed = time.perf_counter() - started
    waiting = [
        p for p, rid in zip(positions, ids, strict=True) if world.peek(rid).state == "in_queue"
    ]
    assert waiting == list(range(1, len(waiting) + 1))
    assert len(waiting) == 10_000 - 4 - 1000
    assert elapsed < 2.0


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["create", "cancel", "tick"]), st.integers(0, 10_000)),
        max_size=80,
    ),
    st.integers(1, 3),
)
def test_wall_clock_positions_match_a_naive_queue(ops: list[tuple[str, int]], workers: int) -> None:
    """Lazy simulation + Fenwick positions agree with a brute-force FIFO model."""
    clock = FakeClock()
    world = wall(clock, workers=workers, run_seconds=10.0)
    ids: list[str] = []
    for op, arg in ops:
        if op == "create":
            ids.append(world.create(MODEL, "t", {}))
        elif op == "cancel" and ids:
            world.cancel(ids[arg % len(ids)])
        else:
            clock.t += arg % 25
        states = {rid: world.peek(rid) for rid in ids}
        waiting = [rid for rid in ids if states[rid].state == "in_queue"]
        running = [rid for rid in ids if states[rid].state == "in_progress"]
        assert [states[r].queue_position for r in waiting] == list(range(1, len(waiting) + 1))
        assert len(running) <= workers
        assert not waiting or len(running) == workers


# --- fault plan -----------------------------------------------------------------------------


def test_fault_after_and_times() -> None:
    """after skips matching requests, times bounds the hits, other routes are not counted."""
    plan = FaultPlan([Fault(FaultKind.SERVER_ERROR, "status", after=1, times=2)])
    assert plan.match("result") is None
    hits = [plan.match("status") is not None for _ in range(5)]
    assert hits == [False, True, True, False, False]
    assert plan.injected == {"server_error": 2}


def test_fault_first_with_budget_wins_and_star_skips_storage() -> None:
    """Faults are tried in order; '*' covers API routes only; times=None never runs out."""
    plan = FaultPlan(
        [
            Fault(FaultKind.RATE_LIMIT, "*"),
            Fault(FaultKind.HANG, "storage", times=None),
            Fault(FaultKind.SLOW, "*"),
        ]
    )
    first, second = plan.match("submit"), plan.match("submit")
    assert first is not None
    assert first.kind is FaultKind.RATE_LIMIT
    assert second is not None
    assert second.kind is FaultKind.SLOW
    assert plan.match("submit") is None
    assert all(plan.match("storage") is not None for _ in range(3))
    assert plan.injected == {"rate_limit": 1, "slow": 1, "hang": 3}


def test_probabilistic_faults_replay_with_the_seed() -> None:
    """Probability faults fire at about the rate asked, identically for the same seed."""

    def pattern(seed: int) -> list[bool]:
        fault = Fault(FaultKind.SERVER_ERROR, times=None, probability=0.25)
        plan = FaultPlan([fault], seed=seed)
        return [plan.match("status") is not None for _ in range(400)]

    assert pattern(1) == pattern(1)
    assert pattern(1) != pattern(2)
    assert 60 < sum(pattern(1)) < 140


@pytest.mark.parametrize(
    "bad",
    [
        {"kind": "explode"},
        {"kind": "hang", "route": "nowhere"},
        {"kind": "hang", "times": -1},
        {"kind": "hang", "probability": 1.5},
        {"kind": "slow", "delay": -1.0},
    ],
)
def test_fault_rejects_nonsense(bad: dict[str, object]) -> None:
    """Invalid faults fail fast with ValueError."""
    kind = bad.pop("kind")
    with pytest.raises(ValueError):  # noqa: PT011 - any of several messages
        Fault(kind, **bad)  # type: ignore[arg-type]


def test_fault_is_frozen_and_positional() -> None:
    """Fault(kind, route) is positional (kind may be its string value), the rest keyword-only."""
    fault = Fault("rate_limit", "submit", retry_after=2)  # type: ignore[arg-type]
    assert fault.kind is FaultKind.RATE_LIMIT
    assert fault.route == "submit"
    with pytest.raises(AttributeError):
        fault.times = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        Fault(FaultKind.RATE_LIMIT, "submit", 3)  # type: ignore[call-arg]


# --- payloads, schemas, assets --------------------------------------------------------------


def test_status_body_has_queue_position_only_while_queued() -> None:
    """queue_position appears only for in_queue; failures read 'completed' by default."""
    queued = status_body("http://h", "r", Snapshot("in_queue", 3), "completed")
    assert queued["queue_position"] == 3
    running = status_body("http://h", "r", Snapshot("in_progress", None), "completed")
    assert "queue_position" not in running
    assert status_body("http://h", "r", Snapshot("failed", None), "completed")["status"] == (
        "completed"
    )
    assert status_body("http://h", "r", Snapshot("failed", None), "outcome")["status"] == "failed"
    assert queued["status_url"] == "http://h/v1/requests/r/status"


def test_render_output_shapes() -> None:
    """object / url / list / explicit outputs render as documented."""
    files = ("a.png", "b.mp4", "c.mp4")
    obj = render_output("object", files, "http://s", "r")
    assert obj == {
        "image": "http://s/files/r/a.png",
        "images": ["http://s/files/r/a.png"],
        "video": "http://s/files/r/b.mp4",
        "videos": ["http://s/files/r/b.mp4", "http://s/files/r/c.mp4"],
    }
    assert render_output("url", files, "http://s", "r") == "http://s/files/r/a.png"
    assert render_output("list", files[1:], "http://s", "r") == [
        "http://s/files/r/b.mp4",
        "http://s/files/r/c.mp4",
    ]
    explicit = {"video": "{storage}/files/{request_id}/../../evil.mp4", "n": [1, "{request_id}"]}
    assert render_output(explicit, files, "http://s", "r") == {
        "video": "http://s/files/r/../../evil.mp4",
        "n": [1, "r"],
    }


def test_result_body_fields_by_state() -> None:
    """output only on success, error only on failure, cost and finished_at only when finished."""
    common: dict[str, Any] = {
        "request_id": "r",
        "model_id": "m",
        "created_at": "c",
        "output": {"x": 1},
    }
    running = result_body(
        snap=Snapshot("in_progress", None), finished_at=None, error="e", cost=1.0, **common
    )
    assert set(running) == {"request_id", "status", "created_at", "model_id"}
    failed = result_body(
        snap=Snapshot("failed", None), finished_at="f", error=["e"], cost=1.0, **common
    )
    assert failed["error"] == ["e"]
    assert "output" not in failed
    assert failed["cost"] == 1.0
    cancelled = result_body(
        snap=Snapshot("cancelled", None), finished_at="f", error="e", cost=1.0, **common
    )
    assert cancelled["cost"] == 0.0
    assert "error" not in cancelled


CATALOG = Catalog()
validate = CATALOG.validate


def test_validate_seed_models() -> None:
    """The seed schemas catch type, enum, length, format and PNG pixel-size violations."""
    ok = {"prompt": "fox", "img_url": "https://x/y.png", "unknown_key": 1}
    assert validate(MODEL, ok) == []
    assert validate("someone/else", {"anything": 1}) is None
    small = "data:image/png;base64," + base64.b64encode(make_png(100, 400)).decode()
    bad = {"prompt": "", "img_url": small, "duration": 7, "resolution": "720p"}
    rules = {(v.field, v.rule) for v in validate(MODEL, bad) or []}
    assert rules == {
        ("prompt", "minLength"),
        ("img_url", "width_pixels>"),
        ("duration", "enum"),
        ("resolution", "enum"),
    }
    wan22 = "wan-ai/wan-2-2/image-to-video"
    bad22 = {"prompt": "x" * 801, "negative_prompt": "n" * 501, "seed": True, "prompt_extend": 1}
    rules22 = {(v.field, v.rule) for v in validate(wan22, bad22) or []}
    assert rules22 == {
        ("img_url", "required"),
        ("prompt", "maxLength"),
        ("negative_prompt", "maxLength"),
        ("seed", "type"),
        ("prompt_extend", "type"),
    }


def test_catalog_entries_carry_runcomfy_extensions() -> None:
    """Catalog entries have the documented fields and validations on img_url."""
    for model_id in ("wan-ai/wan-2-5/image-to-video", "wan-ai/wan-2-2/image-to-video"):
        spec = CATALOG.get(model_id)
        assert spec is not None
        entry = spec.entry()
        assert entry["model_id"] == model_id
        assert entry["price_unit"] == "second"
        img = entry["input_schema"]["properties"]["img_url"]
        assert img["format"] == "image_uri"
        assert {"validation_rule": "width_pixels>", "validation_value": 360}.items() <= img[
            "validations"
        ][0].items()
    page, total = CATALOG.search(search="WAN", limit=1, offset=1)
    assert total == 2
    assert len(page) == 1


def test_assets_are_real_media() -> None:
    """The PNG and MP4 bytes carry real signatures; names pick the right type."""
    assert PNG_BYTES.startswith(b"\x89PNG\r\n\x1a\n")
    assert MP4_BYTES[4:8] == b"ftyp"
    assert content_for("a.PNG") == (PNG_BYTES, "image/png")
    assert content_for("clip.mp4") == (MP4_BYTES, "video/mp4")
    with pytest.raises(ValueError, match="positive"):
        make_png(0, 1)

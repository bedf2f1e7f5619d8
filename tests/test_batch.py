"""Keyed runs over the journal, ``Client.map``, and gather at scale, against the simulator."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Mapping
from contextlib import aclosing
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

from runcomfy_async import (
    Client,
    InputValidationError,
    InsufficientBalanceError,
    JobCancelledError,
    JobFailedError,
    Limits,
    SubmitUncertainError,
)
from runcomfy_async._errors import KeyConflictError, UncertainKeyError
from runcomfy_async._journal import EntryState, Journal, encode_inputs
from runcomfy_async._map import MapOutcome
from runcomfy_async.models import Wan25ImageToVideo
from runcomfy_async.testing import Fault, FaultKind, JobScript, Simulator

from .conftest import FAST_POLL, FAST_RETRY, GOOD_INPUTS, STUCK, WAN22, WAN25

pytestmark = pytest.mark.anyio


def item(i: int) -> dict[str, object]:
    """Inputs for batch item ``i`` (the prompt tells items apart in the sim's log)."""
    return {**GOOD_INPUTS, "prompt": f"item {i}"}


@pytest.fixture
async def fclient(sim: Simulator) -> AsyncIterator[Client]:
    """A client without a journal, polling without waiting."""
    async with Client(token=sim.token, base_url=sim.url, retry=FAST_RETRY, polling=FAST_POLL) as c:
        yield c


async def eventually(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait until ``predicate()`` holds, checking the simulator's state as the loop turns."""
    with anyio.fail_after(timeout):
        # The simulator offers no event to wait on; its log is checked every millisecond.
        while not predicate():  # noqa: ASYNC110
            await anyio.sleep(0.001)


async def entry_of(db: Path, key: str) -> tuple[EntryState, str | None] | None:
    """Read one key's state and request id with a journal of the test's own."""
    journal = Journal(db)
    try:
        entry = await journal.lookup(key)
    finally:
        await journal.aclose()
    return None if entry is None else (entry.state, entry.request_id)


async def journal_as(
    db: Path, key: str, inputs: Mapping[str, object], request_id: str | None
) -> None:
    """Write an entry as a crashed run would have left it: intent, or submitted."""
    journal = Journal(db)
    try:
        await journal.record_intent(key, WAN25, encode_inputs(inputs))
        if request_id is not None:
            await journal.record_submitted(key, request_id)
    finally:
        await journal.aclose()


# --- keyed run ---------------------------------------------------------------------------


async def test_keyed_run_journals_the_job(jclient: Client, sim: Simulator, db: Path) -> None:
    """A keyed run submits once and leaves the key finished with its request id."""
    result = await jclient.run(WAN25, GOOD_INPUTS, key="a")
    assert sim.count("submit") == 1
    assert await entry_of(db, "a") == (EntryState.FINISHED, result.request_id)


async def test_rerun_of_finished_key_sends_no_request(
    jclient: Client, sim: Simulator, db: Path
) -> None:
    """A finished key returns its stored result with no request at all, even in a new client."""
    first = await jclient.run(WAN25, GOOD_INPUTS, key="a")
    before = len(sim.log)
    assert await jclient.run(WAN25, GOOD_INPUTS, key="a") == first
    async with Client(token=sim.token, base_url=sim.url, journal=db) as other:
        assert await other.run(WAN25, GOOD_INPUTS, key="a") == first
    assert len(sim.log) == before


async def test_rerun_reattaches_to_a_submitted_job(
    fclient: Client, jclient: Client, sim: Simulator, db: Path
) -> None:
    """A key whose request id was journaled (then the process died) is re-attached: no POST."""
    handle = await fclient.submit(WAN25, GOOD_INPUTS)
    await journal_as(db, "a", GOOD_INPUTS, handle.request_id)
    result = await jclient.run(WAN25, GOOD_INPUTS, key="a")
    assert result.request_id == handle.request_id
    assert sim.count("submit") == 1
    assert sim.count("status", request_id=handle.request_id) > 0
    assert await entry_of(db, "a") == (EntryState.FINISHED, handle.request_id)


async def test_intent_key_is_reported_not_submitted(
    jclient: Client, sim: Simulator, db: Path
) -> None:
    """A crash between intent and request id leaves a key that is never silently resubmitted."""
    await journal_as(db, "a", GOOD_INPUTS, None)
    with pytest.raises(UncertainKeyError) as info:
        await jclient.run(WAN25, GOOD_INPUTS, key="a")
    assert isinstance(info.value, SubmitUncertainError)
    assert (info.value.key, info.value.state) == ("a", EntryState.INTENT)
    assert "'a'" in str(info.value) and info.value.inputs == GOOD_INPUTS
    assert sim.count("submit") == 0


async def test_ambiguous_submit_is_journaled_uncertain(
    jclient: Client, sim: Simulator, db: Path
) -> None:
    """A submit reset after the server took it is uncertain: reported, and not resubmitted."""
    sim.add_fault(Fault(FaultKind.RESET_AFTER, "submit"))
    with pytest.raises(UncertainKeyError) as info:
        await jclient.run(WAN25, GOOD_INPUTS, key="a")
    assert info.value.state is EntryState.UNCERTAIN
    assert await entry_of(db, "a") == (EntryState.UNCERTAIN, None)
    with pytest.raises(UncertainKeyError):
        await jclient.run(WAN25, GOOD_INPUTS, key="a")
    assert (sim.count("submit"), sim.stats.jobs_created) == (1, 1)


async def test_resubmit_policy_submits_an_uncertain_key_again(
    jclient: Client, sim: Simulator, db: Path
) -> None:
    """on_uncertain="resubmit" is the opt-in that submits an uncertain key once more."""
    sim.add_fault(Fault(FaultKind.RESET_AFTER, "submit"))
    with pytest.raises(UncertainKeyError):
        await jclient.run(WAN25, GOOD_INPUTS, key="a")
    result = await jclient.run(WAN25, GOOD_INPUTS, key="a", on_uncertain="resubmit")
    assert sim.count("submit") == 2
    assert await entry_of(db, "a") == (EntryState.FINISHED, result.request_id)


async def test_other_inputs_for_a_key_conflict(jclient: Client, sim: Simulator) -> None:
    """Reusing a key for other inputs or another model is refused before any request."""
    await jclient.run(WAN25, GOOD_INPUTS, key="a")
    before = len(sim.log)
    with pytest.raises(KeyConflictError, match="different inputs"):
        await jclient.run(WAN25, {**GOOD_INPUTS, "prompt": "a cat"}, key="a")
    with pytest.raises(ValueError, match="different model"):
        await jclient.run(WAN22, GOOD_INPUTS, key="a")
    assert len(sim.log) == before


async def test_failed_job_is_kept_and_not_paid_for_twice(
    jclient: Client, sim: Simulator, db: Path
) -> None:
    """A failed job is journaled with its result; a rerun re-raises it with no request."""
    sim.script_next(JobScript(outcome="failed", error="out of memory"))
    with pytest.raises(JobFailedError, match="out of memory") as info:
        await jclient.run(WAN25, GOOD_INPUTS, key="a")
    journal = Journal(db)
    try:
        entry = await journal.lookup("a")
    finally:
        await journal.aclose()
    assert entry is not None and entry.state is EntryState.FAILED
    assert entry.result == info.value.result
    before = len(sim.log)
    with pytest.raises(JobFailedError, match="out of memory") as again:
        await jclient.run(WAN25, GOOD_INPUTS, key="a")
    assert again.value.result == info.value.result
    assert len(sim.log) == before
    result = await jclient.run(WAN25, GOOD_INPUTS, key="a-retry")
    assert sim.count("submit") == 2
    assert await entry_of(db, "a-retry") == (EntryState.FINISHED, result.request_id)


async def test_refused_submit_frees_the_key(jclient: Client, sim: Simulator, db: Path) -> None:
    """A submit the server refused created no job, so the key is free for a rerun."""
    sim.add_fault(Fault(FaultKind.INSUFFICIENT_BALANCE, "submit"))
    with pytest.raises(InsufficientBalanceError):
        await jclient.run(WAN25, GOOD_INPUTS, key="a")
    assert await entry_of(db, "a") is None
    await jclient.run(WAN25, GOOD_INPUTS, key="a")
    assert sim.stats.jobs_created == 1


async def test_cancelled_job_frees_the_key(jclient: Client, sim: Simulator, db: Path) -> None:
    """A job that ends cancelled cost nothing: its key is freed and a rerun submits anew."""
    sim.script_next(JobScript(outcome="cancelled"))
    with pytest.raises(JobCancelledError):
        await jclient.run(WAN25, GOOD_INPUTS, key="a")
    assert await entry_of(db, "a") is None
    await jclient.run(WAN25, GOOD_INPUTS, key="a")
    assert sim.count("submit") == 2


async def test_reattached_job_cancelled_earlier_is_submitted_afresh(
    fclient: Client, jclient: Client, sim: Simulator, db: Path
) -> None:
    """A rerun finding its job cancelled by the abandoned first run submits it once more."""
    sim.script_next(STUCK)
    handle = await fclient.submit(WAN25, GOOD_INPUTS)
    await journal_as(db, "a", GOOD_INPUTS, handle.request_id)
    await fclient.cancel(handle.request_id)
    result = await jclient.run(WAN25, GOOD_INPUTS, key="a")
    assert result.request_id != handle.request_id
    assert sim.count("submit") == 2
    assert await entry_of(db, "a") == (EntryState.FINISHED, result.request_id)


async def test_concurrent_runs_of_one_key_share_one_job(jclient: Client, sim: Simulator) -> None:
    """Two runs of one key at once in one process make one job, not two."""
    first, second = await asyncio.gather(
        jclient.run(WAN25, GOOD_INPUTS, key="a"), jclient.run(WAN25, GOOD_INPUTS, key="a")
    )
    assert first == second
    assert sim.count("submit") == 1


async def test_cancelled_run_records_its_request_id_then_cancels_the_job(
    jclient: Client, sim: Simulator, db: Path
) -> None:
    """Cancelling a keyed run mid-POST still journals the id, then cancels the queued job."""
    sim.script_next(STUCK)
    sim.add_fault(Fault(FaultKind.SLOW, "submit", delay=0.2))

    async def keyed_run() -> None:
        await jclient.run(WAN25, GOOD_INPUTS, key="a")

    with anyio.move_on_after(30) as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(keyed_run)
            await eventually(lambda: sim.count("submit") > 0)  # the POST reached the server
            tg.cancel_scope.cancel()
    assert not scope.cancelled_caught
    await jclient.aclose()  # the POST's cleanup may outlive the (prompt) cancellation
    state = await entry_of(db, "a")
    assert state is not None and state[0] is EntryState.SUBMITTED
    assert state[1] is not None
    assert sim.count("cancel", request_id=state[1]) == 1
    assert sim.job(state[1]).state == "cancelled"


async def test_keys_need_a_journal(fclient: Client) -> None:
    """A key without Client(journal=...) is misuse, refused at once."""
    with pytest.raises(ValueError, match="journal"):
        await fclient.run(WAN25, GOOD_INPUTS, key="a")
    with pytest.raises(ValueError, match="journal"):
        fclient.map(WAN25, [GOOD_INPUTS], keys=["a"])


@pytest.mark.parametrize("key", ["", 3])
async def test_bad_keys_are_refused(jclient: Client, key: object) -> None:
    """A key must be a non-empty string."""
    with pytest.raises(ValueError, match="key"):
        await jclient.run(WAN25, GOOD_INPUTS, key=key)  # type: ignore[call-overload]


# --- map ---------------------------------------------------------------------------------


async def collect(outcomes: AsyncGenerator[MapOutcome, None]) -> list[MapOutcome]:
    """Every outcome of a map, in the order yielded."""
    async with aclosing(outcomes) as stream:
        return [outcome async for outcome in stream]


async def test_map_yields_in_completion_order(fclient: Client, sim: Simulator) -> None:
    """Outcomes come as jobs finish: the first job submitted, and slowest, comes last."""
    sim.script_next(JobScript(queue_polls=40))
    outcomes = await collect(fclient.map(WAN25, [item(i) for i in range(4)], concurrency=4))
    first_created = next(r.request_id for r in sim.log if r.route == "submit")
    assert len(outcomes) == 4 and all(o.ok for o in outcomes)
    assert sorted(o.index for o in outcomes) == [0, 1, 2, 3]
    assert outcomes[-1].result is not None
    assert outcomes[-1].result.request_id == first_created


async def test_map_keeps_going_past_bad_items(fclient: Client, sim: Simulator) -> None:
    """A refused input (refused locally, never sent) and a failed job are outcomes of their own."""
    sim.script_next(JobScript(outcome="failed", error="boom"))
    inputs: list[dict[str, object]] = [item(0), {"prompt": "no image"}, item(2), item(3)]
    outcomes = await collect(fclient.map(WAN25, inputs, concurrency=1))
    by_index = {o.index: o for o in outcomes}
    assert isinstance(by_index[0].error, JobFailedError)
    assert isinstance(by_index[1].error, InputValidationError)
    assert sim.count("submit") == 3
    assert by_index[2].ok and by_index[3].ok
    assert by_index[2].result is not None and by_index[1].result is None


def job_overlap(sim: Simulator) -> int:
    """The most jobs in flight at once, from each job's submit to its result fetch."""
    events: list[tuple[int, int]] = []
    last_result: dict[str, int] = {}
    for n, record in enumerate(sim.log):
        if record.route == "submit":
            events.append((n, 1))
        elif record.route == "result" and record.request_id is not None:
            last_result[record.request_id] = n
    events += [(n, -1) for n in last_result.values()]
    level = peak = 0
    for _, step in sorted(events):
        level += step
        peak = max(peak, level)
    return peak


async def test_map_bounds_its_concurrency(fclient: Client, sim: Simulator) -> None:
    """No more than `concurrency` jobs are ever in flight, as the simulator saw them."""
    sim.script_next(JobScript(queue_polls=3, run_polls=3), count=30)
    outcomes = await collect(fclient.map(WAN25, [item(i) for i in range(30)], concurrency=3))
    assert len(outcomes) == 30 and all(o.ok for o in outcomes)
    assert job_overlap(sim) == 3
    assert sim.stats.max_concurrent_connections <= 3


async def test_map_early_exit_cancels_and_stops(fclient: Client, sim: Simulator) -> None:
    """Leaving the loop stops submitting and cancels the queued jobs remotely."""
    sim.script_next(JobScript())  # the first job created finishes; the rest stay queued
    sim.script_next(STUCK, count=100)
    async with aclosing(fclient.map(WAN25, [item(i) for i in range(50)], concurrency=4)) as it:
        async for outcome in it:
            assert outcome.ok
            break
    submitted = sim.count("submit")
    assert 4 <= submitted <= 5
    rids = [r.request_id for r in sim.log if r.route == "submit"]
    states = sorted(sim.job(rid).state for rid in rids if rid is not None)
    assert states == ["cancelled"] * (submitted - 1) + ["succeeded"]
    for _ in range(10):
        await anyio.lowlevel.checkpoint()
    assert sim.count("submit") == submitted


async def test_map_break_without_aclosing_cleans_up(fclient: Client, sim: Simulator) -> None:
    """A plain `break` also cancels the queued jobs, once the generator is finalised."""
    sim.script_next(JobScript())
    sim.script_next(STUCK, count=100)
    async for _ in fclient.map(WAN25, [item(i) for i in range(50)], concurrency=4):
        break
    # Without aclosing, asyncio finalises the abandoned generator in a task of its own.
    await eventually(lambda: sim.count("cancel") == sim.count("submit") - 1)
    assert sim.count("submit") <= 5


async def test_map_of_typed_inputs(fclient: Client, sim: Simulator) -> None:
    """Typed inputs carry their model: no model id needed, and none mixed in."""
    url = GOOD_INPUTS["img_url"]
    typed = [Wan25ImageToVideo(prompt=f"item {i}", img_url=url) for i in range(3)]
    outcomes = await collect(fclient.map(typed, concurrency=2))
    assert [o.ok for o in outcomes] == [True] * 3
    assert {r.model_id for r in sim.log if r.route == "submit"} == {WAN25}
    with pytest.raises(TypeError, match="mapping"):
        await collect(fclient.map([GOOD_INPUTS], concurrency=2))  # type: ignore[list-item]
    with pytest.raises(ValueError, match="input for"):
        await collect(fclient.map(WAN22, typed))  # type: ignore[arg-type]


async def test_map_accepts_an_async_iterable(fclient: Client) -> None:
    """Inputs may come from an async generator, pulled lazily."""

    async def produce() -> AsyncIterator[dict[str, object]]:
        for i in range(5):
            yield item(i)

    outcomes = await collect(fclient.map(WAN25, produce(), concurrency=2))
    assert sorted(o.index for o in outcomes) == list(range(5))


async def test_map_pulls_inputs_lazily(fclient: Client) -> None:
    """An endless iterable is fine: items are pulled one per free slot."""

    def endless() -> Iterator[dict[str, object]]:
        i = 0
        while True:
            yield item(i)
            i += 1

    taken = 0
    async with aclosing(fclient.map(WAN25, endless(), concurrency=2)) as outcomes:
        async for _ in outcomes:
            taken += 1
            if taken == 5:
                break
    assert taken == 5


async def test_map_with_keys_resumes(jclient: Client, sim: Simulator) -> None:
    """A keyed map rerun returns every stored result with no request."""
    keys = [f"k{i}" for i in range(6)]
    first = await collect(jclient.map(WAN25, [item(i) for i in range(6)], keys=keys))
    assert {o.key for o in first} == set(keys) and all(o.ok for o in first)
    before = len(sim.log)
    again = await collect(jclient.map(WAN25, [item(i) for i in range(6)], keys=keys))
    assert len(sim.log) == before
    assert {o.key: o.result for o in again} == {o.key: o.result for o in first}


async def test_map_reports_an_uncertain_key(jclient: Client, sim: Simulator, db: Path) -> None:
    """An uncertain key is that item's error; the other items still run."""
    await journal_as(db, "k1", item(1), None)
    outcomes = await collect(
        jclient.map(WAN25, [item(i) for i in range(3)], keys=["k0", "k1", "k2"])
    )
    errors = {o.key: o.error for o in outcomes if not o.ok}
    assert list(errors) == ["k1"] and isinstance(errors["k1"], UncertainKeyError)
    assert sim.count("submit") == 2


async def test_map_with_too_few_keys_raises(jclient: Client) -> None:
    """Fewer keys than inputs is misuse, raised by the iterator."""
    with pytest.raises(ValueError, match="ran out of keys"):
        await collect(jclient.map(WAN25, [item(i) for i in range(3)], keys=["k0"]))


@pytest.mark.parametrize("concurrency", [0, -1, 1.5])
async def test_map_checks_concurrency(fclient: Client, concurrency: object) -> None:
    """Concurrency must be a positive integer."""
    with pytest.raises(ValueError, match="concurrency"):
        fclient.map(WAN25, [GOOD_INPUTS], concurrency=concurrency)  # type: ignore[call-overload]


# --- scale -------------------------------------------------------------------------------


async def test_gather_1000_runs_within_connection_limits(sim: Simulator) -> None:
    """gather over 1,000 run() on one client succeeds inside the pool and submit bounds."""
    limits = Limits(max_connections=16, max_connections_per_host=8, max_submits_in_flight=4)
    async with Client(
        token=sim.token, base_url=sim.url, retry=FAST_RETRY, polling=FAST_POLL, limits=limits
    ) as client:
        results = await asyncio.gather(*(client.run(WAN25, item(i)) for i in range(1000)))
    assert len({r.request_id for r in results}) == 1000
    assert sim.stats.jobs_created == 1000
    assert sim.stats.max_concurrent_connections <= 8


async def test_map_is_pull_holding_the_generator_after_break_starts_nothing(
    fclient: Client, sim: Simulator
) -> None:
    """After break (generator still held), no item starts: only the first `concurrency` ran."""
    outcomes = fclient.map(WAN25, [item(i) for i in range(20)], concurrency=4)
    async for outcome in outcomes:
        assert outcome.ok
        break
    # The three other running items finish; their outcomes wait in the buffer.
    await eventually(
        lambda: (
            sum(
                sim.job(r.request_id).state == "succeeded"
                for r in sim.log
                if r.route == "submit" and r.request_id
            )
            == 4
        )
    )
    for _ in range(50):
        await anyio.lowlevel.checkpoint()
    assert sim.count("submit") == 4
    await outcomes.aclose()
    assert sim.count("submit") == 4


async def test_map_as_context_manager_cancels_queued_jobs_at_exit(
    fclient: Client, sim: Simulator
) -> None:
    """`async with client.map(...) as outcomes:` — leaving the block cancels queued jobs."""
    sim.script_next(JobScript())
    sim.script_next(STUCK, count=3)
    async with fclient.map(WAN25, [item(i) for i in range(4)], concurrency=4) as outcomes:
        async for outcome in outcomes:
            assert outcome.ok
            break
    assert sim.count("submit") == 4
    assert sim.count("cancel") == 3

"""A hostile or broken server: echoed tokens, answers for another job, flapping, deep errors.

Every check runs through the public API against the simulator's hostile fault kinds, with a
distinctive token searched for everywhere it must not be.
"""

from __future__ import annotations

import logging
import pickle
import traceback
from pathlib import Path

import anyio
import msgspec
import pytest

from runcomfy_async import (
    APIStatusError,
    AuthenticationError,
    Client,
    JobFailedError,
    PollPolicy,
    ReadTimeoutError,
    RetryPolicy,
    ServerError,
    Timeouts,
    UnexpectedResponseError,
)
from runcomfy_async._journal import EntryState, Journal
from runcomfy_async.testing import Fault, FaultKind, JobScript, Simulator

from .conftest import FAST_RETRY, GOOD_INPUTS, WAN25
from .test_security import LOGGERS, SECRET, exposures, log_texts

pytestmark = pytest.mark.anyio

FAST_POLL = PollPolicy(first_interval=0.0, max_interval=0.0, requests_per_second=1e4, burst=100)
DONE = JobScript(queue_polls=0, run_polls=0)


def _client(sim: Simulator, **options: object) -> Client:
    options = {"retry": FAST_RETRY, "polling": FAST_POLL, **options}
    return Client(token=SECRET, base_url=sim.url, **options)  # type: ignore[arg-type]


# --- the token -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("route", "status", "code", "expected"),
    [
        ("submit", None, None, AuthenticationError),
        ("status", None, None, AuthenticationError),
        ("result", 503, 500001, ServerError),  # retried: every retry's log line is checked too
        ("cancel", 200, 500001, ServerError),  # a 200 carrying the echoing envelope
    ],
)
async def test_echoed_token_is_redacted_from_errors_and_logs(
    caplog: pytest.LogCaptureFixture,
    route: str,
    status: int | None,
    code: int | None,
    expected: type[Exception],
) -> None:
    """A server echoing the Authorization header never gets the token into a message or log."""
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    fault = Fault(FaultKind.ECHO_TOKEN, route, times=None, status=status, error_code=code)
    async with Simulator(token=SECRET, script=DONE) as sim, _client(sim) as c:
        handle = await c.submit(WAN25, GOOD_INPUTS) if route != "submit" else None
        sim.add_fault(fault)
        calls = {
            "submit": lambda: c.submit(WAN25, GOOD_INPUTS),
            "status": lambda: c.wait(handle.request_id),  # type: ignore[union-attr]
            "result": lambda: c.result(handle.request_id),  # type: ignore[union-attr]
            "cancel": lambda: c.cancel(handle.request_id),  # type: ignore[union-attr]
        }
        with pytest.raises(expected) as caught:
            await calls[route]()
        assert sim.stats.faults_injected["echo_token"] >= 1
    error = caught.value
    assert isinstance(error, APIStatusError)
    assert "Bearer [redacted]" in str(error)
    assert error.detail == {"authorization": "Bearer [redacted]"}
    texts = exposures(error) + log_texts(caplog.records)
    assert [t for t in texts if SECRET in t] == []


async def test_traceback_with_frame_locals_never_shows_the_token() -> None:
    """A failure inside a request, rendered with every frame's locals, shows no token."""
    async with Simulator(token=SECRET) as sim:
        sim.add_fault(Fault(FaultKind.HANG, "status", times=None))
        retry = RetryPolicy(attempts=1)
        async with _client(sim, timeouts=Timeouts(read=0.05), retry=retry) as c:
            with anyio.fail_after(5), pytest.raises(ReadTimeoutError) as caught:
                await c.status("some-request")
    rendered = traceback.TracebackException.from_exception(caught.value, capture_locals=True)
    text = "".join(rendered.format())
    assert "'Bearer [redacted]'" in text  # the header dict of the failing request, redacted
    assert SECRET not in text


async def test_token_redaction_keeps_a_download_and_a_run_intact(tmp_path: Path) -> None:
    """The redacted header still authenticates: a full run and download work as before."""
    async with Simulator(token=SECRET, script=DONE) as sim, _client(sim) as c:
        result = await c.run(WAN25, GOOD_INPUTS)
        [path] = await c.download(result, tmp_path)
    assert path.stat().st_size > 0
    assert {r.authorization for r in sim.log} == {f"Bearer {SECRET}"}


# --- deep errors (used by the keyed test below too) ------------------------------------------


def _depth(value: object) -> int:
    depth = 0
    while isinstance(value, dict):
        value, depth = value.get("error"), depth + 1
    return depth


def _check_failed(error: JobFailedError) -> None:
    assert _depth(error.error) <= 33
    clone = pickle.loads(pickle.dumps(error))
    assert type(clone) is JobFailedError
    assert clone.request_id == error.request_id
    assert _depth(clone.error) == _depth(error.error)
    assert str(clone) == str(error)
    assert "".join(traceback.format_exception(error))


async def test_deep_error_is_capped_so_the_failure_pickles_and_prints() -> None:
    """An error nested 500 deep is capped: JobFailedError pickles, prints and keeps its id."""
    failing = JobScript(queue_polls=0, run_polls=0, outcome="failed")
    async with Simulator(token=SECRET, script=failing) as sim, _client(sim) as c:
        sim.add_fault(Fault(FaultKind.DEEP_ERROR, "result", times=None))
        with pytest.raises(JobFailedError) as caught:
            await c.run(WAN25, GOOD_INPUTS)
    _check_failed(caught.value)
    assert "nested too deeply" in repr(caught.value.error)


async def test_keyed_run_journals_a_deep_failure_that_a_rerun_replays(tmp_path: Path) -> None:
    """A keyed run journals the capped failure; the rerun raises it again, with no new job."""
    failing = JobScript(queue_polls=0, run_polls=0, outcome="failed")
    db = tmp_path / "batch.db"
    async with Simulator(token=SECRET, script=failing) as sim:
        sim.add_fault(Fault(FaultKind.DEEP_ERROR, "result", times=None))
        async with _client(sim, journal=db) as c:
            with pytest.raises(JobFailedError) as first:
                await c.run(WAN25, GOOD_INPUTS, key="k")
        async with _client(sim, journal=db) as c:
            with pytest.raises(JobFailedError) as again:
                await c.run(WAN25, GOOD_INPUTS, key="k")
        assert sim.stats.jobs_created == 1
    for error in (first.value, again.value):
        _check_failed(error)
    assert again.value.request_id == first.value.request_id
    assert again.value.error == first.value.error


# --- answers for another job -----------------------------------------------------------------


async def test_one_shot_calls_refuse_an_answer_for_another_job() -> None:
    """status(), result() and cancel() answered with another job's id raise, naming both."""
    async with Simulator(token=SECRET, script=DONE) as sim, _client(sim) as c:
        other = await c.submit(WAN25, GOOD_INPUTS)
        mine = await c.submit(WAN25, GOOD_INPUTS)
        for route in ("status", "result", "cancel"):
            sim.add_fault(Fault(FaultKind.WRONG_ID, route))
        for call in (c.status, c.result, c.cancel):
            with pytest.raises(UnexpectedResponseError, match="another request") as caught:
                await call(mine.request_id)
            assert caught.value.request_id == mine.request_id
            assert other.request_id in str(caught.value)
        assert sim.stats.faults_injected == {"wrong_id": 3}


async def test_a_stray_answer_for_another_job_is_absorbed_by_polling() -> None:
    """One /status and one /result for another job are retried; the run gets its own result."""
    async with Simulator(token=SECRET, script=DONE) as sim, _client(sim) as c:
        sim.script_next(JobScript(queue_polls=0, run_polls=0, output_files=("theirs.png",)))
        await c.submit(WAN25, GOOD_INPUTS)
        sim.add_fault(Fault(FaultKind.WRONG_ID, "status"))
        sim.add_fault(Fault(FaultKind.WRONG_ID, "result"))
        result = await c.run(WAN25, GOOD_INPUTS)
        assert result.output is not None and result.request_id in result.output.urls[0]
        assert "theirs" not in result.output.urls[0]
        assert sim.stats.faults_injected == {"wrong_id": 2}


async def test_keyed_run_never_journals_another_jobs_result(tmp_path: Path) -> None:
    """Persistent /result answers for job B end A's keyed wait; the key keeps A's id only."""
    db = tmp_path / "batch.db"
    polling = msgspec.structs.replace(FAST_POLL, max_consecutive_failures=3)
    async with Simulator(token=SECRET, script=DONE) as sim:
        sim.script_next(JobScript(queue_polls=0, run_polls=0, output_files=("theirs.png",)))
        async with _client(sim, journal=db, polling=polling) as c:
            theirs = await c.submit(WAN25, GOOD_INPUTS)
            sim.add_fault(Fault(FaultKind.WRONG_ID, "status", times=2))  # absorbed
            sim.add_fault(Fault(FaultKind.WRONG_ID, "result", times=3))  # A's /status is done
            with pytest.raises(UnexpectedResponseError, match="another request"):
                await c.run(WAN25, GOOD_INPUTS, key="a")
            assert sim.stats.faults_injected == {"wrong_id": 5}
        journal = Journal(db)
        try:
            entry = await journal.lookup("a")
        finally:
            await journal.aclose()
        assert entry is not None and entry.state is EntryState.SUBMITTED
        mine = entry.request_id
        assert mine is not None and mine != theirs.request_id
        assert entry.result_json is None
        async with _client(sim, journal=db) as c:
            result = await c.run(WAN25, GOOD_INPUTS, key="a")
        assert result.request_id == mine
        assert result.output is not None and mine in result.output.urls[0]
        assert sim.stats.jobs_created == 2


# --- a status that flips back -----------------------------------------------------------------


async def test_status_flapping_back_from_finished_is_logged_once_then_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """completed ↔ in_queue on /status, /result never confirming: one warning, then an error."""
    caplog.set_level(logging.INFO, logger="runcomfy_async")
    polling = msgspec.structs.replace(FAST_POLL, max_consecutive_failures=4)
    async with Simulator(token=SECRET, script=DONE) as sim, _client(sim, polling=polling) as c:
        sim.add_fault(Fault(FaultKind.FLAP, "status", times=None))
        sim.add_fault(Fault(FaultKind.FLAP, "result", times=None, variant="stuck"))
        handle = await c.submit(WAN25, GOOD_INPUTS)
        with anyio.fail_after(10), pytest.raises(UnexpectedResponseError, match="went back"):
            await handle.wait()
        polls = [r for r in sim.log if r.route == "status"]
        assert 4 <= len(polls) <= 2 * 4 + 2
    warned = [r for r in caplog.records if "went back" in r.getMessage()]
    assert len(warned) == 1 and warned[0].levelno == logging.WARNING


async def test_a_single_flap_still_ends_with_the_result() -> None:
    """One stale in_queue after completed is tolerated: the job's result still arrives."""
    async with Simulator(token=SECRET, script=DONE) as sim, _client(sim) as c:
        sim.add_fault(Fault(FaultKind.FLAP, "result", times=1))
        sim.add_fault(Fault(FaultKind.FLAP, "status", times=1, after=1))
        result = await c.run(WAN25, GOOD_INPUTS)
        assert result.output is not None
        assert sim.stats.faults_injected == {"flap": 2}

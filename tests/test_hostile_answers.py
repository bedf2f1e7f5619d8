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
)
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
    assert "Bearer ***" in str(error)
    assert error.detail == {"authorization": "Bearer ***"}
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
    assert "'Bearer ***'" in text  # the header dict of the failing request, redacted
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

"""Rate-limit mode, ``sim.wait_for`` and the simulator's command-line options, over real HTTP."""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from email.utils import parsedate_to_datetime

import aiohttp
import pytest

from runcomfy_async.testing import Fault, FaultKind, RateLimit, RequestRecord, Simulator
from runcomfy_async.testing._options import add_simulator_arguments, simulator_from_args

from .test_simulator_http import GOOD, WAN25, FakeClock, assert_envelope, call, req_url

pytestmark = pytest.mark.anyio


@pytest.fixture
async def http(anyio_backend: str) -> AsyncIterator[aiohttp.ClientSession]:
    """A plain aiohttp session with no connection reuse."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s:
        yield s


async def statuses(http: aiohttp.ClientSession, sim: Simulator, n: int) -> list[int]:
    """GET the model list ``n`` times in a row and return the HTTP statuses."""
    return [(await call(http, "GET", f"{sim.url}/v1/models"))[0] for _ in range(n)]


# --- rate limit -----------------------------------------------------------------------------


async def test_token_bucket_on_an_injected_clock(http: aiohttp.ClientSession) -> None:
    """A burst of B passes, then 429 until time refills tokens at R per second."""
    clock = FakeClock()
    limit = RateLimit(requests_per_second=2, burst=3)
    async with Simulator(rate_limit=limit, now=clock) as sim:
        assert await statuses(http, sim, 4) == [200, 200, 200, 429]
        clock.t += 0.5
        assert await statuses(http, sim, 2) == [200, 429]
        clock.t += 10.0  # refills to the burst size, not beyond
        assert await statuses(http, sim, 4) == [200, 200, 200, 429]
        status, body, headers = await call(http, "GET", f"{sim.url}/v1/models")
        assert status == 429
        assert_envelope(body, 429001)
        assert "Retry-After" not in headers
        assert sim.stats.rate_limited == 4
        limited = [r for r in sim.log if r.status == 429]
        assert len(limited) == 4
        assert all(r.rate_limited and r.fault is None for r in limited)
        assert not any(r.rate_limited for r in sim.log if r.status == 200)
        assert sim.stats.faults_injected == {}


async def test_limited_submit_creates_no_job(http: aiohttp.ClientSession) -> None:
    """A submit refused by the limit does no work; the bucket covers every API route."""
    clock = FakeClock()
    async with Simulator(rate_limit=RateLimit(requests_per_second=1, burst=2), now=clock) as sim:
        _, body, _ = await call(http, "POST", f"{sim.url}/v1/models/{WAN25}", json=GOOD)
        rid = body["request_id"]
        assert (await call(http, "GET", req_url(sim, rid, "status")))[0] == 200
        assert (await call(http, "GET", req_url(sim, rid, "result")))[0] == 429
        assert (await call(http, "POST", f"{sim.url}/v1/models/{WAN25}", json=GOOD))[0] == 429
        assert (await call(http, "GET", f"{sim.url}/v1/models/categories"))[0] == 429
        assert sim.stats.jobs_created == 1
        assert sim.job(rid).result_polls == 0


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [(None, None), ("seconds", "2"), (1.5, "1.5"), (3.0, "3")],
)
async def test_retry_after_header_modes(
    http: aiohttp.ClientSession, retry_after: float | str | None, expected: str | None
) -> None:
    """Retry-After is absent, whole seconds until a token (rounded up), or a fixed number."""
    limit = RateLimit(requests_per_second=0.5, burst=1, retry_after=retry_after)  # type: ignore[arg-type]
    async with Simulator(rate_limit=limit, now=FakeClock()) as sim:
        await call(http, "GET", f"{sim.url}/v1/models")
        status, _, headers = await call(http, "GET", f"{sim.url}/v1/models")
        assert (status, headers.get("Retry-After")) == (429, expected)


async def test_retry_after_http_date_on_the_wall_clock(http: aiohttp.ClientSession) -> None:
    """With the wall clock, 'http-date' sends an HTTP date about 1/R seconds ahead."""
    limit = RateLimit(requests_per_second=0.01, burst=1, retry_after="http-date")
    async with Simulator(rate_limit=limit) as sim:
        assert await statuses(http, sim, 1) == [200]
        before = time.time()
        status, _, headers = await call(http, "GET", f"{sim.url}/v1/models")
        assert status == 429
        when = parsedate_to_datetime(headers["Retry-After"]).timestamp()
        assert before + 90 <= when <= before + 102


async def test_routes_choose_what_the_bucket_covers(http: aiohttp.ClientSession) -> None:
    """Only the chosen routes draw tokens; the others are never limited."""
    limit = RateLimit(requests_per_second=1, burst=1, routes=("submit",))
    async with Simulator(rate_limit=limit, now=FakeClock()) as sim:
        assert await statuses(http, sim, 5) == [200] * 5
        url = f"{sim.url}/v1/models/{WAN25}"
        assert [(await call(http, "POST", url, json=GOOD))[0] for _ in "ab"] == [200, 429]


async def test_set_rate_limit_at_run_time(http: aiohttp.ClientSession) -> None:
    """set_rate_limit() installs a full bucket, replaces it, or (None) removes the limit."""
    async with Simulator(now=FakeClock()) as sim:
        assert await statuses(http, sim, 3) == [200] * 3
        sim.set_rate_limit(RateLimit(requests_per_second=1, burst=1))
        assert await statuses(http, sim, 2) == [200, 429]
        sim.set_rate_limit(RateLimit(requests_per_second=1, burst=2))
        assert await statuses(http, sim, 3) == [200, 200, 429]
        sim.set_rate_limit(None)
        assert await statuses(http, sim, 3) == [200] * 3
        assert sim.stats.rate_limited == 2
        with pytest.raises(TypeError):
            sim.set_rate_limit(5)  # type: ignore[arg-type]


def test_rate_limit_rejects_nonsense() -> None:
    """A rate limit needs R > 0, B >= 1, known routes and a known Retry-After mode."""
    with pytest.raises(ValueError, match="requests_per_second"):
        RateLimit(requests_per_second=0)
    with pytest.raises(ValueError, match="burst"):
        RateLimit(requests_per_second=1, burst=0)
    with pytest.raises(ValueError, match="routes"):
        RateLimit(requests_per_second=1, routes=("storage",))
    with pytest.raises(ValueError, match="retry_after"):
        RateLimit(requests_per_second=1, retry_after="minutes")  # type: ignore[arg-type]
    assert RateLimit(requests_per_second=2.5).size == 3


# --- wait_for -------------------------------------------------------------------------------


async def test_wait_for_counts_arrivals_and_answers(http: aiohttp.ClientSession) -> None:
    """wait_for(count=, route=, answered=) returns once that many matching records exist."""
    async with Simulator() as sim:
        _, body, _ = await call(http, "POST", f"{sim.url}/v1/models/{WAN25}", json=GOOD)
        rid = body["request_id"]

        async def poll_three() -> None:
            for _ in range(3):
                await call(http, "GET", req_url(sim, rid, "status"))

        task = asyncio.create_task(poll_three())
        records = await sim.wait_for(count=3, route="status", request_id=rid, answered=True)
        assert [r.status for r in records] == [200, 200, 200]
        await task
        assert await sim.wait_for(count=1, route="submit", status=200, timeout=0) != []


async def test_wait_for_sees_a_hung_request_arrive(http: aiohttp.ClientSession) -> None:
    """A request that never gets answered still wakes wait_for when it arrives."""
    async with Simulator(faults=[Fault(FaultKind.HANG, "models")]) as sim:
        pending = asyncio.create_task(call(http, "GET", f"{sim.url}/v1/models"))
        records = await sim.wait_for(route="models")
        assert (records[0].status, records[0].fault) == (None, "hang")
        with pytest.raises(TimeoutError, match="models"):
            await sim.wait_for(route="models", answered=True, timeout=0.05)
        await sim.aclose()
        with pytest.raises(aiohttp.ClientError):
            await pending


async def test_wait_for_predicate_is_woken_not_polled(http: aiohttp.ClientSession) -> None:
    """A predicate is re-checked once per log change (arrival or answer), never in a loop."""
    calls = 0

    def three_429s(log: Sequence[RequestRecord]) -> bool:
        nonlocal calls
        calls += 1
        return sum(r.status == 429 for r in log) >= 3

    limit = RateLimit(requests_per_second=1, burst=1)
    async with Simulator(rate_limit=limit, now=FakeClock()) as sim:
        task = asyncio.create_task(statuses(http, sim, 4))
        log = await sim.wait_for(three_429s)
        assert [r.status for r in log] == [200, 429, 429, 429]
        assert calls <= 2 * len(log) + 1
        assert await task == [200, 429, 429, 429]


async def test_wait_for_storage_and_misuse(http: aiohttp.ClientSession) -> None:
    """storage=True watches the storage log; a negative timeout is misuse."""
    async with Simulator() as sim:
        task = asyncio.create_task(call(http, "GET", f"{sim.storage_url}/files/x/a.png"))
        records = await sim.wait_for(storage=True, answered=True)
        assert records[0].status == 404
        await task
        with pytest.raises(ValueError, match="timeout"):
            await sim.wait_for(timeout=-1)


# --- command line ---------------------------------------------------------------------------


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_simulator_arguments(parser, default_clock="scripted")
    return parser.parse_args(argv)


async def test_rate_limit_option_serves_a_limited_simulator(http: aiohttp.ClientSession) -> None:
    """--rate-limit R --rate-burst B builds a simulator answering 429 past the burst."""
    sim = simulator_from_args(_parse("--rate-limit", "0.01", "--rate-burst", "2"))
    async with sim:
        assert await statuses(http, sim, 3) == [200, 200, 429]
        _, _, headers = await call(http, "GET", f"{sim.url}/v1/models")
        assert int(headers["Retry-After"]) >= 99
    with pytest.raises(ValueError, match="rate-limit"):
        simulator_from_args(_parse("--rate-burst", "2"))
    loose = simulator_from_args(_parse("--unknown-models", "accept", "--retry-after", "none"))
    async with loose:
        url = f"{loose.url}/v1/models/made/up"
        assert (await call(http, "POST", url, json={}))[0] == 200


def test_module_help_lists_the_rate_limit_option() -> None:
    """`python -m runcomfy_async.testing --help` documents --rate-limit and exits 0."""
    done = subprocess.run(
        [sys.executable, "-m", "runcomfy_async.testing", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0
    assert "--rate-limit R" in done.stdout
    assert "--unknown-models" in done.stdout

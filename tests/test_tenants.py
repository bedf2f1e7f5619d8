"""client.with_options(...): views over one session, one token per tenant, no leaks."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest

from runcomfy_async import (
    Client,
    NotFoundError,
    PermissionDeniedError,
    ReadTimeoutError,
    RetryPolicy,
    Timeouts,
)
from runcomfy_async.testing import Fault, JobScript, Simulator

from .conftest import FAST_RETRY, GOOD_INPUTS, WAN25

pytestmark = pytest.mark.anyio

OTHER = "other-token"  # the simulator's second account


@pytest.fixture
async def tenants(sim: Simulator) -> AsyncIterator[Client]:
    """A client with the simulator's first account; views add the second."""
    async with Client(token=sim.token, base_url=sim.url, retry=FAST_RETRY) as c:
        yield c


def _auth(sim: Simulator, request_id: str) -> set[str | None]:
    return {r.authorization for r in sim.log if r.request_id == request_id}


async def test_each_view_sends_only_its_own_token(tenants: Client, sim: Simulator) -> None:
    """A view's requests carry its token, the original's carry the original's."""
    view = tenants.with_options(token=OTHER)
    mine = await tenants.submit(WAN25, GOOD_INPUTS)
    theirs = await view.submit(WAN25, GOOD_INPUTS)
    await view.status(theirs.request_id)
    await tenants.status(mine.request_id)
    assert _auth(sim, theirs.request_id) == {f"Bearer {OTHER}"}
    assert _auth(sim, mine.request_id) == {f"Bearer {sim.token}"}
    with pytest.raises(PermissionDeniedError):  # per account: the API agrees
        await tenants.status(theirs.request_id)


async def test_views_share_the_catalog_cache(tenants: Client, sim: Simulator) -> None:
    """One catalog fetch per model per session, made with the asking view's token."""
    view = tenants.with_options(token=OTHER)
    await view.check_inputs(WAN25, GOOD_INPUTS)
    await tenants.check_inputs(WAN25, GOOD_INPUTS)
    await tenants.with_options(include_cost=True).model_info(WAN25)
    fetches = [r for r in sim.log if r.route == "model"]
    assert len(fetches) == 1  # one entry per model per session, whichever view asks
    assert fetches[0].authorization == f"Bearer {OTHER}"


async def test_one_tenants_429_never_slows_another(tenants: Client, sim: Simulator) -> None:
    """A 429 pauses the token that met it, and views sharing that token, no one else."""
    patient = RetryPolicy(initial=0.0, max_retry_after=60.0)
    a = tenants.with_options(retry=patient)
    b = tenants.with_options(token=OTHER)
    job_a = await tenants.submit(WAN25, GOOD_INPUTS)
    job_b = await b.submit(WAN25, GOOD_INPUTS)
    sim.add_fault(Fault("rate_limit", route="status", retry_after=30))
    paused = asyncio.create_task(a.status(job_a.request_id))
    await sim.wait_for(route="status", status=429)
    async with asyncio.timeout(5):
        assert (await b.status(job_b.request_id)).request_id == job_b.request_id
    same_token = tenants.with_options(token=sim.token)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(same_token.status(job_a.request_id), 0.1)
    paused.cancel()
    with pytest.raises(asyncio.CancelledError):
        await paused
    assert sim.count("status", request_id=job_a.request_id) == 1


async def test_each_token_has_its_own_poll_budget(tenants: Client, sim: Simulator) -> None:
    """Views of one token share a poll scheduler; another token gets its own."""
    same = tenants.with_options(include_cost=True)
    other = tenants.with_options(token=OTHER)
    assert same._s.scheduler is tenants._s.scheduler
    assert other._s.scheduler is not tenants._s.scheduler
    assert other.with_options()._s.scheduler is other._s.scheduler
    sim.script_next(JobScript(queue_polls=0, run_polls=0), count=2)
    mine, theirs = await asyncio.gather(
        tenants.run(WAN25, GOOD_INPUTS), other.run(WAN25, GOOD_INPUTS)
    )
    assert mine.output is not None and theirs.output is not None


async def test_views_share_the_pool_and_close_nothing(tenants: Client, sim: Simulator) -> None:
    """A view's aclose() leaves the session open; closing the original closes every view."""
    view = tenants.with_options(token=OTHER)
    await view.status((await view.submit(WAN25, GOOD_INPUTS)).request_id)
    assert view._s.transport._get_session() is tenants._s.transport._get_session()
    async with tenants.with_options(token=OTHER) as short:
        await short.model_info(WAN25)
    with pytest.raises(RuntimeError, match="closed"):
        await short.model_info(WAN25)
    assert "closed" in repr(short) and "open" in repr(view)
    await view.model_info(WAN25)  # still valid
    await tenants.model_info(WAN25)
    await tenants.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await view.model_info(WAN25)
    with pytest.raises(RuntimeError, match="closed"):
        tenants.with_options(token=OTHER)
    assert "closed" in repr(view)


async def test_view_settings_apply_to_the_view_only(tenants: Client, sim: Simulator) -> None:
    """include_cost and timeouts of a view change its requests, not the original's."""
    sim.script_next(JobScript(queue_polls=0, run_polls=0), count=2)
    job = await tenants.submit(WAN25, GOOD_INPUTS)
    await tenants.with_options(include_cost=True).result(job.request_id)
    await tenants.result(job.request_id)
    asked = [r.query.get("include_cost") for r in sim.log if r.route == "result"]
    assert asked == ["true", None]
    sim.add_fault(Fault("slow", route="status", delay=1.0))
    hasty = tenants.with_options(
        timeouts=Timeouts(read=0.05), retry=RetryPolicy(attempts=1, initial=0.0)
    )
    with pytest.raises(ReadTimeoutError):
        await hasty.status(job.request_id)
    assert (await tenants.status(job.request_id)).request_id == job.request_id


async def test_token_never_crosses_into_errors_logs_or_reprs(
    tenants: Client, sim: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    """A view's token is in no error, log line or repr; keyed runs are refused in views."""
    caplog.set_level(logging.DEBUG, logger="runcomfy_async")
    view = tenants.with_options(token=OTHER)
    with pytest.raises(NotFoundError) as info:
        await view.status("no-such-request")
    mine = await tenants.submit(WAN25, GOOD_INPUTS)
    with pytest.raises(PermissionDeniedError) as denied:
        await view.cancel(mine.request_id)
    for text in (str(info.value), repr(info.value), str(denied.value), repr(view), caplog.text):
        assert OTHER not in text and sim.token not in text
    with pytest.raises(ValueError, match="with_options"):
        await view.run(WAN25, GOOD_INPUTS, key="k1")
    with pytest.raises(ValueError, match="empty token"):
        tenants.with_options(token=" ")
    assert all(r.authorization == f"Bearer {sim.token}" for r in sim.log if r.route == "submit")

"""Shared fixtures: a simulator on 127.0.0.1:0 and a client wired to it with no waiting."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from runcomfy_async import Client, PollPolicy, RetryPolicy
from runcomfy_async.testing import JobScript, Simulator

#: Retries at once and ignores Retry-After, so fault tests never sleep.
FAST_RETRY = RetryPolicy(initial=0.0, max_retry_after=0.0)

#: Polls at once, with no budget to speak of: scripted jobs move one step per poll.
FAST_POLL = PollPolicy(
    first_interval=0.0,
    max_interval=0.0,
    jitter=0.0,
    learn=False,
    requests_per_second=1e6,
    burst=1_000_000,
)
#: A job that stays queued for as long as any test runs.
STUCK = JobScript(queue_polls=10**9)

WAN25 = "wan-ai/wan-2-5/image-to-video"
WAN22 = "wan-ai/wan-2-2/image-to-video"
GOOD_INPUTS = {"prompt": "a red fox running through snow", "img_url": "https://example.com/fox.png"}


@pytest.fixture
def anyio_backend() -> str:
    """Pin anyio to asyncio: aiohttp cannot run on trio."""
    return "asyncio"


@pytest.fixture
async def sim(anyio_backend: str) -> AsyncIterator[Simulator]:
    """A scripted-clock simulator: jobs move one step per status poll."""
    async with Simulator() as simulator:
        yield simulator


@pytest.fixture
async def client(sim: Simulator) -> AsyncIterator[Client]:
    """A client pointed at the simulator, retrying without waiting."""
    async with Client(token=sim.token, base_url=sim.url, retry=FAST_RETRY) as c:
        yield c


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """The journal file of the test."""
    return tmp_path / "batch.db"


@pytest.fixture
async def jclient(sim: Simulator, db: Path) -> AsyncIterator[Client]:
    """A client with a journal, polling without waiting."""
    async with Client(
        token=sim.token, base_url=sim.url, retry=FAST_RETRY, polling=FAST_POLL, journal=db
    ) as c:
        yield c

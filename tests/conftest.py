"""Shared fixtures: a simulator on 127.0.0.1:0 and a client wired to it with no waiting."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from runcomfy_async import Client, RetryPolicy
from runcomfy_async.testing import Simulator

#: Retries at once and ignores Retry-After, so fault tests never sleep.
FAST_RETRY = RetryPolicy(initial=0.0, max_retry_after=0.0)

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

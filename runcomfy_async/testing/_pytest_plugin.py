"""Pytest plugin: the ``runcomfy_sim`` fixture, a started scripted-clock :class:`Simulator`.

Registered through the ``pytest11`` entry point, so it is imported by every pytest run in an
environment where the package is installed: it imports nothing heavy until the fixture is used.
The fixture is async and runs under the anyio pytest plugin; aiohttp needs asyncio, so pin
``anyio_backend`` to ``"asyncio"`` (it is requested here so anyio drives the fixture).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from ._simulator import Simulator

__all__ = ["runcomfy_sim"]


@pytest.fixture
async def runcomfy_sim(anyio_backend: str) -> AsyncIterator[Simulator]:
    """Yield a started scripted-clock simulator, closed after the test.

    Tokens: ``sim.token`` (``"test-token"``) and ``"other-token"`` (another account).
    """
    from ._simulator import Simulator  # lazily: keep plugin registration cheap

    if anyio_backend != "asyncio":
        pytest.skip("the RunComfy simulator runs on aiohttp, which needs asyncio")
    async with Simulator() as sim:
        yield sim

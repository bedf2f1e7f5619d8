"""Shared fixtures: every async test runs on asyncio, because aiohttp is asyncio-only."""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    """Pin anyio to asyncio: aiohttp cannot run on trio."""
    return "asyncio"

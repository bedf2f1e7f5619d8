"""What the CLI tests share: running ``main()`` in-process, the environment, output parsers."""

from __future__ import annotations

import json
import os

import anyio
import pytest

from runcomfy_async import TOKEN_ENV
from runcomfy_async.cli import main
from runcomfy_async.cli._args import BASE_URL_ENV
from runcomfy_async.testing import Simulator

__all__ = ["cli", "json_lines", "one_error_line", "point_at"]


def point_at(sim: Simulator, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Point the command at the simulator through the environment, as a user would."""
    monkeypatch.setenv(TOKEN_ENV, sim.token)
    monkeypatch.setenv(BASE_URL_ENV, sim.url)
    return {**os.environ, TOKEN_ENV: sim.token, BASE_URL_ENV: sim.url}


async def cli(*argv: str) -> int:
    """Run ``runcomfy ARGV`` in-process, off the event loop the simulator runs on."""
    return await anyio.to_thread.run_sync(main, list(argv))


def json_lines(text: str) -> list[dict[str, object]]:
    """Parse stdout that must be one JSON object per line."""
    lines = [json.loads(line) for line in text.splitlines()]
    assert all(isinstance(obj, dict) for obj in lines)
    return lines


def one_error_line(stderr: str) -> str:
    """The single ``error:`` line a failure prints, with no traceback anywhere."""
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    return errors[0]

"""Serve a RunComfy simulator from the command line until Ctrl-C.

Example::

    python -m runcomfy_async.testing --port 8188 --clock wall --workers 4 --run-seconds 5 10
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys

from ._options import add_simulator_arguments, simulator_from_args
from ._simulator import Simulator


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m runcomfy_async.testing", description="Serve a RunComfy API simulator."
    )
    add_simulator_arguments(parser, default_clock="scripted")
    return parser


async def _serve(sim: Simulator) -> None:
    async with sim:
        sys.stdout.write(
            f"RunComfy simulator\n"
            f"  API:     {sim.url}\n"
            f"  storage: {sim.storage_url}\n"
            f"  token:   {sim.token}\n"
            "Press Ctrl-C to stop.\n"
        )
        sys.stdout.flush()
        await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> int:
    """Run the simulator until interrupted.

    Args:
        argv: Command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        The process exit status.
    """
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        sim = simulator_from_args(args)
    except ValueError as exc:  # an invalid option combination, e.g. --workers 0
        parser.error(str(exc))
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(sim))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Serve a RunComfy simulator from the command line until Ctrl-C.

Example::

    python -m runcomfy_async.testing --port 8188 --clock wall --workers 4 --run-seconds 5 10
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys

from ._simulator import Simulator


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m runcomfy_async.testing", description="Serve a RunComfy API simulator."
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (loopback)")
    parser.add_argument("--port", type=int, default=0, help="API port (0: any free port)")
    parser.add_argument("--storage-port", type=int, default=0, help="storage origin port")
    parser.add_argument(
        "--clock",
        choices=("scripted", "wall"),
        default="scripted",
        help="scripted: jobs move one step per status poll; wall: real time and workers",
    )
    parser.add_argument("--workers", type=int, default=4, help="wall clock: parallel jobs")
    parser.add_argument(
        "--run-seconds",
        type=float,
        nargs="+",
        default=[5.0, 10.0],
        metavar="S",
        help="wall clock: a run duration, or LO HI for a uniform range",
    )
    parser.add_argument("--time-scale", type=float, default=1.0, help=">1 runs faster")
    parser.add_argument("--failure-rate", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--token", default="test-token", help="the accepted Bearer token")
    return parser


async def _serve(args: argparse.Namespace) -> None:
    spans = args.run_seconds
    run_seconds = float(spans[0]) if len(spans) == 1 else (float(spans[0]), float(spans[1]))
    async with Simulator(
        token=args.token,
        clock=args.clock,
        workers=args.workers,
        run_seconds=run_seconds,
        time_scale=args.time_scale,
        failure_rate=args.failure_rate,
        seed=args.seed,
        host=args.host,
        port=args.port,
        storage_port=args.storage_port,
    ) as sim:
        sys.stdout.write(
            f"RunComfy simulator ({args.clock} clock)\n"
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
    args = _parser().parse_args(argv)
    if len(args.run_seconds) > 2:
        _parser().error("--run-seconds takes one value or two (LO HI)")
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_serve(args))
    except ValueError as exc:  # an invalid option combination, e.g. --workers 0
        _parser().error(str(exc))
    return 0


if __name__ == "__main__":
    sys.exit(main())

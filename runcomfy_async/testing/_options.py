"""The simulator's command-line options, shared by ``python -m runcomfy_async.testing`` and
``runcomfy simulator`` so the two cannot drift apart."""

from __future__ import annotations

import argparse

from ._ratelimit import RateLimit
from ._simulator import Simulator

__all__ = ["add_simulator_arguments", "simulator_from_args"]


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def add_simulator_arguments(parser: argparse.ArgumentParser, *, default_clock: str) -> None:
    """Add the options that configure a served simulator to ``parser``."""
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (loopback)")
    parser.add_argument("--port", type=int, default=0, help="API port (0: any free port)")
    parser.add_argument("--storage-port", type=int, default=0, help="storage origin port")
    parser.add_argument(
        "--clock",
        choices=("scripted", "wall"),
        default=default_clock,
        help=f"wall: jobs take real time and workers; scripted: one step per status poll "
        f"(default: {default_clock})",
    )
    parser.add_argument("--workers", type=int, default=4, help="wall clock: jobs run at once")
    parser.add_argument(
        "--run-seconds",
        type=_positive_float,
        nargs="+",
        default=[5.0, 10.0],
        metavar="S",
        help="wall clock: a run duration S, or LO HI drawn uniformly (default: 5 10)",
    )
    parser.add_argument(
        "--time-scale", type=_positive_float, default=1.0, help="simulated seconds per second"
    )
    parser.add_argument("--failure-rate", type=float, default=0.0, help="share of jobs failing")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--token", default="test-token", help="the accepted Bearer token")
    parser.add_argument(
        "--rate-limit",
        type=_positive_float,
        default=None,
        metavar="R",
        help="answer 429 above R requests per second on the API routes (a token bucket)",
    )
    parser.add_argument(
        "--rate-burst",
        type=int,
        default=None,
        metavar="B",
        help="with --rate-limit: requests allowed at once from a full bucket (default: ceil(R))",
    )
    parser.add_argument(
        "--retry-after",
        choices=("none", "seconds", "http-date"),
        default="seconds",
        help="with --rate-limit: the Retry-After header sent on its 429s (default: seconds)",
    )
    parser.add_argument(
        "--unknown-models",
        choices=("reject", "accept"),
        default="reject",
        help="reject (400001, like RunComfy) or accept model ids the catalog does not list",
    )


def simulator_from_args(args: argparse.Namespace) -> Simulator:
    """Build (not start) the simulator the parsed options describe.

    Raises:
        ValueError: An option is out of range (say ``--workers 0`` or ``--rate-burst 0``),
            ``--run-seconds`` has more than two values, or ``--rate-burst`` comes alone.
    """
    spans = args.run_seconds
    if len(spans) > 2:
        raise ValueError("--run-seconds takes one value or two (LO HI)")
    run_seconds = spans[0] if len(spans) == 1 else (min(spans), max(spans))
    limit = None
    if args.rate_limit is not None:
        wait = None if args.retry_after == "none" else args.retry_after
        limit = RateLimit(
            requests_per_second=args.rate_limit, burst=args.rate_burst, retry_after=wait
        )
    elif args.rate_burst is not None:
        raise ValueError("--rate-burst needs --rate-limit")
    return Simulator(
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
        unknown_models=args.unknown_models,
        rate_limit=limit,
    )

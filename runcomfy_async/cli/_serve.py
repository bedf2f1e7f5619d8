"""``runcomfy simulator``: serve the RunComfy simulator until Ctrl-C."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio

from ..testing import Simulator
from ._args import BASE_URL_ENV, UsageError
from ._exit import ExitCode
from ._render import emit_json, say, warn

if TYPE_CHECKING:
    from ._context import Context

__all__ = ["cmd_simulator"]


async def cmd_simulator(ctx: Context) -> int:
    """Serve a simulator and print how to point the client (or this command) at it.

    Ctrl-C is the way to stop it, so it exits 0 rather than 130 (see ``main``).
    """
    args = ctx.args
    spans = args.run_seconds
    if len(spans) > 2:
        raise UsageError("--run-seconds takes one value or two (LO HI)")
    run_seconds = spans[0] if len(spans) == 1 else (min(spans), max(spans))
    try:
        sim = Simulator(
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
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    async with sim:
        if ctx.json:
            emit_json({"url": sim.url, "storage_url": sim.storage_url, "token": sim.token})
        else:
            say(f"RunComfy simulator ({args.clock} clock) on {sim.url}; in another shell:")
            say(f"  export {BASE_URL_ENV}={sim.url}")
            say(f"  export RUNCOMFY_API_TOKEN={sim.token}")
            warn("Press Ctrl-C to stop.")
        try:
            await anyio.sleep_forever()
        finally:
            warn("simulator stopped")
    return ExitCode.OK  # pragma: no cover - sleep_forever only ends by cancellation

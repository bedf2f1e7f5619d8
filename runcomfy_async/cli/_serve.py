"""``runcomfy simulator``: serve the RunComfy simulator until Ctrl-C."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio

from ..testing._options import simulator_from_args
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
    try:
        sim = simulator_from_args(args)
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

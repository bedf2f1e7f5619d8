"""The ``runcomfy`` command: run RunComfy Model API jobs from the shell.

``main()`` parses the command line, runs one subcommand in ``asyncio.run`` and turns
every outcome into a documented exit code (see ``runcomfy --help``). A
:class:`~runcomfy_async.RunComfyError` is printed as one ``error: ...`` line on stderr,
never a traceback. Ctrl-C cancels the main task (asyncio's own SIGINT handling), so
``run`` can cancel a still-queued job remotely before the command exits 130.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .._errors import RunComfyError
from ._args import UsageError, build_parser
from ._exit import ExitCode, exit_code_for

if TYPE_CHECKING:
    import argparse

__all__ = ["ExitCode", "main"]


def _error(text: str) -> None:
    # One line, whatever the message holds: a traceback-free answer a script can log.
    print(f"error: {' '.join(text.split())}", file=sys.stderr, flush=True)


async def _dispatch(args: argparse.Namespace) -> int:
    from ._context import Context

    ctx = Context(args)
    if args.command == "demo":
        from ._demo import cmd_demo

        return await cmd_demo(ctx)
    if args.command == "simulator":
        from ._serve import cmd_simulator

        return await cmd_simulator(ctx)
    if args.command == "batch":
        from ._batch import cmd_batch

        return await cmd_batch(ctx)
    from ._commands import COMMANDS

    return await COMMANDS[args.command](ctx)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``runcomfy`` command.

    Args:
        argv: The arguments after the program name; ``sys.argv[1:]`` when None.

    Returns:
        The exit code: 0 ok, 1 a job failed or was cancelled, 2 usage error, 3 an API
        or network error, 4 a submit of uncertain outcome, 124 a wait timed out,
        130 interrupted.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits itself: 0 for --help, 2 for mistakes
        return exc.code if isinstance(exc.code, int) else ExitCode.USAGE
    try:
        return asyncio.run(_dispatch(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted", file=sys.stderr, flush=True)
        return ExitCode.INTERRUPTED
    except UsageError as exc:
        _error(str(exc))
        return ExitCode.USAGE
    except RunComfyError as exc:
        _error(str(exc))
        return exit_code_for(exc)
    except OSError as exc:
        # The disk, not the API: an output file exists, a folder is not writable.
        where = f": {exc.filename}" if exc.filename else ""
        _error(f"{exc.strerror or exc}{where}")
        return ExitCode.API_ERROR

"""The ``runcomfy`` command: run RunComfy Model API jobs from the shell.

``main()`` parses the command line, runs one subcommand in ``asyncio.run`` and turns
every outcome into a documented exit code (see ``runcomfy --help``). A
:class:`~runcomfy_async.RunComfyError` is printed as one ``error: ...`` line on stderr,
never a traceback.

An error line says what happened, then what to do, then the route (see ``_explain``);
no line ever shows the API token, even when a server's error text echoes it.

Ctrl-C cancels the command's anyio cancel scope rather than the asyncio task (what
``asyncio.run`` would do by default): anyio's shields only hold against their own
scopes, and ``run`` relies on one to finish a submit already on the wire and cancel
that job remotely before exiting 130. A second Ctrl-C raises ``KeyboardInterrupt`` at
once.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

import anyio

from .._errors import RunComfyError
from ._args import UsageError, build_parser
from ._exit import ExitCode, exit_code_for
from ._explain import explain
from ._render import redact

if TYPE_CHECKING:
    import argparse

    from anyio.abc import TaskStatus

__all__ = ["ExitCode", "main"]


def _error(text: str) -> None:
    # One line, whatever the message holds: a traceback-free answer a script can log.
    print(f"error: {' '.join(redact(text).split())}", file=sys.stderr, flush=True)


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
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for "rerun this" hints
    try:
        code = asyncio.run(_main(args))
    except BaseException as exc:  # noqa: BLE001 -- classified below; the rest re-raised
        return _report_failure(exc)
    if code is None:
        if args.command == "simulator":
            return ExitCode.OK  # Ctrl-C is how a server is stopped
        print("interrupted", file=sys.stderr, flush=True)
        return ExitCode.INTERRUPTED
    return code


def _can_trap_sigint() -> bool:
    # The event loop can own signals only in the main thread, and not on Windows.
    return sys.platform != "win32" and threading.current_thread() is threading.main_thread()


async def _trap_sigint(
    scope: anyio.CancelScope, seen: list[bool], *, task_status: TaskStatus[None]
) -> None:
    with anyio.open_signal_receiver(signal.SIGINT) as signals:
        task_status.started()
        async for _ in signals:
            seen.append(True)
            scope.cancel()
            break
    # Leaving the receiver restores Python's handler: a second Ctrl-C is a KeyboardInterrupt.


async def _main(args: argparse.Namespace) -> int | None:
    """Run the command under a cancel scope that Ctrl-C cancels; None when interrupted."""
    interrupted: list[bool] = []
    code: int | None = None
    async with anyio.create_task_group() as tg:
        if _can_trap_sigint():
            await tg.start(_trap_sigint, tg.cancel_scope, interrupted)
        code = await _dispatch(args)
        tg.cancel_scope.cancel()
    return None if interrupted else code


def _leaf(exc: BaseException) -> BaseException:
    """The exception that matters inside a task group's ExceptionGroup."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        # A real failure explains more than the cancellations it caused in its siblings.
        leaves = [e for e in exc.exceptions if not isinstance(e, asyncio.CancelledError)]
        exc = (leaves or list(exc.exceptions))[0]
    return exc


def _report_failure(exc: BaseException) -> int:
    """Report a failure in one line and return its exit code; re-raise bugs."""
    leaf = _leaf(exc)
    if isinstance(leaf, KeyboardInterrupt | asyncio.CancelledError):
        print("interrupted", file=sys.stderr, flush=True)
        return ExitCode.INTERRUPTED
    if isinstance(leaf, UsageError):
        for line in leaf.details:
            print(redact(line), file=sys.stderr, flush=True)
        _error(str(leaf))
        return ExitCode.USAGE
    if isinstance(leaf, RunComfyError):
        _error(explain(leaf))
        return exit_code_for(leaf)
    if isinstance(leaf, OSError):
        # The disk, not the API: an output file exists, a folder is not writable.
        where = f": {leaf.filename}" if leaf.filename else ""
        hint = ""
        if isinstance(leaf, FileExistsError):
            hint = ". Pass --overwrite to replace it, or choose another folder with -o"
        _error(f"{leaf.strerror or leaf}{where}{hint}")
        return ExitCode.API_ERROR
    raise exc

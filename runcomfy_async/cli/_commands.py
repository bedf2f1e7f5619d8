"""The one-job commands: run, submit, status, result, cancel, watch, download, models.

Each is an ``async def`` that takes the :class:`Context` and returns an exit code; a
failure it cannot classify itself propagates as an exception and is mapped to an exit
code in :func:`runcomfy_async.cli.main`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from typing import TYPE_CHECKING, Final

import anyio

from .._errors import WaitTimeoutError
from .._events import Cancelled, Completed, Failed, Queued
from .._wire import JobState, Status
from ._args import UsageError, parse_inputs
from ._dest import check_destination
from ._download import download_result
from ._exit import ExitCode
from ._render import (
    emit_json,
    event_json,
    event_line,
    result_json,
    say,
    state_word,
    to_json,
    warn,
)

if TYPE_CHECKING:
    from pathlib import Path

    from .._client import Client
    from .._events import Event
    from .._handle import RequestHandle
    from .._run import ExitCancel
    from .._wire import ModelInfo, Result
    from ._context import Context

__all__ = ["COMMANDS", "Command"]

Command = Callable[["Context"], Awaitable[int]]


def _handle(client: Client, request_id: str) -> RequestHandle:
    try:
        return client.handle(request_id)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _show_event(ctx: Context, event: Event) -> None:
    if ctx.json:
        emit_json(event_json(event))
    else:
        warn(event_line(event))


def _exit_for_event(event: Event | None) -> ExitCode:
    if isinstance(event, Failed | Cancelled):
        return ExitCode.JOB_FAILED
    return ExitCode.OK


async def _follow(ctx: Context, handle: RequestHandle) -> Event | None:
    """Show every transition of a job; return the terminal event."""
    last: Event | None = None
    async for event in handle.watch(timeout=ctx.timeout):
        _show_event(ctx, event)
        last = event
    return last


def _report_exit_cancel(ctx: Context, request_id: str, done: ExitCancel) -> None:
    """Say what the cancel-on-exit did for a job abandoned by Ctrl-C or the deadline."""
    answer = done.answer
    if not done.sent:
        if not ctx.json:
            warn(f"request {request_id} is still running; it was not cancelled")
    elif ctx.json:
        if answer is not None:
            emit_json({"event": "cancel_sent", **to_json(answer)})
    elif answer is None:
        warn(f"could not cancel request {request_id}; it may still run")
    elif answer.cancelled:
        warn(f"cancelled queued request {request_id}; nothing is billed for it")
    else:
        warn(
            f"request {request_id} could not be cancelled ({answer.outcome}); "
            f"fetch it later with: runcomfy result {request_id}"
        )


async def _finish(ctx: Context, client: Client, result: Result, out: Path | None) -> None:
    """Print a succeeded job's outputs, or download them when ``--out`` was given."""
    if out is None:
        if not ctx.json:
            for url in result.output.urls if result.output else ():
                say(url)
        return
    paths = await download_result(
        client,
        result,
        out,
        show_progress=not ctx.json,
        overwrite=ctx.args.overwrite,
        keep_both=ctx.args.command == "run",  # paid already: never fail on a taken name
    )
    if ctx.json:
        emit_json({"event": "downloaded", "request_id": result.request_id, "files": paths})
    else:
        for path in paths:
            say(str(path))


async def cmd_run(ctx: Context) -> int:
    """Submit, follow, and print or download the outputs; cancel if abandoned while queued.

    The client's ``run()`` sends the same shielded cancel, but it shows nothing while it
    waits; the command drives ``watch()`` itself so the id and each transition appear as
    they happen (the id matters: a job already running when Ctrl-C comes keeps running).
    """
    args = ctx.args
    inputs = parse_inputs(args.inputs, args.inputs_json)
    if args.out is not None:
        check_destination(args.out)  # before the job is paid for, not after
    async with ctx.client(include_cost=True) as client:
        # A Ctrl-C while the POST is on the wire must not lose the job it may create:
        # finish the submit (bounded by the client's timeouts), then cancel below.
        with anyio.CancelScope(shield=True):
            handle = await client.submit(args.model, inputs)
        if ctx.json:
            emit_json(
                {"event": "submitted", "request_id": handle.request_id, "model_id": args.model}
            )
        else:
            warn(f"submitted {args.model}: request {handle.request_id}")
        last: Event | None = None
        try:
            async for event in handle.watch(timeout=ctx.timeout):
                _show_event(ctx, event)
                last = event
        except (anyio.get_cancelled_exc_class(), WaitTimeoutError) as exc:
            if args.cancel_on_exit:
                # The session's one cancel-on-exit rule, as client.run() applies it.
                done = await client._s.runner.cancel_on_exit(
                    handle.request_id, queued=last is None or isinstance(last, Queued), exc=exc
                )
                _report_exit_cancel(ctx, handle.request_id, done)
            elif not ctx.json:
                warn(f"request {handle.request_id} is still running; it was not cancelled")
            raise
        if isinstance(last, Completed):
            await _finish(ctx, client, last.result, args.out)
        elif isinstance(last, Failed) and not ctx.json:
            warn(f"error: request {handle.request_id} failed: {last.result.error_text}")
        return _exit_for_event(last)


async def cmd_submit(ctx: Context) -> int:
    """Submit one job and print its id."""
    args = ctx.args
    inputs = parse_inputs(args.inputs, args.inputs_json)
    async with ctx.client() as client:
        handle = await client.submit(args.model, inputs)
    if ctx.json:
        emit_json({"request_id": handle.request_id, "model_id": args.model})
    else:
        say(handle.request_id)
    return ExitCode.OK


async def cmd_status(ctx: Context) -> int:
    """Print a job's status once, in the CLI's words (a finished job's outcome included)."""
    async with ctx.client() as client:
        handle = _handle(client, ctx.args.request_id)
        status = await handle.status()
        state = status.state
        if state is JobState.COMPLETED:  # /status cannot tell success from failure
            state = (await handle.result()).status
    word = state_word(state)
    if ctx.json:
        emit_json(
            {
                "request_id": status.request_id,
                "status": word,
                "queue_position": status.queue_position,
                "server_status": status.status,
            }
        )
    else:
        where = f" (position {status.queue_position})" if status.queue_position else ""
        say(f"{word}{where}")
    return ExitCode.OK


def _show_result(ctx: Context, result: Result) -> None:
    if ctx.json:
        emit_json(result_json(result))
        return
    cost = f", ${result.cost:.2f}" if result.cost is not None else ""
    warn(f"request {result.request_id}: {state_word(result.status)}{cost}")
    if result.status is JobState.FAILED:
        warn(f"error: {result.error_text or 'no error given'}")
    for url in result.output.urls if result.output else ():
        say(url)


async def cmd_result(ctx: Context) -> int:
    """Print a job's result once, without waiting."""
    async with ctx.client() as client:
        result = await _handle(client, ctx.args.request_id).result(include_cost=ctx.args.cost)
    _show_result(ctx, result)
    if result.status in (JobState.FAILED, JobState.CANCELLED):
        return ExitCode.JOB_FAILED
    return ExitCode.OK


def _not_cancelled(request_id: str, outcome: str, state: JobState) -> str:
    """Why a cancel did not cancel, and what to do about it, as one sentence."""
    if state in (JobState.SUCCEEDED, JobState.COMPLETED, JobState.FAILED):
        return (
            f"request {request_id} was not cancelled: it has already finished "
            f"({state_word(state)}); `runcomfy result {request_id}` shows it"
        )
    if outcome.lower() == "cancellation_requested":
        return (
            f"request {request_id}: the cancel was requested but not confirmed; "
            f"`runcomfy status {request_id}` tells whether it took"
        )
    return (
        f"request {request_id} was not cancelled ({outcome}): it is already running, and "
        "only queued jobs can be cancelled; it will finish and be billed "
        f"(`runcomfy watch {request_id}` follows it)"
    )


async def cmd_cancel(ctx: Context) -> int:
    """Ask the server to cancel a job; exit 1 when it was not cancelled."""
    async with ctx.client() as client:
        answer = await _handle(client, ctx.args.request_id).cancel()
    state = Status(answer.request_id, answer.status or "").state
    word = "cancelled" if answer.cancelled else state_word(state)
    message = None if answer.cancelled else _not_cancelled(answer.request_id, answer.outcome, state)
    if ctx.json:
        line = {
            "request_id": answer.request_id,
            "cancelled": answer.cancelled,
            "status": word,
            "outcome": answer.outcome,
            "server_status": answer.status,
        }
        emit_json({**line, "message": message} if message else line)
    elif message is None:
        say(f"cancelled {answer.request_id}; nothing is billed for it")
    else:
        warn(f"error: {message}")
    return ExitCode.OK if message is None else ExitCode.JOB_FAILED


async def cmd_watch(ctx: Context) -> int:
    """Follow a job until it ends; never cancels it."""
    async with ctx.client(include_cost=True) as client:
        last = await _follow(ctx, _handle(client, ctx.args.request_id))
    if isinstance(last, Completed) and not ctx.json:
        for url in last.result.output.urls if last.result.output else ():
            say(url)
    return _exit_for_event(last)


async def cmd_download(ctx: Context) -> int:
    """Wait for a job if needed, then download its outputs."""
    async with ctx.client() as client:
        handle = _handle(client, ctx.args.request_id)
        result = await handle.wait(timeout=ctx.timeout)
        await _finish(ctx, client, result, ctx.args.out)
    return ExitCode.OK


def _known_models() -> list[str]:
    from ..models import Wan22ImageToVideo, Wan25ImageToVideo

    return [Wan25ImageToVideo.model_id, Wan22ImageToVideo.model_id]


async def _entries(ctx: Context, client: Client) -> AsyncGenerator[ModelInfo, None]:
    """The entries to show: a catalog search, the ids given, or the built-in models."""
    args = ctx.args
    if args.search is None and args.category is None:
        for model_id in args.model_ids or _known_models():
            yield await client.model_info(model_id)
        return
    async for info in client.list_models(search=args.search, category=args.category):
        # A listing carries no schemas; --schema fetches each entry (cached per session).
        yield await client.model_info(info.model_id) if args.schema else info


def _show_model(ctx: Context, info: ModelInfo) -> None:
    if ctx.json:
        data = to_json(info)
        if not ctx.args.schema:
            data.pop("input_schema", None)
        emit_json(data)
        return
    price = (
        f"${info.base_price_usd:g} per {info.price_unit or 'run'}"
        if info.base_price_usd is not None
        else "price not listed"
    )
    where = f"  [{', '.join(info.categories)}]" if info.categories else ""
    say(f"{info.model_id}  {info.display_name or ''}  ({price}){where}")
    props = info.input_schema.get("properties", {})
    required = set(info.input_schema.get("required", ()))
    if isinstance(props, dict) and props:
        names = [f"{name}{'*' if name in required else ''}" for name in props]
        say(f"  inputs: {', '.join(names)}  (* required)")
    if ctx.args.schema:
        say(json.dumps(info.input_schema, indent=2))


async def cmd_models(ctx: Context) -> int:
    """Print catalog entries: display name, price, categories, optionally the input schema."""
    args = ctx.args
    searching = args.search is not None or args.category is not None
    if searching and args.model_ids:
        raise UsageError("give model ids or --search/--category, not both")
    shown = 0
    async with ctx.client() as client, aclosing(_entries(ctx, client)) as entries:
        async for info in entries:
            _show_model(ctx, info)
            shown += 1
    if searching and not shown:
        asked = " and ".join(
            f"--{name} {value!r}"
            for name, value in (("search", args.search), ("category", args.category))
            if value is not None
        )
        warn(f"no catalog entry matches {asked}")
    return ExitCode.OK


COMMANDS: Final[dict[str, Command]] = {
    "run": cmd_run,
    "submit": cmd_submit,
    "status": cmd_status,
    "result": cmd_result,
    "cancel": cmd_cancel,
    "watch": cmd_watch,
    "download": cmd_download,
    "models": cmd_models,
}

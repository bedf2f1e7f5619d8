"""``runcomfy batch``: JSONL of inputs in, JSONL of results out, resumable with a journal.

Every line is checked before anything is submitted, so a typo on line 900 costs nothing.
Items run through :meth:`Client.map` (bounded concurrency, one bad item never stops the
rest); with ``--journal`` each item is keyed, so a rerun after a crash or Ctrl-C
re-attaches to the jobs already submitted and pays for nothing twice. Result lines are
written in completion order as soon as each item (and its download) is done.
"""

from __future__ import annotations

import shlex
import sys
from contextlib import aclosing
from pathlib import Path
from typing import TYPE_CHECKING, Final

import anyio

from .._errors import (
    JobCancelledError,
    JobFailedError,
    RunComfyError,
    SubmitUncertainError,
    WaitTimeoutError,
)
from ._args import UsageError
from ._batch_lines import BatchItem, check_items, parse_lines, read_items, refusal
from ._exit import ExitCode
from ._render import emit_json, json_line, open_progress, result_json, warn

if TYPE_CHECKING:
    from collections.abc import Callable

    from anyio.abc import ObjectSendStream, TaskGroup
    from anyio.streams.memory import MemoryObjectSendStream

    from .._client import Client
    from .._wire import Result
    from ._context import Context

__all__ = ["BatchItem", "cmd_batch", "read_items"]

_DOWNLOADS_AT_ONCE: Final = 4


def _severity(error: RunComfyError) -> ExitCode:
    if isinstance(error, SubmitUncertainError):
        return ExitCode.SUBMIT_UNCERTAIN
    if isinstance(error, WaitTimeoutError):
        return ExitCode.WAIT_TIMEOUT
    if isinstance(error, JobFailedError | JobCancelledError):
        return ExitCode.JOB_FAILED
    return ExitCode.API_ERROR


_RANK: Final = {
    ExitCode.OK: 0,
    ExitCode.JOB_FAILED: 1,
    ExitCode.WAIT_TIMEOUT: 2,
    ExitCode.API_ERROR: 3,
    ExitCode.SUBMIT_UNCERTAIN: 4,
}


def _error_line(item: BatchItem, error: BaseException) -> dict[str, object]:
    line: dict[str, object] = {
        "key": item.key,
        "line": item.line,
        "ok": False,
        "error": " ".join(str(error).split()),
        "error_type": type(error).__name__,
    }
    if isinstance(error, JobFailedError | JobCancelledError):
        line["status"] = "failed" if isinstance(error, JobFailedError) else "cancelled"
    request_id = getattr(error, "request_id", None)
    if request_id:
        line["request_id"] = request_id
    return line


class _Writer:
    """Result lines to stdout or a file; file writes go through a worker thread."""

    def __init__(self, target: str) -> None:
        self.target = target
        self._file: anyio.AsyncFile[str] | None = None

    async def __aenter__(self) -> _Writer:
        if self.target != "-":
            try:
                self._file = await anyio.open_file(self.target, "a", encoding="utf-8")
            except OSError as exc:
                raise UsageError(f"cannot write {self.target}: {exc.strerror}") from None
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._file is not None:
            await self._file.aclose()

    async def write(self, obj: dict[str, object]) -> None:
        if self._file is None:
            emit_json(obj)
            return
        await self._file.write(json_line(obj))
        await self._file.flush()


async def _read_source(source: str) -> str:
    if source == "-":
        return await anyio.to_thread.run_sync(sys.stdin.read)
    try:
        return await anyio.Path(source).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read {source}: {exc.strerror}") from None


async def _settle(
    client: Client,
    item: BatchItem,
    result: Result,
    download: Path | None,
    limiter: anyio.CapacityLimiter,
) -> dict[str, object]:
    """The result line of a succeeded item, after its download if one was asked for."""
    line: dict[str, object] = {"key": item.key, "line": item.line, "ok": True}
    line.update(result_json(result))
    if download is not None:
        async with limiter:
            files = await client.download(result, download / item.folder(), overwrite=True)
        line["files"] = [str(path) for path in files]
    return line


async def _checked_items(ctx: Context, client: Client) -> list[BatchItem]:
    """Every line parsed and (unless ``--no-check``) its inputs checked; else refuse all."""
    args = ctx.args
    items, problems = parse_lines(await _read_source(args.input_file))
    if not items and not problems:
        raise UsageError(f"{args.input_file} holds no input lines")
    if args.check:
        problems.extend(await check_items(client, args.model, items))
    if problems:
        problems.sort(key=lambda p: p.line)
        if ctx.json:
            for problem in problems:
                emit_json(problem.as_json(args.input_file))
        bad = {p.line for p in problems}
        raise refusal(problems, args.input_file, lines=len(bad | {i.line for i in items}))
    return items


class _Tally:
    """What the summary line says: how many succeeded, how many did not, what it cost."""

    def __init__(self) -> None:
        self.succeeded = 0
        self.failed = 0
        self.cost = 0.0
        self.priced = False

    def add(self, line: dict[str, object]) -> None:
        self.succeeded += bool(line["ok"])
        self.failed += not line["ok"]
        cost = line.get("cost")
        if isinstance(cost, int | float) and not isinstance(cost, bool):
            self.cost += float(cost)
            self.priced = True

    def summary(self, total: int) -> str:
        cost = f"; total cost ${self.cost:.2f}" if self.priced else ""
        return f"{total} items: {self.succeeded} succeeded, {self.failed} did not{cost}"


def _rerun_hint(ctx: Context) -> str:
    """How to pick up an interrupted batch: the exact command line to run again."""
    command = shlex.join(["runcomfy", *getattr(ctx.args, "argv", ())])
    if ctx.args.journal:
        return (
            f"to resume, run the same command again: {command} (the journal re-attaches to "
            "jobs already submitted; nothing finished is paid for twice)"
        )
    return (
        "without --journal a rerun submits every line again; to make reruns resume, add "
        f"--journal PATH: {command} --journal runcomfy-batch.db"
    )


async def cmd_batch(ctx: Context) -> int:
    """Run every line of the input file; write one JSON result line per item."""
    args = ctx.args
    tally = _Tally()
    total = 0
    try:
        async with ctx.client(
            include_cost=True, journal=args.journal, spend_limit_usd=args.max_spend
        ) as client:
            items = await _checked_items(ctx, client)
            total = len(items)
            async with _Writer(args.output) as writer:
                send, receive = anyio.create_memory_object_stream[dict[str, object]](total)
                with open_progress("jobs", total) as progress:

                    def record(line: dict[str, object]) -> None:
                        tally.add(line)
                        word = line.get("status") or ("succeeded" if line["ok"] else "failed")
                        progress.advance(f"{line['key']} {word}")

                    async with anyio.create_task_group() as tg:
                        tg.start_soon(_drain, receive, writer, record)
                        worst = await _feed(ctx, client, items, tg, send)
    except anyio.get_cancelled_exc_class():
        if total:
            done = tally.succeeded + tally.failed
            warn(f"interrupted after {done} of {total} items ({tally.summary(total)})")
            warn(_rerun_hint(ctx))
        raise
    where = "" if args.output == "-" else f"; results in {args.output}"
    resume = ""
    if args.journal and tally.failed:
        resume = (
            f"; a rerun with --journal {args.journal} resumes unfinished items and keeps the"
            " outcome of finished and failed ones (give a failed item a new key to pay again)"
        )
    warn(f"{tally.summary(total)}{where}{resume}")
    if args.max_spend is not None:
        warn(f"spent ${client.spent_usd:.4f} of --max-spend ${args.max_spend:g}")
    if worst is ExitCode.OK and tally.failed:
        worst = ExitCode.API_ERROR  # a download failed after the job succeeded
    return worst


async def _feed(
    ctx: Context,
    client: Client,
    items: list[BatchItem],
    tg: TaskGroup,
    send: MemoryObjectSendStream[dict[str, object]],
) -> ExitCode:
    """Run the items through ``map()``; send each result line, after its download, if any.

    Returns:
        The most serious exit code among the items that did not succeed.
    """
    args = ctx.args
    worst = ExitCode.OK
    limiter = anyio.CapacityLimiter(_DOWNLOADS_AT_ONCE)
    outcomes = client.map(
        args.model,
        [item.inputs for item in items],
        concurrency=args.concurrency,
        keys=[item.key for item in items] if args.journal else None,
        timeout=ctx.timeout,
    )
    async with send, aclosing(outcomes) as stream:
        async for outcome in stream:
            item = items[outcome.index]
            if outcome.result is not None:
                tg.start_soon(
                    _finish_item, client, item, outcome.result, args.download, limiter, send.clone()
                )
                continue
            assert outcome.error is not None  # an outcome holds a result or an error
            code = _severity(outcome.error)
            worst = code if _RANK[code] > _RANK[worst] else worst
            await send.send(_error_line(item, outcome.error))
    return worst


async def _finish_item(
    client: Client,
    item: BatchItem,
    result: Result,
    download: Path | None,
    limiter: anyio.CapacityLimiter,
    send: ObjectSendStream[dict[str, object]],
) -> None:
    async with send:
        try:
            line = await _settle(client, item, result, download, limiter)
        except (RunComfyError, OSError, ValueError) as exc:
            line = _error_line(item, exc)
            line["request_id"] = result.request_id
        await send.send(line)


async def _drain(
    receive: anyio.abc.ObjectReceiveStream[dict[str, object]],
    writer: _Writer,
    record: Callable[[dict[str, object]], None],
) -> None:
    async with receive:
        async for line in receive:
            await writer.write(line)
            record(line)

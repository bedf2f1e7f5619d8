"""Downloads with a byte-level progress bar (rich) or none (plain lines, or ``--json``)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from ._dest import move_beside
from ._render import has_rich, warn

if TYPE_CHECKING:
    from rich.progress import TaskID

    from .._client import Client
    from .._wire import Result

__all__ = ["download_result"]


class _Bars:
    """One rich bar per file, fed by the download's ``progress(url, done, total)`` hook."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TransferSpeedColumn,
        )

        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=Console(stderr=True),
        )
        self._tasks: dict[str, TaskID] = {}

    def __call__(self, url: str, done: int, total: int | None) -> None:
        task = self._tasks.get(url)
        if task is None:
            name = url.split("?", 1)[0].rsplit("/", 1)[-1] or url
            task = self._tasks[url] = self.progress.add_task(name, total=total)
        self.progress.update(task, completed=done, total=total)


async def _fetch(
    client: Client, result: Result, dest: str | Path, *, show_progress: bool, overwrite: bool
) -> list[Path]:
    if not (show_progress and has_rich() and sys.stderr.isatty()):
        return await client.download(result, dest, overwrite=overwrite)
    bars = _Bars()
    with bars.progress:
        return await client.download(result, dest, overwrite=overwrite, progress=bars)


async def download_result(
    client: Client,
    result: Result,
    dest: str | Path,
    *,
    show_progress: bool,
    overwrite: bool = False,
    keep_both: bool = False,
) -> list[Path]:
    """Download every output file of a succeeded job into ``dest``.

    Args:
        client: The session (it never sends the token to storage).
        result: A succeeded result.
        dest: The folder; created when missing.
        show_progress: Draw byte-level bars on stderr (only with rich on a terminal).
        overwrite: Replace files that already exist.
        keep_both: When a name is taken (and not ``overwrite``), keep the existing file
            and save the new one under the next free ``-2``, ``-3`` … name, saying so:
            ``run`` has paid for the job and must not fail on a name.

    Returns:
        The written paths, in output order; empty when the job produced no files.

    Raises:
        FileExistsError: A file exists, and neither ``overwrite`` nor ``keep_both``.
    """
    if result.output is None or not result.output.urls:
        return []
    try:
        return await _fetch(client, result, dest, show_progress=show_progress, overwrite=overwrite)
    except FileExistsError:
        if overwrite or not keep_both:
            raise
    folder = Path(dest)
    staging = folder / f".runcomfy-{result.request_id[:16]}.partial"
    try:
        staged = await _fetch(client, result, staging, show_progress=show_progress, overwrite=True)
        placed = await anyio.to_thread.run_sync(move_beside, staged, folder)
    finally:
        await anyio.to_thread.run_sync(lambda: shutil.rmtree(staging, ignore_errors=True))
    for path, clash in placed:
        if clash is not None:
            warn(
                f"{clash} exists; kept it and saved this output as {path.name} "
                "(--overwrite replaces)"
            )
    return [path for path, _ in placed]

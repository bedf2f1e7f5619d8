"""Downloads with a byte-level progress bar (rich) or none (plain lines, or ``--json``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ._render import has_rich

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


async def download_result(
    client: Client,
    result: Result,
    dest: str | Path,
    *,
    show_progress: bool,
    overwrite: bool = False,
) -> list[Path]:
    """Download every output file of a succeeded job into ``dest``.

    Args:
        client: The session (it never sends the token to storage).
        result: A succeeded result.
        dest: The folder; created when missing.
        show_progress: Draw byte-level bars on stderr (only with rich on a terminal).
        overwrite: Replace files that already exist.

    Returns:
        The written paths, in output order; empty when the job produced no files.

    Raises:
        FileExistsError: A file exists and ``overwrite`` is False.
    """
    if result.output is None or not result.output.urls:
        return []
    if not (show_progress and has_rich() and sys.stderr.isatty()):
        return await client.download(result, dest, overwrite=overwrite)
    bars = _Bars()
    with bars.progress:
        return await client.download(result, dest, overwrite=overwrite, progress=bars)

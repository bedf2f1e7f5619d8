"""The temporary files of downloads: their names, and removing those a killed run left.

Each file streams into a hidden ``.{name}.part-{8 hex}`` in ``dest``. A process killed
mid-download (SIGKILL, a power cut) cannot remove its own, so a later call into the same
folder removes those untouched for :data:`STALE_PART_AGE` — only names of exactly this
pattern, only regular files, never following a symlink.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
from pathlib import Path
from typing import Final

__all__ = ["STALE_PART_AGE", "part_name", "sweep_stale"]

logger: Final = logging.getLogger("runcomfy_async")

STALE_PART_AGE: Final = 24 * 3600.0
"""Seconds a temporary file must lie untouched before a new call removes it as stale. Long:
a live call's finished file waits, unwritten, for its slowest sibling before the rename."""

_PART_NAME: Final = re.compile(r"\..+\.part-[0-9a-f]{8}", re.DOTALL)


def part_name(name: str) -> str:
    """A fresh temporary name for the final file name ``name``."""
    return f".{name}.part-{secrets.token_hex(4)}"


def sweep_stale(directory: Path, now: float) -> None:
    """Remove our own temporary files that an earlier, killed run left behind."""
    removed = 0
    with contextlib.suppress(OSError), os.scandir(directory) as entries:
        for entry in entries:
            if not _PART_NAME.fullmatch(entry.name):
                continue
            with contextlib.suppress(OSError):
                if not entry.is_file(follow_symlinks=False):
                    continue
                if now - entry.stat(follow_symlinks=False).st_mtime < STALE_PART_AGE:
                    continue  # maybe a live download of another call or process
                os.unlink(entry.path)
                removed += 1
    if removed:
        logger.info("removed %d stale temporary download file(s) from %s", removed, directory)

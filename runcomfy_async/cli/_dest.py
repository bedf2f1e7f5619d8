"""``run --out DIR``: the destination is checked before any money is spent.

A job is paid for when it runs, so a folder that cannot take its files must be found
before the submit, not after: ``DIR`` must be a folder (or creatable: its nearest
existing parent a writable folder) and, when it exists, one we can write in (probed by
creating and removing a hidden file, which also catches read-only mounts and ACLs).

Output names are chosen by the server when the job ends, so a clash with a file already
in ``DIR`` cannot be known before the submit. Instead of failing after paying, ``run``
then keeps both: the new file gets the next free ``-2``, ``-3`` … name
(:func:`move_beside`); ``--overwrite`` replaces instead.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ._args import UsageError

__all__ = ["check_destination", "move_beside"]


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path.cwd()  # pragma: no cover -- a relative path's parents end at "."


def check_destination(dest: Path) -> None:
    """Refuse a ``--out`` folder that could not take the outputs; create nothing.

    Raises:
        UsageError: ``dest`` is a file, sits under a file, or cannot be written.
    """
    dest = dest.expanduser()
    if dest.exists():
        if not dest.is_dir():
            raise UsageError(
                f"--out {dest} is a file, not a folder; name a folder (created when missing)"
            )
        try:
            fd, probe = tempfile.mkstemp(prefix=".runcomfy-write-test-", dir=dest)
        except OSError as exc:
            raise UsageError(
                f"cannot write in --out {dest} ({exc.strerror or exc}); nothing was sent. "
                "Choose a folder you can write to"
            ) from None
        os.close(fd)
        os.unlink(probe)
        return
    parent = _nearest_existing(dest.parent)
    if not parent.is_dir():
        raise UsageError(f"cannot create --out {dest}: {parent} is a file; nothing was sent")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(
            f"cannot create --out {dest}: {parent} is not writable; nothing was sent. "
            "Choose a folder you can write to"
        )


def _split(name: str) -> tuple[str, str]:
    stem, dot, suffix = name.rpartition(".")
    if not dot or not stem:
        return name, ""
    return stem, f".{suffix}"


def _place(path: Path, target: Path) -> bool:
    """Move ``path`` to ``target`` unless ``target`` exists; True when moved."""
    try:
        os.link(path, target)
    except FileExistsError:
        return False
    except OSError:  # a file system without hard links: check, then rename
        if target.exists():
            return False
        os.replace(path, target)
        return True
    os.unlink(path)
    return True


def move_beside(staged: list[Path], dest: Path) -> list[tuple[Path, Path | None]]:
    """Move downloaded files into ``dest`` without replacing any file already there.

    A name that is taken gets the next free ``-2``, ``-3`` … suffix; the move is a hard
    link then an unlink, so a file that appears meanwhile is never overwritten.

    Returns:
        Each final path, with the existing file it would have replaced (or None).
    """
    placed: list[tuple[Path, Path | None]] = []
    for path in staged:
        stem, suffix = _split(path.name)
        target, clash, n = dest / path.name, None, 1
        while not _place(path, target):
            clash = clash or target
            n += 1
            target = dest / f"{stem}-{n}{suffix}"
        placed.append((target, clash))
    return placed

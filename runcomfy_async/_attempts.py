"""Attempt tokens: which submit attempt (and which process) wrote a key's journal row.

A token is ``host/pid/random``. Conditional journal writes name it, so a row another
process has rewritten is never touched; and an ``intent`` row can be told apart as a
submit under way (its process is alive: wait for it) or one that may or may not have
happened (its process is gone: uncertain).
"""

from __future__ import annotations

import os
import socket
import uuid
from typing import Final

__all__ = ["LIVE_ATTEMPTS", "attempt_in_progress", "new_attempt"]

LIVE_ATTEMPTS: Final[set[str]] = set()
"""This process's attempts whose submit is under way (its outcome not yet recorded)."""


def new_attempt() -> str:
    """A fresh token naming one submit attempt of a key, and the process making it."""
    return f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex}"


def attempt_in_progress(attempt: str | None) -> bool:
    """Whether the submit that wrote an attempt's intent is still under way.

    In this process: the attempt is live. In another process on this host: that
    process is still running. Anything else (another host, a gone process) is not.
    """
    if attempt is None or attempt.count("/") != 2:
        return False
    host, pid_text, _ = attempt.split("/")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return attempt in LIVE_ATTEMPTS
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: alive, someone else's
        return True
    return True

"""Small, frozen configuration values for the session: timeouts and resource limits.

Kept apart from the policies (retry, polling) because they configure the transport only.
Validation happens at construction, so a bad value fails where it was written.
"""

from __future__ import annotations

from typing import Final

import msgspec

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_LIMITS",
    "DEFAULT_TIMEOUTS",
    "Limits",
    "Timeouts",
]

DEFAULT_BASE_URL: Final = "https://model-api.runcomfy.net"


def _positive(name: str, value: float | None) -> None:
    if value is not None and not value > 0:
        raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")


class Timeouts(msgspec.Struct, frozen=True, kw_only=True):
    """Per-attempt HTTP timeouts, in seconds.

    These bound one HTTP attempt. They are separate from the overall deadline of
    ``wait``/``run``/``watch`` (their ``timeout=`` argument), and aiohttp's default
    300 s total timeout is never in force, so a long download is not cut short.

    Attributes:
        connect: To open a connection (including waiting for a free pooled one).
        read: Between bytes of an answer; also bounds a hanging server.
        download_read: Between bytes of an output download, which may be slow.
    """

    connect: float = 10.0
    read: float = 30.0
    download_read: float = 60.0

    def __post_init__(self) -> None:
        _positive("connect", self.connect)
        _positive("read", self.read)
        _positive("download_read", self.download_read)


class Limits(msgspec.Struct, frozen=True, kw_only=True):
    """Bounds on what one session may hold at once.

    Attributes:
        max_connections: Open connections in the pool (all hosts).
        max_connections_per_host: Open connections to one host.
        max_submits_in_flight: Submit POSTs under way at once; more wait their turn, so
            ``gather`` over 10 000 ``run()`` never fires 10 000 POSTs together.
        keepalive: Seconds an idle pooled connection is kept.
    """

    max_connections: int = 64
    max_connections_per_host: int = 32
    max_submits_in_flight: int = 16
    keepalive: float = 30.0

    def __post_init__(self) -> None:
        for name in ("max_connections", "max_connections_per_host", "max_submits_in_flight"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        _positive("keepalive", self.keepalive)


DEFAULT_TIMEOUTS: Final = Timeouts()
DEFAULT_LIMITS: Final = Limits()

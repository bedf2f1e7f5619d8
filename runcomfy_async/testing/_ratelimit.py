"""Rate-limit mode: a token bucket standing in for an account's request limit.

RunComfy publishes no numbers (``runcomfy-api.md``, "Errors"); this lets tests and benchmarks
pick one. Pure: the bucket reads the clock it is given (the simulator's ``now``, injectable), so
tests drive it without sleeping and benchmarks run it on the wall clock.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from email.utils import formatdate
from typing import Final, Literal, TypeAlias

import msgspec

from ._faults import API_ROUTES

__all__ = ["DEFAULT_LIMITED_ROUTES", "RateLimit", "RetryAfter", "TokenBucket"]

RetryAfter: TypeAlias = Literal["seconds", "http-date"] | float | None
DEFAULT_LIMITED_ROUTES: Final = (
    "submit",
    "status",
    "result",
    "cancel",
    "model",
    "models",
    "categories",
)
"""Every API route but unknown paths."""


class RateLimit(msgspec.Struct, frozen=True, kw_only=True):
    """A token bucket over some API routes: 429 (RunComfy's envelope) above it.

    Attributes:
        requests_per_second: The refill rate R.
        burst: The bucket size B (requests allowed at once from full); default ``ceil(R)``,
            at least 1.
        routes: API route names sharing the bucket; others are never limited.
        retry_after: ``None`` (no header), ``"seconds"`` (whole seconds until a token is back,
            rounded up), ``"http-date"`` (that moment as an HTTP date, from the wall clock) or
            a number sent verbatim.
    """

    requests_per_second: float
    burst: int | None = None
    routes: tuple[str, ...] = DEFAULT_LIMITED_ROUTES
    retry_after: RetryAfter = None

    def __post_init__(self) -> None:
        if not self.requests_per_second > 0:
            raise ValueError("requests_per_second must be > 0")
        if self.burst is not None and self.burst < 1:
            raise ValueError("burst must be >= 1")
        unknown = set(self.routes) - API_ROUTES
        if unknown:
            raise ValueError(f"unknown routes {sorted(unknown)}; use {sorted(API_ROUTES)}")
        wait = self.retry_after
        if isinstance(wait, str) and wait not in ("seconds", "http-date"):
            raise ValueError("retry_after must be 'seconds', 'http-date', a number or None")
        if isinstance(wait, int | float) and (isinstance(wait, bool) or wait < 0):
            raise ValueError("a numeric retry_after must be >= 0")

    @property
    def size(self) -> int:
        """The bucket size: ``burst`` or ``ceil(requests_per_second)``."""
        return self.burst if self.burst is not None else max(1, math.ceil(self.requests_per_second))


class TokenBucket:
    """The live state of one :class:`RateLimit`: starts full, refills continuously."""

    def __init__(self, limit: RateLimit, now: Callable[[], float]) -> None:
        self.limit = limit
        self._now = now
        self._tokens = float(limit.size)
        self._last = now()

    def applies(self, route: str) -> bool:
        """Tell whether requests on ``route`` draw from this bucket."""
        return route in self.limit.routes

    def take(self) -> float | None:
        """Take one token: ``None`` if granted, else the seconds until one is back."""
        t = self._now()
        rate = self.limit.requests_per_second
        self._tokens = min(float(self.limit.size), self._tokens + max(t - self._last, 0.0) * rate)
        self._last = t
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return None
        return (1.0 - self._tokens) / rate

    def retry_after(self, wait: float) -> str | None:
        """The ``Retry-After`` header value for a refusal ``wait`` seconds from a token."""
        mode = self.limit.retry_after
        if mode is None:
            return None
        if mode == "seconds":
            return str(max(1, math.ceil(wait)))
        if mode == "http-date":
            return formatdate(math.ceil(time.time() + wait), usegmt=True)
        value = float(mode)
        return str(int(value)) if value.is_integer() else str(value)

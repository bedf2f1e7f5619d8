"""The value objects that configure a session: timeouts, limits, retries, polling.

Small, frozen, keyword-only (httpx's ``Timeout``/``Limits`` pattern), validated at
construction so a bad value fails where it was written; and where the token and the
base URL come from when they are not passed.
"""

from __future__ import annotations

import math
import os
from typing import Final

import msgspec

__all__ = [
    "BASE_URL_ENV",
    "DEFAULT_BASE_URL",
    "DEFAULT_LIMITS",
    "DEFAULT_POLLING",
    "DEFAULT_START_REQUESTS_PER_SECOND",
    "DEFAULT_RETRY",
    "DEFAULT_TIMEOUTS",
    "TOKEN_ENV",
    "TOKEN_FILE_ENV",
    "TOKEN_HELP",
    "Limits",
    "PollPolicy",
    "RetryPolicy",
    "Timeouts",
    "resolve_base_url",
    "resolve_token",
]

DEFAULT_BASE_URL: Final = "https://model-api.runcomfy.net"
TOKEN_ENV: Final = "RUNCOMFY_API_TOKEN"
#: A file holding the token, as RunComfy's partner nodes read it (``runcomfy-api.md``).
TOKEN_FILE_ENV: Final = "RUNCOMFY_API_TOKEN_FILE"
#: The API origin, as ``runcomfy simulator`` tells users to export it.
BASE_URL_ENV: Final = "RUNCOMFY_BASE_URL"
#: Where a user gets a token, for messages about a missing or refused one.
TOKEN_HELP: Final = (
    'copy it from the "API Token" section of your RunComfy Profile page '
    "(https://www.runcomfy.com/profile)"
)


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
        read: For a status or result poll (any GET of the API), its whole answer, from
            when the poll starts; for a submit or a cancel, between bytes of the answer.
            Either way it bounds a hanging server.
        download_read: Between bytes of an output download, which may be slow.
        download_min_rate: The floor, in bytes per second, under which a download is cut
            (``ReadTimeoutError``, then retried with a resume like any broken transfer);
            measured over ``download_rate_window``. ``None`` disables it. The default,
            1 KiB/s over 10 s, is far below any real link, and ends a server dripping a
            byte a second within about a minute with the default retry policy.
        download_rate_window: Seconds over which the download rate is measured.
        download_deadline: Seconds one file may take in all, retries included; ``None``
            (the default) sets no bound beyond the floor rate.
    """

    connect: float = 10.0
    read: float = 30.0
    download_read: float = 60.0
    download_min_rate: float | None = 1024.0
    download_rate_window: float = 10.0
    download_deadline: float | None = None

    def __post_init__(self) -> None:
        _positive("connect", self.connect)
        _positive("read", self.read)
        _positive("download_read", self.download_read)
        _positive("download_rate_window", self.download_rate_window)
        _positive("download_deadline", self.download_deadline)
        if self.download_min_rate is not None and not self.download_min_rate > 0:
            raise ValueError(
                f"download_min_rate must be a positive number of bytes per second or None, "
                f"got {self.download_min_rate!r}"
            )


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


class RetryPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """How reads (and provably-unsent submits) are retried.

    The wait before retry ``n`` (1-based) is drawn uniformly from
    ``[0, min(max_delay, initial * multiplier ** (n - 1))]`` ("full jitter"), unless the
    server sent ``Retry-After``, which is honoured up to ``max_retry_after``.

    Attributes:
        attempts: Attempts in all, the first included (1 disables retrying).
        initial: The first backoff ceiling, in seconds (0 retries at once: for tests).
        multiplier: How fast the ceiling grows.
        max_delay: The largest ceiling.
        max_retry_after: The longest ``Retry-After`` honoured; longer asks are capped.
        budget: Wall-clock seconds one call may spend on all its attempts and waits.
        jitter: Draw the wait at random below the ceiling (recommended: it keeps
            thousands of clients from retrying in lock-step).
    """

    attempts: int = 5
    initial: float = 0.5
    multiplier: float = 2.0
    max_delay: float = 20.0
    max_retry_after: float = 60.0
    budget: float = 120.0
    jitter: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.attempts, int) or self.attempts < 1:
            raise ValueError(f"attempts must be an integer >= 1, got {self.attempts!r}")
        for name in ("initial", "max_delay", "max_retry_after", "budget"):
            if not getattr(self, name) >= 0:  # also refuses NaN
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)!r}")
        if not 1 <= self.multiplier < math.inf:
            raise ValueError(f"multiplier must be a finite number >= 1, got {self.multiplier!r}")


DEFAULT_RETRY: Final = RetryPolicy()


DEFAULT_START_REQUESTS_PER_SECOND: Final = 50.0
"""The rate a session's request budget starts at before it has learned anything.

RunComfy publishes no rate limit, so the budget has no fixed ceiling: it grows while the
server answers well and backs off on 429 (see :mod:`._poll_budget`). This is only its
first step, small enough that an account allowing a few requests a second sees a handful
of 429s at most before the budget settles.
"""


class PollPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """How status polls are paced, per job and for the whole session.

    The plain schedule waits ``first_interval`` after a state change, then grows by
    ``growth`` up to ``max_interval``; each wait is shortened by a random fraction of at
    most ``jitter`` so thousands of jobs do not poll in lock-step. A new queue position is
    not a transition (a long queue would otherwise be polled at the first interval for
    ever); the learned drain rate spaces those polls instead. With ``learn`` on, a
    model's observed run times replace it while a job runs: one poll every
    ``max_learned_interval`` at most while the job cannot be done yet, then polls through
    the window where it is expected to finish at ``finish_fraction`` of the expected run
    time (within ``min_finish_interval`` and ``finish_interval``); a window so narrow
    that one poll settles it is polled at its end, put off (not shortened) by the jitter.
    Jobs of a model not learned yet that run side by side spread their polls, so the
    batch learns from its first finisher and every other job of it re-plans at once.

    The session's budget (status, result and cancel requests together) has no fixed
    ceiling: it starts at ``start_requests_per_second``, grows while answers are good,
    drops on 429 and honours ``Retry-After``. ``requests_per_second`` is an optional hard
    cap for an account whose limit is known.

    Attributes:
        first_interval: Seconds before the second poll after a transition (the first poll
            of a watch is sent at once).
        growth: Factor the interval grows by at each poll without a transition.
        max_interval: The longest plain interval.
        jitter: The largest fraction (0–1) each wait is shortened by at random.
        requests_per_second: A hard cap on the session's request rate, all jobs together;
            None (the default) lets the budget find the rate the server allows.
        start_requests_per_second: The budget's first rate, before anything is learned.
        burst: The most requests that may go out at once after a quiet spell.
        max_consecutive_failures: Transient poll failures (connection errors, 408, 429,
            5xx, unreadable answers) tolerated in a row before the last one is raised.
        max_retry_after: The longest ``Retry-After`` honoured on a 429; longer asks are
            capped.
        learn: Learn each model's run time and queue drain rate within the session and
            poll around the expected finish.
        finish_interval: The longest wait between polls while a job is inside its
            expected finish window; it bounds the detection latency of such a job.
        finish_fraction: The wait inside the finish window as a fraction of the expected
            run time (0.025: 1.5 s for a minute-long job, 0.05 s for a 2 s one).
        min_finish_interval: The shortest wait inside the finish window.
        max_learned_interval: The longest wait of the learned schedule before that
            window (a job that fails early is noticed within this).
    """

    first_interval: float = 0.1
    growth: float = 2.0
    max_interval: float = 5.0
    jitter: float = 0.1
    requests_per_second: float | None = None
    start_requests_per_second: float = DEFAULT_START_REQUESTS_PER_SECOND
    burst: int = 20
    max_consecutive_failures: int = 20
    max_retry_after: float = 60.0
    learn: bool = True
    finish_interval: float = 1.5
    finish_fraction: float = 0.025
    min_finish_interval: float = 0.05
    max_learned_interval: float = 30.0

    def __post_init__(self) -> None:
        for name in (
            "first_interval",
            "max_interval",
            "max_retry_after",
            "finish_interval",
            "finish_fraction",
            "min_finish_interval",
            "max_learned_interval",
        ):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0 <= value < math.inf):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if not 1 <= self.growth < math.inf:
            raise ValueError(f"growth must be a finite number >= 1, got {self.growth!r}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter must be within [0, 1], got {self.jitter!r}")
        for name in ("requests_per_second", "start_requests_per_second"):
            rate = getattr(self, name)
            if rate is not None and not 0 < rate < math.inf:
                raise ValueError(f"{name} must be positive and finite, got {rate!r}")
        for name in ("burst", "max_consecutive_failures"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


DEFAULT_POLLING: Final = PollPolicy()


def resolve_base_url(base_url: str | None) -> str:
    """The API origin: ``base_url``, else ``$RUNCOMFY_BASE_URL``, else RunComfy's."""
    if base_url is not None:
        return base_url
    return os.environ.get(BASE_URL_ENV, "").strip() or DEFAULT_BASE_URL


def _token_from_file() -> str | None:
    path = os.environ.get(TOKEN_FILE_ENV, "").strip()
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as file:  # a few bytes, read once per session
            return file.read().strip()
    except OSError as exc:
        raise ValueError(f"cannot read ${TOKEN_FILE_ENV} ({path}): {exc.strerror}") from None


def resolve_token(token: str | None) -> str:
    """The token: ``token``, else ``$RUNCOMFY_API_TOKEN``, else ``$RUNCOMFY_API_TOKEN_FILE``'s.

    Raises:
        ValueError: No token anywhere, an unreadable token file, or a token with
            whitespace or control characters inside.
    """
    value = token if token is not None else os.environ.get(TOKEN_ENV) or _token_from_file()
    if not value or not value.strip():
        raise ValueError(
            f"no RunComfy API token: pass Client(token=...), set {TOKEN_ENV}, or name a "
            f"file holding it in {TOKEN_FILE_ENV}; to get a token, {TOKEN_HELP}"
        )
    if value != value.strip() or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        # A newline in a header value is header injection; refuse it outright.
        raise ValueError("the API token contains whitespace or control characters")
    return value

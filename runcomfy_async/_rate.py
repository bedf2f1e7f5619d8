"""The session's request rate: a token bucket, and the rate it is refilled at, *found*.

There is no fixed ceiling the server does not impose. The rate starts at
``start_requests_per_second`` and, while requests wait for it and the answers are good,
grows quickly (doubling about every 20 ms of good answers) until the first 429; then it
drops to what the server was seen to answer well in the last second (never above 0.85 of
the rate it had), and from there creeps up by 0.05 % per good answer, probing again; after
a quiet spell of ``_QUIET`` seconds without a 429 it regains faster (2 % per good answer)
up to 0.85 of the rate its last run of 429s began at, so one bad patch does not leave the
session crawling. The rate never falls below 0.2 requests a second, nor below a tenth of a
user's hard cap. A 429 answering a request sent before the last drop does not drop it again
(it tells nothing new). After a 429 the bucket starts empty, so nothing bursts past what was
just learned; its size is a tenth of a second of the rate (at most ``burst``), and before
the first 429 no more than half of what the server answered well over the last second.
``requests_per_second`` is an optional hard cap (a capped budget starts at the cap, with
``burst`` saved up, as a fixed budget would). :mod:`._poll_budget` hands out its tokens.
"""

from __future__ import annotations

import math
from collections import deque
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from ._config import PollPolicy

__all__ = ["AdaptiveRate", "TokenBucket"]

_EPSILON: Final = 1e-9  # refill rounding must not leave a token at 0.9999999 for ever
_SLOW_START_GAIN: Final = 40.0  # req/s added per good answer before the first 429
_PROBE_GAIN: Final = 0.0005  # relative growth per good answer after it
_DROP: Final = 0.85  # a 429 leaves at most this fraction of the rate
_FLOOR: Final = 0.02  # … and at least this fraction (a bad measurement must not zero it)
_MIN_RATE: Final = 0.2  # requests a second, whatever the server says
_CAP_FLOOR: Final = 0.1  # under a hard cap, the rate never falls below this fraction of it
_QUIET: Final = 2.0  # seconds without a 429 after which the rate recovers faster …
_RECOVERY_GAIN: Final = 0.02  # … by this much per good answer, back towards its ceiling
_CEILING: Final = 0.85  # … which is this fraction of the rate the last episode of 429s began at
_WINDOW: Final = 1.0  # seconds of good answers measured
_BURST_SECONDS: Final = 0.1  # the bucket holds this much of the rate
#: Before the first 429, the bucket holds at most this share of the good answers of the last
#: second: a server's own burst answers a fresh client's first requests well, then refuses.
_UNKNOWN_BURST: Final = 0.5


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up; pure, clock passed in."""

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._tokens = float(burst)
        self._stamp = now

    @property
    def tokens(self) -> float:
        """Tokens saved up at the last refill."""
        return self._tokens

    def _refill(self, now: float) -> None:
        if now > self._stamp:
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now

    def take(self, now: float) -> bool:
        """Take one token if there is one."""
        self._refill(now)
        if self._tokens >= 1.0 - _EPSILON:
            self._tokens = max(0.0, self._tokens - 1.0)
            return True
        return False

    def refund(self) -> None:
        """Give back a token that was taken but not used."""
        self._tokens = min(self.burst, self._tokens + 1.0)

    def reshape(self, rate: float, burst: float, now: float) -> None:
        """Change the rate and size from ``now`` on (tokens saved so far are kept)."""
        self._refill(now)
        self.rate = rate
        self.burst = float(burst)
        self._tokens = min(self._tokens, self.burst)

    def empty(self, now: float) -> None:
        """Spend every saved token: the next one comes at the rate."""
        self._refill(now)
        self._tokens = 0.0

    def wait_time(self, now: float) -> float:
        """Seconds until a token is available (0 if one is)."""
        self._refill(now)
        missing = 1.0 - self._tokens
        return missing / self.rate if missing > _EPSILON else 0.0


class AdaptiveRate:
    """The request rate the server allows, learned from its answers; pure, clock passed in.

    Args:
        policy: Its start rate, optional hard cap and largest burst.
        now: The time it starts, on the caller's clock.
    """

    def __init__(self, policy: PollPolicy, now: float) -> None:
        self.cap = policy.requests_per_second
        self.max_burst = policy.burst
        start = policy.start_requests_per_second if self.cap is None else self.cap
        self.rate = start if self.cap is None else min(start, self.cap)
        self.limited = False  # a 429 has been seen: probe gently from now on
        self.drops = 0
        self._dropped_at = -math.inf
        # The user's cap is their account's limit: a 429 below it cannot drop the rate far.
        self.floor = _MIN_RATE if self.cap is None else max(_MIN_RATE, self.cap * _CAP_FLOOR)
        self._ceiling = 0.0  # the rate a quiet spell recovers to quickly
        self._good: deque[float] = deque()
        burst = self.max_burst if self.cap is not None else self._burst(now)
        self.bucket = TokenBucket(self.rate, burst, now)

    def _burst(self, now: float) -> float:
        if self.cap is not None and self.rate >= self.cap:
            return float(self.max_burst)
        burst = min(float(self.max_burst), self.rate * _BURST_SECONDS)
        if not self.limited:
            # Before the server's limit is known, never more at once than half of what it
            # answered well over the last second: a batch woken together is not a burst it
            # has seen, and those answers may have been its own burst allowance.
            burst = min(burst, self.good_rate(now) * _WINDOW * _UNKNOWN_BURST)
        return max(1.0, burst)

    def _set(self, rate: float, now: float) -> None:
        if self.cap is not None:
            rate = min(rate, self.cap)
        self.rate = max(self.floor, rate)
        self.bucket.reshape(self.rate, self._burst(now), now)

    def good_rate(self, now: float) -> float:
        """Good answers a second over the last second."""
        good = self._good
        while good and good[0] < now - _WINDOW:
            good.popleft()
        return len(good) / _WINDOW

    def answered(self, now: float, *, binding: bool) -> None:
        """A request was answered (not with 429); grow if the budget held requests back."""
        self._good.append(now)
        if not binding or (self.cap is not None and self.rate >= self.cap):
            return
        if self.limited:
            quiet = now - self._dropped_at >= _QUIET and self.rate < self._ceiling
            gain = _RECOVERY_GAIN if quiet else _PROBE_GAIN
            rate = self.rate * (1.0 + gain)
            self._set(min(rate, self._ceiling) if quiet else rate, now)
        else:
            self._set(self.rate + _SLOW_START_GAIN, now)

    def refused(self, sent: float, now: float) -> bool:
        """A request sent at ``sent`` was answered 429; return whether the rate dropped.

        A request sent before the last drop was paced by the old rate, so its 429 says
        nothing new: only the bucket is emptied.
        """
        self.bucket.empty(now)
        if sent < self._dropped_at:
            return False
        good = self.good_rate(now)
        if now - self._dropped_at >= _QUIET:
            # The first 429 after a quiet spell: a new episode, and the rate it began at
            # (not what a run of 429s drove it down to) is what a later quiet spell regains.
            self._ceiling = _CEILING * self.rate
        self.limited = True
        self.drops += 1
        self._dropped_at = now
        self._set(min(self.rate * _DROP, max(self.rate * _FLOOR, 0.9 * good)), now)
        self.bucket.empty(now)
        return True

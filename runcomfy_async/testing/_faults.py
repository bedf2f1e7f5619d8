"""The fault plan: declarative, counted failures injected into the simulator's answers.

A :class:`Fault` matches requests on one route, skips the first ``after`` of them, then fires on
the next ``times`` (or, with ``probability``, on each with that chance while its budget lasts).
Faults are checked in the order they were added; the first one that fires wins. Every random
draw comes from one RNG seeded by the simulator's ``seed``, so a run can be replayed.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable, Iterable
from typing import Final

import msgspec

__all__ = ["API_ROUTES", "VARIANTS", "Fault", "FaultKind", "FaultPlan"]

API_ROUTES: Final = frozenset(
    {"submit", "status", "result", "cancel", "model", "models", "categories", "other"}
)
"""Route names of the API origin; ``"storage"`` names the storage origin."""

_ROUTES: Final = API_ROUTES | {"*", "storage"}


class FaultKind(enum.StrEnum):
    """What a fault does to the request it hits."""

    RATE_LIMIT = "rate_limit"
    """429 envelope, with ``Retry-After`` when ``retry_after`` is set."""
    SERVER_ERROR = "server_error"
    """``status`` (default 503) with an envelope; no work is done."""
    REQUEST_TIMEOUT = "request_timeout"
    """408 envelope."""
    INSUFFICIENT_BALANCE = "insufficient_balance"
    """402 with ``error_code`` 400002."""
    ERROR_IN_200 = "error_in_200"
    """HTTP 200 whose body is an error envelope (default ``error_code`` 500001)."""
    MALFORMED_JSON = "malformed_json"
    """The work is done, then the answer's JSON body is cut in half."""
    UNKNOWN_STATUS = "unknown_status"
    """The work is done, then ``status`` in the answer reads ``"paused"``."""
    HANG = "hang"
    """Never answer; the connection is dropped when the simulator closes."""
    SLOW = "slow"
    """Answer normally after ``delay`` seconds (default 1.0)."""
    RESET_BEFORE = "reset_before"
    """Drop the connection before doing anything (a submit creates no job)."""
    RESET_AFTER = "reset_after"
    """Do the work (a submit creates its job), then drop the connection unanswered."""
    REDIRECT = "redirect"
    """302 (GET) / 307 (other methods) to ``location``, default the same path on storage."""
    TRUNCATE = "truncate"
    """Send headers with the full Content-Length, half the body, then drop the connection."""
    WRONG_ID = "wrong_id"
    """The work is done, then the answer carries another job's ``request_id`` (the newest other
    job, else a fresh id) and, on ``/result``, that job's ``output``."""
    FLAP = "flap"
    """A *finished* job's ``/status`` reads ``in_queue`` (position 1) again. ``variant``:
    ``"alternate"`` (default: every other poll of the finished job, while the budget lasts) or
    ``"stuck"`` (every poll). Polls of unfinished jobs pass untouched and spend no budget."""
    DEEP_ERROR = "deep_error"
    """``/result`` answers ``failed`` with ``error`` nested ``depth`` (default 500) objects
    deep: ``{"error": {"error": ... "The generation failed." ...}}``."""
    ECHO_TOKEN = "echo_token"
    """An error envelope (``status`` default 401, ``error_code`` default 400004) whose
    ``error_message`` and ``detail`` echo the request's ``Authorization`` header; no work."""
    CANCEL_SHAPE = "cancel_shape"
    """The work is done, then the cancel answer is reshaped. ``variant``:
    ``"cancellation_requested"`` (default: ``{"status": "cancelled", "outcome":
    "cancellation_requested"}``), ``"no_outcome"`` (``outcome`` left out) or ``"invalid_json"``
    (a trailing comma, like the documented example)."""
    SUCCESS_WITH_ERROR_CODE = "success_with_error_code"
    """The work is done (a submit creates and bills its job), then the 2xx answer also carries
    ``error_code`` (default 500001) and ``error_message`` beside its usable fields."""
    REDIRECT_PRIVATE = "redirect_private"
    """302 to a private address, never connected to by the simulator: ``location``, or by
    ``variant`` ``"metadata"`` (default: ``http://169.254.169.254/latest/meta-data``) or
    ``"private_ip"`` (``http://10.0.0.1/x``)."""
    REDIRECT_HOP = "redirect_hop"
    """302 to another path on the same storage origin (``/moved/...``, plain-http loopback),
    which then serves the file."""
    DRIP = "drip"
    """Send the body at about ``rate`` bytes per second (default 1000) with its full
    Content-Length; after ``delay`` seconds (default 10) the connection is dropped, so the
    handler always stops by itself."""


VARIANTS: Final[dict[FaultKind, tuple[str, ...]]] = {
    FaultKind.FLAP: ("alternate", "stuck"),
    FaultKind.CANCEL_SHAPE: ("cancellation_requested", "no_outcome", "invalid_json"),
    FaultKind.REDIRECT_PRIVATE: ("metadata", "private_ip"),
}
"""The ``variant`` words each fault kind takes (the first is the default)."""


class _FaultTarget(msgspec.Struct, frozen=True):
    """The positional part of a :class:`Fault`: what to inject and where."""

    kind: FaultKind
    route: str = "*"


class Fault(_FaultTarget, frozen=True, kw_only=True):
    """One entry of the fault plan: ``Fault(kind, route="*", *, times=1, after=0, ...)``.

    Attributes:
        kind: What to inject (a :class:`FaultKind` or its string value).
        route: ``"*"`` (any API route), an API route name (``"submit"``, ``"status"``,
            ``"result"``, ``"cancel"``, ``"model"``, ``"models"``, ``"categories"``,
            ``"other"``) or ``"storage"``.
        times: How many matching requests to hit; ``None`` for no limit.
        after: How many matching requests to let through first.
        probability: If set, hit each eligible request with this chance (seeded) while the
            ``times`` budget lasts (pass ``times=None`` for a fault that never runs out).
        retry_after: ``rate_limit``: seconds (a number) or an HTTP date (a string, verbatim).
        status: HTTP status for ``server_error`` (default 503) and ``redirect``.
        delay: Seconds to wait for ``slow`` (default 1.0).
        error_code: Overrides the envelope's ``error_code`` (``error_in_200``,
            ``success_with_error_code``, ``echo_token`` and the refusals).
        location: ``redirect`` / ``redirect_private`` target.
        variant: ``flap``: ``"alternate"`` / ``"stuck"``; ``cancel_shape``:
            ``"cancellation_requested"`` / ``"no_outcome"`` / ``"invalid_json"``;
            ``redirect_private``: ``"metadata"`` / ``"private_ip"``.
        rate: ``drip``: bytes per second (default 1000).
        depth: ``deep_error``: nesting depth (default 500).
    """

    times: int | None = 1
    after: int = 0
    probability: float | None = None
    retry_after: float | str | None = None
    status: int | None = None
    delay: float | None = None
    error_code: int | None = None
    location: str | None = None
    variant: str | None = None
    rate: float | None = None
    depth: int | None = None

    def __post_init__(self) -> None:
        msgspec.structs.force_setattr(self, "kind", FaultKind(self.kind))
        if self.route not in _ROUTES:
            raise ValueError(f"unknown route {self.route!r}; use one of {sorted(_ROUTES)}")
        if (self.times is not None and self.times < 0) or self.after < 0:
            raise ValueError("times and after must be >= 0")
        if self.probability is not None and not 0.0 <= self.probability <= 1.0:
            raise ValueError("probability must be within [0, 1]")
        if self.delay is not None and self.delay < 0:
            raise ValueError("delay must be >= 0")
        if self.rate is not None and not self.rate > 0:
            raise ValueError("rate must be > 0")
        if self.depth is not None and self.depth < 1:
            raise ValueError("depth must be >= 1")
        allowed = VARIANTS.get(self.kind)
        if self.variant is not None and (allowed is None or self.variant not in allowed):
            raise ValueError(f"{self.kind} takes no variant {self.variant!r}; allowed: {allowed}")


class _Entry:
    __slots__ = ("fault", "fired", "seen")

    def __init__(self, fault: Fault) -> None:
        self.fault = fault
        self.seen = 0
        self.fired = 0


class FaultPlan:
    """The ordered faults of one simulator, with their counters."""

    def __init__(self, faults: Iterable[Fault] = (), *, seed: int = 0) -> None:
        self._entries: list[_Entry] = []
        self._rng = random.Random(f"runcomfy-sim-faults-{seed}")
        self.injected: dict[str, int] = {}
        for fault in faults:
            self.add(fault)

    def add(self, fault: Fault) -> None:
        """Append a fault; it is checked after those added before it."""
        if not isinstance(fault, Fault):
            raise TypeError(f"expected a Fault, got {type(fault).__name__}")
        self._entries.append(_Entry(fault))

    def match(self, route: str, applies: Callable[[Fault], bool] | None = None) -> Fault | None:
        """Count one request on ``route`` and return the fault to inject, if any.

        Every fault whose route matches counts the request (so ``after`` means "let this many
        requests on my route through"), even when an earlier fault wins it.

        Args:
            route: The request's route name.
            applies: Asked last, only of a fault about to fire: ``False`` lets the request
                through without spending the fault's budget (``flap`` on an unfinished job).
        """
        winner: Fault | None = None
        for entry in self._entries:
            fault = entry.fault
            if fault.route != route and not (fault.route == "*" and route in API_ROUTES):
                continue
            index = entry.seen
            entry.seen += 1
            if winner is not None or index < fault.after:
                continue
            if fault.times is not None and entry.fired >= fault.times:
                continue
            if fault.probability is not None and self._rng.random() >= fault.probability:
                continue
            if applies is not None and not applies(fault):
                continue
            entry.fired += 1
            winner = fault
        if winner is not None:
            self.injected[winner.kind.value] = self.injected.get(winner.kind.value, 0) + 1
        return winner

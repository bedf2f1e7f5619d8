"""The simulator's request log and counters: what tests assert on.

Every request gets a :class:`RequestRecord` when it arrives (so the log stays in arrival order,
hanging requests included); the record is replaced by its final form when the answer is known.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence

import msgspec

__all__ = ["RequestLog", "RequestRecord", "SimStats"]


class RequestRecord(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One request as the simulator saw it.

    Not tracked by the cycle collector (``gc=False``: a record holds no cycles), so a log of
    tens of thousands of records does not slow every garbage collection down.

    Attributes:
        method: The HTTP method.
        route: ``"submit"``, ``"status"``, ``"result"``, ``"cancel"``, ``"model"``, ``"models"``,
            ``"other"`` on the API origin; ``"storage"`` on the storage origin.
        path: The request path.
        query: The query parameters (last value wins).
        request_id: The job the request was about (for a submit: the job it created).
        model_id: The model named in the path, if any.
        authorization: The raw ``Authorization`` header, or ``None`` when absent.
        headers: All request headers (case-insensitive mapping).
        status: The HTTP status answered; ``None`` while pending, or when the connection was
            dropped or never answered.
        fault: The :class:`FaultKind` value injected, if any.
        t: ``time.monotonic()`` at arrival.
        body: The raw body of a POST, else ``None``.
        rate_limited: Whether rate-limit mode refused it (status 429, no work, no fault).
    """

    method: str
    route: str
    path: str
    query: dict[str, str]
    request_id: str | None
    model_id: str | None
    authorization: str | None
    headers: Mapping[str, str]
    status: int | None
    fault: str | None
    t: float
    body: bytes | None
    rate_limited: bool = False


class SimStats(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot of the simulator's counters.

    Attributes:
        requests_by_route: API requests per route name.
        jobs_created: Jobs ever created (a submit that was reset after the work counts).
        max_concurrent_connections: Peak of open API connections, sampled at each request.
        max_in_flight: Peak of API requests being handled at once (hung ones included).
        faults_injected: Injections per :class:`FaultKind` value (API and storage).
        storage_requests: Requests received by the storage origin.
        rate_limited: API requests refused with 429 by rate-limit mode (not by a fault).
    """

    requests_by_route: dict[str, int]
    jobs_created: int
    max_concurrent_connections: int
    max_in_flight: int
    faults_injected: dict[str, int]
    storage_requests: int
    rate_limited: int = 0


class RequestLog:
    """An append-only, arrival-ordered list of records plus in-flight and per-route counters."""

    def __init__(self) -> None:
        self.records: list[RequestRecord] = []
        self.by_route: dict[str, int] = {}
        self.in_flight = 0
        self.max_in_flight = 0
        self.max_connections = 0
        self._changed = asyncio.Event()

    def _notify(self) -> None:
        # A fresh event per change: every waiter wakes once, then waits on the new one.
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def wait_until(self, predicate: Callable[[Sequence[RequestRecord]], bool]) -> None:
        """Return once ``predicate(records)`` holds, re-checked on every arrival and answer."""
        while not predicate(self.records):
            await self._changed.wait()

    def begin(self, record: RequestRecord, connections: int = 0) -> int:
        """Log an arriving request and return its index for :meth:`end`."""
        self.records.append(record)
        self.by_route[record.route] = self.by_route.get(record.route, 0) + 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self.max_connections = max(self.max_connections, connections)
        self._notify()
        return len(self.records) - 1

    def end(
        self,
        index: int,
        *,
        status: int | None,
        fault: str | None,
        request_id: str | None,
        rate_limited: bool = False,
    ) -> None:
        """Complete the record at ``index`` with what was answered."""
        self.in_flight -= 1
        old = self.records[index]
        self.records[index] = msgspec.structs.replace(
            old,
            status=status,
            fault=fault,
            request_id=request_id or old.request_id,
            rate_limited=rate_limited,
        )
        self._notify()

    def count(
        self, route: str | None = None, *, request_id: str | None = None, method: str | None = None
    ) -> int:
        """Count logged requests matching every given filter."""
        return len(self.select(route, request_id=request_id, method=method))

    def select(
        self,
        route: str | None = None,
        *,
        request_id: str | None = None,
        method: str | None = None,
        status: int | None = None,
        answered: bool = False,
    ) -> list[RequestRecord]:
        """Return the logged requests matching every given filter, in arrival order."""
        verb = None if method is None else method.upper()
        return [
            rec
            for rec in self.records
            if (route is None or rec.route == route)
            and (request_id is None or rec.request_id == request_id)
            and (verb is None or rec.method == verb)
            and (status is None or rec.status == status)
            and (not answered or rec.status is not None)
        ]

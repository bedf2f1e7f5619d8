"""A handle on one submitted job: its id, its model, and the calls about it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._client import Client
    from ._events import Event
    from ._wire import CancelResult, Result, Status

__all__ = ["RequestHandle"]


class RequestHandle:
    """One submitted job: its id, its model, and the calls about it.

    A handle holds no state but the id, so it can be rebuilt at any time with
    :meth:`Client.handle` (say, in a web server that stored the id). ``await handle``
    is ``await handle.wait()``.
    """

    __slots__ = ("_client", "model_id", "request_id")

    def __init__(self, client: Client, request_id: str, model_id: str | None = None) -> None:
        self._client = client
        self.request_id = request_id
        self.model_id = model_id

    def __repr__(self) -> str:
        return f"RequestHandle(request_id={self.request_id!r}, model_id={self.model_id!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RequestHandle):
            return NotImplemented
        return (self.request_id, self.model_id) == (other.request_id, other.model_id)

    def __hash__(self) -> int:
        return hash((self.request_id, self.model_id))

    async def status(self) -> Status:
        """Fetch the job's status once. See :meth:`Client.status`."""
        return await self._client.status(self.request_id)

    async def result(self, *, include_cost: bool | None = None) -> Result:
        """Fetch the job's result once, without waiting. See :meth:`Client.result`."""
        return await self._client.result(self.request_id, include_cost=include_cost)

    async def cancel(self) -> CancelResult:
        """Ask the server to cancel the job. See :meth:`Client.cancel`."""
        return await self._client.cancel(self.request_id)

    def watch(self, *, timeout: float | None = None) -> AsyncIterator[Event]:
        """Yield the job's transitions. See :meth:`Client.watch`."""
        return self._client.watch(self.request_id, timeout=timeout, model_id=self.model_id)

    async def wait(self, *, timeout: float | None = None) -> Result:
        """Wait for the job's result. See :meth:`Client.wait`."""
        return await self._client.wait(self.request_id, timeout=timeout, model_id=self.model_id)

    def __await__(self) -> Generator[Any, None, Result]:
        return self.wait().__await__()

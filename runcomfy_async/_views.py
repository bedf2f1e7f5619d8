"""A client's lifecycle and views: ``aclose``, ``with_options(...)``, ``spent_usd``.

A view is another :class:`~runcomfy_async.Client` over the same
:class:`~runcomfy_async._session.Session` parts (see :meth:`Session.view` for what is
shared and what belongs to a token). Its ``aclose()`` only closes the view; closing the
original closes every view with it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Self

    from ._config import RetryPolicy, Timeouts
    from ._session import Session

__all__ = ["ClientViews"]


class ClientViews:
    """The part of :class:`~runcomfy_async.Client` that opens, closes and makes views."""

    _s: Session
    _closed: bool

    @property
    def base_url(self) -> str:
        """The API origin calls go to."""
        return self._s.transport.base_url

    def __repr__(self) -> str:
        closed = self._closed or (self._s.root is not None and self._s.root.closed)
        return f"<Client base_url={self.base_url!r} {'closed' if closed else 'open'}>"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool and the journal; idempotent. A view closes only itself."""
        if self._closed:
            return
        self._closed = True
        await self._s.aclose()

    def _check_open(self) -> None:
        root = self._s.root
        if self._closed or (root is not None and root.closed):
            raise RuntimeError("the client is closed")

    @property
    def spent_usd(self) -> float:
        """USD spent by this session (all its views): reported costs plus reservations.

        Under ``spend_limit_usd`` every submitted job counts, by its estimate until its
        ``cost`` is reported; without a limit, only the costs results report.
        """
        return self._s.ledger.spent_usd

    def with_options(
        self,
        *,
        token: str | None = None,
        include_cost: bool | None = None,
        timeouts: Timeouts | None = None,
        retry: RetryPolicy | None = None,
    ) -> Self:
        """A view over the same session (pool, catalog cache, spend) with other settings.

        For per-request credentials, say one end user's API key in a web server:
        ``client.with_options(token=user_key)``. Each token has its own poll budget and
        rate-limit state, and is sent only on its own view's requests. Settings left
        None are this client's. The view stays valid until the original is closed; its
        own ``aclose()`` closes nothing shared. Keyed runs go through the original.

        Raises:
            ValueError: An empty token.
            RuntimeError: The client is closed.
        """
        self._check_open()
        if token is not None and not token.strip():
            raise ValueError("with_options(token=...) got an empty token")
        view = object.__new__(type(self))
        view._s = self._s.view(
            token=None if token is None else token.strip(),
            include_cost=include_cost,
            timeouts=timeouts,
            retry=retry,
        )
        view._closed = False
        return view

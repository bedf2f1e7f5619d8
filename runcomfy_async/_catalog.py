"""The model catalog, as one session sees it: entries fetched once, listings, checks.

An entry (price, input schema) changes rarely, so a session fetches each model's entry
once and keeps it; a failed fetch is not kept, so the next call asks again. A listing
pages through ``GET /v1/models`` by itself (``limit``/``offset`` until ``total``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Final

from ._wire import check_model_id
from .inputs import check_inputs

if TYPE_CHECKING:
    from ._routes import Routes
    from ._wire import ModelInfo

__all__ = ["DEFAULT_PAGE_SIZE", "Catalog"]

#: Entries asked for per page of a listing.
DEFAULT_PAGE_SIZE: Final = 50
# A server that ignores offset or never reports a total must not page forever.
_MAX_PAGES: Final = 1000


class Catalog:
    """One session's cache of catalog entries.

    Args:
        routes: The session's routes.
        page_size: Entries asked for per page of a listing.
        shared_with: Another catalog whose cache this one shares (a view's).
    """

    def __init__(
        self,
        routes: Routes,
        *,
        page_size: int = DEFAULT_PAGE_SIZE,
        shared_with: Catalog | None = None,
    ) -> None:
        self._routes = routes
        # A view's catalog fetches with the view's token into the session's one cache.
        self._entries: dict[str, ModelInfo] = {} if shared_with is None else shared_with._entries
        self._page_size = page_size

    async def info(self, model_id: str) -> ModelInfo:
        """Return the model's entry, fetched on first use.

        Raises:
            ValueError: A malformed model id.
            APIStatusError: The catalog refused (400001 for an unknown model).
            TransportError: No answer, after retries.
        """
        model_id = check_model_id(model_id)
        entry = self._entries.get(model_id)
        if entry is None:
            entry = self._entries[model_id] = await self._routes.model_info(model_id)
        return entry

    async def check_inputs(self, model_id: str, inputs: Mapping[str, object]) -> None:
        """Check ``inputs`` against the model's catalog schema, locally.

        Raises:
            InputValidationError: A value breaks the schema.
            APIStatusError: The catalog refused.
            TransportError: No answer, after retries.
        """
        await check_inputs(inputs, await self.info(model_id))

    async def list_models(
        self, *, search: str | None = None, category: str | None = None
    ) -> AsyncIterator[ModelInfo]:
        """Yield every catalog entry matching ``search`` and ``category``, page by page.

        Raises:
            APIStatusError: The catalog refused.
            TransportError: No answer, after retries.
        """
        query = {k: v for k, v in (("search", search), ("category", category)) if v}
        seen: set[str] = set()
        offset = 0
        for _ in range(_MAX_PAGES):
            params = {**query, "limit": str(self._page_size), "offset": str(offset)}
            page = await self._routes.list_models(params)
            fresh = [m for m in page.models if m.model_id not in seen]
            for entry in fresh:
                seen.add(entry.model_id)
                yield entry
            offset += len(page.models)
            if not fresh or (page.total is not None and offset >= page.total):
                return

"""The model catalog, as one session sees it: entries fetched once, and checks on them.

An entry (price, input schema) changes rarely, so a session fetches each model's entry
once and keeps it; a failed fetch is not kept, so the next call asks again.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from ._wire import check_model_id
from .inputs import check_inputs

if TYPE_CHECKING:
    from ._routes import Routes
    from ._wire import ModelInfo

__all__ = ["Catalog"]


class Catalog:
    """One session's cache of catalog entries.

    Args:
        routes: The session's routes.
    """

    def __init__(self, routes: Routes) -> None:
        self._routes = routes
        self._entries: dict[str, ModelInfo] = {}

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

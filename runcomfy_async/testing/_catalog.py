"""One simulator's model catalog: the seed entries plus the models a test registers.

Answers ``GET /v1/models`` (search over id and display name, case-insensitive; ``category`` and
``kind`` filters; paged), ``GET /v1/models/categories`` and ``GET /v1/models/{model_id}``, and
validates submits against each entry's schema. Pure: no aiohttp.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ._schemas import SEED_MODELS
from ._spec import ModelSpec
from ._validate import Violation, check_inputs

__all__ = ["Catalog"]


class Catalog:
    """The models one simulator knows, in listing order (seeds first, then registrations)."""

    def __init__(self, models: Iterable[ModelSpec] = ()) -> None:
        self._specs: dict[str, ModelSpec] = {spec.model_id: spec for spec in SEED_MODELS}
        for spec in models:
            self.add(spec)

    def add(self, spec: ModelSpec) -> None:
        """Add ``spec``, replacing any entry with the same id (a seed one included).

        Raises:
            TypeError: If ``spec`` is not a :class:`ModelSpec`.
        """
        if not isinstance(spec, ModelSpec):
            raise TypeError(f"expected a ModelSpec, got {type(spec).__name__}")
        self._specs[spec.model_id] = spec

    def get(self, model_id: str) -> ModelSpec | None:
        """Return the spec of ``model_id``, or ``None`` if unknown."""
        return self._specs.get(model_id)

    def __contains__(self, model_id: object) -> bool:
        return model_id in self._specs

    def __len__(self) -> int:
        return len(self._specs)

    def validate(self, model_id: str, inputs: Mapping[str, object]) -> list[Violation] | None:
        """Check inputs against the model's schema.

        Returns:
            ``None`` if the model is unknown or has no schema (inputs stay opaque), else every
            violation found (empty if valid).
        """
        spec = self._specs.get(model_id)
        if spec is None or spec.input_schema is None:
            return None
        return check_inputs(spec.input_schema, inputs)

    def search(
        self,
        *,
        search: str = "",
        category: str = "",
        kind: str = "",
        include_schema: bool = False,
        limit: int = 20,
        offset: int = 0,
    ) -> tuple[list[dict[str, Any]], int]:
        """Return one page of entries matching every given filter, and how many matched."""
        needle = search.casefold()
        hits = [
            spec
            for spec in self._specs.values()
            if (
                needle in spec.model_id.casefold()
                or needle in (spec.display_name or spec.model_id).casefold()
            )
            and (not category or category.casefold() in map(str.casefold, spec.categories))
            and (not kind or kind == spec.kind)
        ]
        page = hits[offset : offset + limit]
        return [spec.entry(include_schema=include_schema) for spec in page], len(hits)

    def categories(self) -> list[str]:
        """Every category of every entry, sorted, each once."""
        return sorted({name for spec in self._specs.values() for name in spec.categories})

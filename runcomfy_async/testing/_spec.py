"""One catalog entry of the simulator: :class:`ModelSpec`, its JSON entry, outputs and price.

Pure data and arithmetic; the catalog (:mod:`._catalog`) holds the specs of one simulator.
Pricing follows what RunComfy's partner nodes estimate before a submit (``runcomfy-api.md``,
"Cost"): ``base_price_usd`` x seconds for ``price_unit="second"`` (video, audio), x outputs for
``price_unit="output"`` (images).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any, Final, Literal, TypeAlias

import msgspec

__all__ = ["DEFAULT_COST_USD", "ModelSpec", "PriceUnit"]

PriceUnit: TypeAlias = Literal["second", "output"]
DEFAULT_COST_USD: Final = 0.25
"""The ``cost`` of a job on a model the catalog does not know (``unknown_models="accept"``)."""

_MAX_COUNT: Final = 64  # a generous cap on outputs per job, so a typo cannot serve a million


class ModelSpec(msgspec.Struct, frozen=True, kw_only=True):
    """A model the simulator knows: its catalog entry, input schema, outputs and price.

    Attributes:
        model_id: The id, several path segments (``"acme/flux-lite/text-to-image"``).
        display_name: The human name; default: the id.
        input_schema: A JSON schema in RunComfy's vocabulary (validated on submit, 422 on
            violations); ``None`` keeps the inputs opaque.
        output: The default ``output`` of its succeeded jobs, as :class:`JobScript.output`:
            ``"object"``, ``"url"``, ``"list"`` or a JSON template (``"{url}"``, ``"{urls}"``…).
        output_files: File names its jobs serve on storage (for one output).
        count_input: An input whose value (an integer, or a list's length) says how many
            outputs a job makes; files are then numbered (``image_1.png``, ``image_2.png``…).
        duration_input: The input holding a job's length in seconds (``price_unit="second"``).
        default_seconds: Seconds billed when neither the input nor its schema default says.
        base_price_usd: The price per ``price_unit``.
        price_unit: ``"second"`` (video, audio) or ``"output"`` (images).
        pricing_note: Free text shown in the catalog.
        categories: Catalog categories (``"video"``, ``"text-to-image"``…).
        kind: The catalog ``kind`` (RunComfy lists ``"model"``).
    """

    model_id: str
    display_name: str | None = None
    input_schema: dict[str, Any] | None = None
    output: object = "object"
    output_files: tuple[str, ...] = ("output.mp4",)
    count_input: str | None = None
    duration_input: str | None = "duration"
    default_seconds: float = 5.0
    base_price_usd: float = 0.05
    price_unit: PriceUnit = "second"
    pricing_note: str = ""
    categories: tuple[str, ...] = ()
    kind: str = "model"

    def __post_init__(self) -> None:
        if not self.model_id or self.model_id.startswith("/") or "//" in self.model_id:
            raise ValueError(f"not a model id: {self.model_id!r}")
        if self.price_unit not in ("second", "output"):
            raise ValueError(f"price_unit must be 'second' or 'output', not {self.price_unit!r}")
        if self.base_price_usd < 0 or self.default_seconds < 0:
            raise ValueError("base_price_usd and default_seconds must be >= 0")
        schema = self.input_schema
        if schema is not None and not isinstance(schema.get("properties", {}), dict):
            raise ValueError("input_schema['properties'] must be an object")

    def entry(self, *, include_schema: bool = True) -> dict[str, Any]:
        """Return the catalog entry ``GET /v1/models/{model_id}`` answers."""
        body: dict[str, Any] = {
            "model_id": self.model_id,
            "display_name": self.display_name or self.model_id,
            "kind": self.kind,
            "categories": list(self.categories),
            "base_price_usd": self.base_price_usd,
            "price_unit": self.price_unit,
            "pricing_note": self.pricing_note,
        }
        if include_schema:
            body["input_schema"] = self.input_schema or {"type": "object", "properties": {}}
        return body

    def _input(self, name: str | None, inputs: Mapping[str, object]) -> object:
        if name is None:
            return None
        if name in inputs:
            return inputs[name]
        props = (self.input_schema or {}).get("properties", {})
        spec = props.get(name)
        return spec.get("default") if isinstance(spec, dict) else None

    def count(self, inputs: Mapping[str, object]) -> int:
        """How many outputs a job with these inputs makes (1 without a ``count_input``)."""
        value = self._input(self.count_input, inputs)
        if isinstance(value, list):
            value = len(value)
        if isinstance(value, bool) or not isinstance(value, int):
            return 1
        return max(1, min(value, _MAX_COUNT))

    def files(self, inputs: Mapping[str, object]) -> tuple[str, ...]:
        """The storage file names of a job with these inputs."""
        if self.count_input is None:
            return self.output_files
        names = []
        for index in range(1, self.count(inputs) + 1):
            for name in self.output_files:
                path = PurePosixPath(name)
                names.append(str(path.with_name(f"{path.stem}_{index}{path.suffix}")))
        return tuple(names)

    def cost(self, inputs: Mapping[str, object]) -> float:
        """The USD ``cost`` of a succeeded job with these inputs, by the entry's pricing."""
        if self.price_unit == "output":
            units = float(self.count(inputs))
        else:
            value = self._input(self.duration_input, inputs)
            units = self.default_seconds
            if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
                units = float(value)
        return round(self.base_price_usd * units, 6)

"""What the caller passed → the model id and the JSON body to POST, checked locally.

``submit(model_id, inputs)`` and ``submit(typed_input)`` meet here, so every entry point
(``submit``, ``run``, keyed runs, ``map``, the CLI) applies the same checks before money
is spent: a plain dict for a model with built-in rules (the seed models) gets exactly the
typed class's checks; with a catalog, any other model's dict is checked against its
catalog schema (fetched once per model per session).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from ._wire import check_model_id
from .inputs import prepare_mapping
from .models import TYPED_MODELS, from_mapping, prepare_inputs

if TYPE_CHECKING:
    from ._catalog import Catalog
    from .models import ModelInput

__all__ = ["prepare"]


async def prepare(
    model: str | ModelInput,
    inputs: Mapping[str, object] | None,
    catalog: Catalog | None = None,
    *,
    builtin: bool = True,
) -> tuple[str, dict[str, object]]:
    """Return the model id and the body for ``submit(model, inputs)``.

    Args:
        model: A model id or a typed input.
        inputs: The inputs, with a model id.
        catalog: Check a dict for a model without built-in rules against its catalog
            schema; ``None`` leaves such a dict to the server.
        builtin: Apply the built-in rules of the seed models to a dict (False: the
            server decides; files are still read and inlined).

    Raises:
        InputValidationError: Inputs refused locally; nothing was sent.
        TypeError: A model id without inputs, or a typed input with separate inputs.
        ValueError: A malformed model id.
        APIStatusError: The catalog refused the model id (400001), with a catalog.
        TransportError: The catalog did not answer, with a catalog.
    """
    if not isinstance(model, str):
        if inputs is not None:
            raise TypeError("submit(typed_input) takes no separate inputs")
        return check_model_id(model.model_id), await prepare_inputs(model)
    if inputs is None:
        raise TypeError("submit(model_id, inputs): inputs are required with a model id")
    model_id = check_model_id(model)
    typed = TYPED_MODELS.get(model_id) if builtin else None
    if typed is not None:
        checked = await prepare_inputs(from_mapping(typed, inputs))
        # Send the caller's keys only (no defaults added), with files checked and inlined.
        return model_id, {k: checked.get(k, v) for k, v in inputs.items()}
    if catalog is not None:
        await catalog.check_inputs(model_id, inputs)
    return model_id, await prepare_mapping(inputs)

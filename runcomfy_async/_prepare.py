"""What the caller passed → the model id and the JSON body to POST, checked locally.

``submit(model_id, inputs)`` and ``submit(typed_input)`` meet here, so every entry point
(``submit``, ``run``, keyed runs, ``map``) applies the same checks before money is spent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from ._wire import check_model_id
from .inputs import prepare_mapping
from .models import prepare_inputs

if TYPE_CHECKING:
    from .models import ModelInput

__all__ = ["prepare"]


async def prepare(
    model: str | ModelInput, inputs: Mapping[str, object] | None
) -> tuple[str, dict[str, object]]:
    """Return the model id and the body for ``submit(model, inputs)``.

    Raises:
        InputValidationError: Inputs refused locally; nothing was sent.
        TypeError: A model id without inputs, or a typed input with separate inputs.
        ValueError: A malformed model id.
    """
    if isinstance(model, str):
        if inputs is None:
            raise TypeError("submit(model_id, inputs): inputs are required with a model id")
        return check_model_id(model), await prepare_mapping(inputs)
    if inputs is not None:
        raise TypeError("submit(typed_input) takes no separate inputs")
    return check_model_id(model.model_id), await prepare_inputs(model)

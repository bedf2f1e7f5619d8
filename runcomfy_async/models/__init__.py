"""Typed, validated inputs for RunComfy's models.

Each input class knows its ``model_id`` and checks its values when it is built, so a
mistake fails before any request is sent or money spent::

    from pathlib import Path
    from runcomfy_async.models import Wan25ImageToVideo

    inputs = Wan25ImageToVideo("a red fox running through snow", Path("fox.png"))
    result = await client.run(inputs)

Local files (``Path`` or ``bytes``) are read, checked and inlined as ``data:`` URIs by
:func:`prepare_inputs`, off the event loop; ``Client.submit`` does that for you. Checking
local images and MP3s needs the ``media`` extra: ``pip install 'runcomfy-async[media]'``.
"""

from __future__ import annotations

from ..inputs import MediaRule, MediaSource
from ._base import ModelInput, from_mapping, prepare_inputs
from .wan import Wan22ImageToVideo, Wan25ImageToVideo

#: The typed class of each model id whose rules are built in: a plain dict for one of
#: these gets exactly that class's checks.
TYPED_MODELS: dict[str, type[ModelInput]] = {
    cls.model_id: cls for cls in (Wan25ImageToVideo, Wan22ImageToVideo)
}

__all__ = [
    "MediaRule",
    "MediaSource",
    "TYPED_MODELS",
    "ModelInput",
    "Wan22ImageToVideo",
    "Wan25ImageToVideo",
    "from_mapping",
    "prepare_inputs",
]

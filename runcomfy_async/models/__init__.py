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
from ._base import ModelInput, prepare_inputs
from .wan import Wan22ImageToVideo, Wan25ImageToVideo

__all__ = [
    "MediaRule",
    "MediaSource",
    "ModelInput",
    "Wan22ImageToVideo",
    "Wan25ImageToVideo",
    "prepare_inputs",
]

"""Inputs checked before money is spent: local files, media probes, schema checks.

Internal: users meet these checks through ``Client.submit``/``run`` and the typed models
in :mod:`runcomfy_async.models`, never by importing this package.
"""

from __future__ import annotations

from ._files import (
    MediaRule,
    MediaSource,
    check_media_value,
    check_request_size,
    encode_media,
    prepare_mapping,
)
from ._media import describe
from ._schema import check_inputs

__all__ = [
    "MediaRule",
    "MediaSource",
    "check_inputs",
    "check_media_value",
    "check_request_size",
    "describe",
    "encode_media",
    "prepare_mapping",
]

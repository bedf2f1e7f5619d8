"""The seed models' catalog entries and the input validation the simulator applies to them.

Written by hand from ``runcomfy-api.md`` ("The two seed models", "Catalog"), never derived from
the client's typed models, so a mistake cannot hide on both sides. ``validate`` understands the
subset of JSON schema used here plus RunComfy's ``format: image_uri`` / ``audio_uri`` and
``validations`` extensions. Pixel and size rules can only be checked on ``data:`` URIs (the
simulator never fetches a URL); pixel sizes are read from PNG headers only.
"""

from __future__ import annotations

import base64
import binascii
import struct
from collections.abc import Mapping
from typing import Any, Final

import msgspec

__all__ = ["CATALOG", "Violation", "search_catalog", "validate"]

WAN25: Final = "wan-ai/wan-2-5/image-to-video"
WAN22: Final = "wan-ai/wan-2-2/image-to-video"


def _pixels(axis: str) -> list[dict[str, Any]]:
    # [assume] the doc gives "360-2000 px"; bounds are taken as inclusive.
    return [
        {
            "validation_rule": f"{axis}_pixels>",
            "validation_value": 360,
            "validation_error": f"Image {axis} must be at least 360 pixels.",
        },
        {
            "validation_rule": f"{axis}_pixels<",
            "validation_value": 2000,
            "validation_error": f"Image {axis} must be at most 2000 pixels.",
        },
    ]


def _image(description: str, size_mb: int | None = None) -> dict[str, Any]:
    rules = _pixels("width") + _pixels("height")
    if size_mb is not None:
        rules.append(
            {
                "validation_rule": "size_mb<",
                "validation_value": size_mb,
                "validation_error": f"Image must be smaller than {size_mb} MB.",
            }
        )
    return {
        "type": "string",
        "format": "image_uri",
        "description": description,
        "validations": rules,
    }


_PROMPT: Final = {
    "type": "string",
    "minLength": 1,
    "maxLength": 800,
    "description": "Describe the motion and scene to generate.",
}

_WAN25_SCHEMA: Final = {
    "type": "object",
    "required": ["prompt", "img_url"],
    "properties": {
        "prompt": _PROMPT,
        "img_url": _image("First frame: jpg/jpeg/png/bmp/webp, 360-2000 px per side."),
        "audio_url": {
            "type": "string",
            "format": "audio_uri",
            "description": "Optional soundtrack: wav/mp3, 3-30 s, under 15 MB.",
            "validations": [
                {
                    "validation_rule": "duration_seconds>",
                    "validation_value": 3,
                    "validation_error": "Audio must last at least 3 seconds.",
                },
                {
                    "validation_rule": "duration_seconds<",
                    "validation_value": 30,
                    "validation_error": "Audio must last at most 30 seconds.",
                },
                {
                    "validation_rule": "size_mb<",
                    "validation_value": 15,
                    "validation_error": "Audio must be smaller than 15 MB.",
                },
            ],
        },
        "duration": {"type": "integer", "enum": [5, 10], "default": 5},
        "resolution": {"type": "string", "enum": ["480P", "720P", "1080P"], "default": "480P"},
        "negative_prompt": {"type": "string", "description": "What to avoid."},
    },
}

_WAN22_SCHEMA: Final = {
    "type": "object",
    "required": ["prompt", "img_url"],
    "properties": {
        "prompt": _PROMPT,
        "img_url": _image("First frame: JPEG/JPG/PNG (no alpha)/BMP/WEBP, 360-2000 px.", 10),
        "negative_prompt": {"type": "string", "maxLength": 500, "description": "What to avoid."},
        "template": {"type": "string", "description": "Effect template, e.g. squish, flying."},
        "resolution": {"type": "string", "enum": ["480P", "1080P"], "default": "480P"},
        "duration": {"type": "integer", "enum": [5], "default": 5},
        "prompt_extend": {"type": "boolean", "default": True},
        "seed": {"type": "integer"},
    },
}

CATALOG: Final[dict[str, dict[str, Any]]] = {
    WAN25: {
        "model_id": WAN25,
        "display_name": "Wan 2.5 Image to Video",
        "base_price_usd": 0.05,
        "price_unit": "second",
        "input_schema": _WAN25_SCHEMA,
    },
    WAN22: {
        "model_id": WAN22,
        "display_name": "Wan 2.2 Image to Video",
        "base_price_usd": 0.04,
        "price_unit": "second",
        "input_schema": _WAN22_SCHEMA,
    },
}
"""Catalog entries (``GET /v1/models/{model_id}``) of the seed models, keyed by model id."""


class Violation(msgspec.Struct, frozen=True):
    """One input that breaks its model's schema: the ``detail`` entry of a 422 answer."""

    field: str
    rule: str
    message: str


_TYPES: Final[dict[str, tuple[type, ...]]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
}


def _type_ok(value: object, kind: str) -> bool:
    if isinstance(value, bool) and kind != "boolean":
        return False  # JSON true is not an integer, whatever Python thinks
    return isinstance(value, _TYPES.get(kind, (object,)))


def _uri_ok(value: str, fmt: str) -> bool:
    if value.startswith(("http://", "https://")):
        return len(value) > len("https://")
    media = "image/" if fmt == "image_uri" else "audio/"
    return value.startswith("data:" + media) and ";base64," in value


def _data_facts(value: str) -> tuple[int, tuple[int, int] | None]:
    """Return a data URI's decoded size and, for PNG, its (width, height)."""
    head, _, data = value.partition(",")
    size = len(data) * 3 // 4 - data[-2:].count("=")
    if not head.startswith("data:image/png"):
        return size, None
    try:
        raw = base64.b64decode(data[:44] + "=" * (-len(data[:44]) % 4))
    except (binascii.Error, ValueError):
        return size, None
    if len(raw) < 24 or raw[12:16] != b"IHDR":
        return size, None
    width, height = struct.unpack(">II", raw[16:24])
    return size, (int(width), int(height))


def _check_rules(name: str, value: str, rules: list[dict[str, Any]]) -> list[Violation]:
    if not value.startswith("data:"):
        return []
    size, dims = _data_facts(value)
    facts: dict[str, float] = {"size_mb": size / 1_000_000}
    if dims is not None:
        facts["width_pixels"], facts["height_pixels"] = dims
    found = []
    for rule in rules:
        spec = str(rule["validation_rule"])
        measure, limit = facts.get(spec[:-1]), float(rule["validation_value"])
        if measure is None:
            continue  # cannot measure it here (audio length, non-PNG pixels)
        if spec.endswith(">"):
            broken = measure < limit  # "at least", inclusive [assume]
        elif spec.startswith("size_mb"):
            broken = measure >= limit  # "smaller than"
        else:
            broken = measure > limit
        if broken:
            found.append(Violation(name, spec, f"{name}: {rule['validation_error']}"))
    return found


def _check_field(name: str, value: object, spec: Mapping[str, Any]) -> list[Violation]:
    kind = spec.get("type", "string")
    if not _type_ok(value, kind):
        got = "null" if value is None else type(value).__name__
        return [Violation(name, "type", f"{name} must be of type {kind}, got {got}")]
    if "enum" in spec and value not in spec["enum"]:
        allowed = ", ".join(map(str, spec["enum"]))
        return [Violation(name, "enum", f"{name} must be one of {allowed}; got {value!r}")]
    if not isinstance(value, str):
        return []
    if len(value) > spec.get("maxLength", len(value)):
        limit = spec["maxLength"]
        msg = f"{name} must be at most {limit} characters, got {len(value)}"
        return [Violation(name, "maxLength", msg)]
    if len(value) < spec.get("minLength", 0):
        return [Violation(name, "minLength", f"{name} must not be empty")]
    fmt = spec.get("format")
    if fmt in ("image_uri", "audio_uri") and not _uri_ok(value, fmt):
        msg = f"{name} must be an http(s) URL or a base64 data: URI ({fmt})"
        return [Violation(name, "format", msg)]
    return _check_rules(name, value, spec.get("validations", []))


def validate(model_id: str, inputs: Mapping[str, object]) -> list[Violation] | None:
    """Check inputs against a seed model's schema.

    Args:
        model_id: The model the inputs are for.
        inputs: The decoded JSON body.

    Returns:
        ``None`` if the model is not a seed model, else every violation found (empty if valid).
        Keys the schema does not know are ignored.
    """
    entry = CATALOG.get(model_id)
    if entry is None:
        return None
    schema = entry["input_schema"]
    found = [
        Violation(name, "required", f"{name} is required")
        for name in schema["required"]
        if name not in inputs
    ]
    for name, spec in schema["properties"].items():
        if name in inputs:
            found.extend(_check_field(name, inputs[name], spec))
    return found


def search_catalog(search: str, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
    """Return one page of catalog entries matching ``search`` and the number matched."""
    needle = search.casefold()
    hits = [
        entry
        for entry in CATALOG.values()
        if needle in entry["model_id"].casefold() or needle in entry["display_name"].casefold()
    ]
    return hits[offset : offset + limit], len(hits)

"""Input validation in RunComfy's schema vocabulary: what the simulator answers 422 for.

Understands the subset of JSON schema the catalog uses (``type``, ``required``, ``enum``,
``minLength`` / ``maxLength``, ``minimum`` / ``maximum``, ``minItems`` / ``maxItems``,
``items``) plus RunComfy's extensions (``runcomfy-api.md``, "More seen"): ``"type": "float"``;
formats ``image_uri`` / ``video_uri`` / ``audio_uri`` (one URL) and ``image_uris`` /
``video_uris`` / ``audio_uris`` (arrays of URLs, often without ``items``); and ``validations``
(``width_pixels>`` / ``<``, ``height_pixels>`` / ``<``, ``file_size_mb<`` / ``size_mb<``).

Pixel and size rules can only be checked on ``data:`` URIs (the simulator never fetches a URL);
pixel sizes are read from PNG headers only. ``>`` / ``<`` on pixels are read as inclusive
bounds, like the client's own checker: the seed models say "360-2000 px" beside
``width_pixels>`` 360.
"""

from __future__ import annotations

import base64
import binascii
import struct
from collections.abc import Mapping
from typing import Any, Final

import msgspec

__all__ = ["Violation", "check_inputs"]


class Violation(msgspec.Struct, frozen=True):
    """One input that breaks its model's schema: the ``detail`` entry of a 422 answer."""

    field: str
    rule: str
    message: str


_TYPES: Final[dict[str, tuple[type, ...]]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "float": (int, float),  # RunComfy's own spelling of "number"
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
}
_MEDIA: Final = {"image": "image/", "video": "video/", "audio": "audio/"}


def _type_ok(value: object, kind: str) -> bool:
    if isinstance(value, bool) and kind != "boolean":
        return False  # JSON true is not an integer, whatever Python thinks
    return isinstance(value, _TYPES.get(kind, (object,)))


def _media_of(fmt: object) -> str | None:
    """``"image/"`` for ``image_uri`` / ``image_uris`` / ``image_uri_with_mask…``, etc."""
    if not isinstance(fmt, str) or "_uri" not in fmt:
        return None
    return _MEDIA.get(fmt.partition("_")[0])


def _uri_ok(value: str, media: str) -> bool:
    if value.startswith(("http://", "https://")):
        return len(value) > len("https://")
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


def _check_rules(name: str, value: str, rules: object) -> list[Violation]:
    if not value.startswith("data:") or not isinstance(rules, list):
        return []
    size, dims = _data_facts(value)
    facts: dict[str, float] = {"size_mb": size / 1_000_000, "file_size_mb": size / 1_000_000}
    if dims is not None:
        facts["width_pixels"], facts["height_pixels"] = dims
    found = []
    for rule in rules:
        spec = str(rule["validation_rule"])
        metric, limit = spec[:-1], float(rule["validation_value"])
        measure = facts.get(metric)
        if measure is None:
            continue  # cannot measure it here (audio length, non-PNG pixels)
        if spec.endswith(">"):
            broken = measure < limit  # "at least", inclusive [assume]
        elif metric in ("size_mb", "file_size_mb"):
            broken = measure >= limit  # "smaller than"; decoded bytes, 1 MB = 10^6
        else:
            broken = measure > limit
        if broken:
            message = rule.get("validation_error") or f"breaks {spec} {rule['validation_value']}"
            found.append(Violation(name, spec, f"{name}: {message}"))
    return found


def _check_string(name: str, value: str, spec: Mapping[str, Any]) -> list[Violation]:
    if len(value) > spec.get("maxLength", len(value)):
        limit = spec["maxLength"]
        msg = f"{name} must be at most {limit} characters, got {len(value)}"
        return [Violation(name, "maxLength", msg)]
    if len(value) < spec.get("minLength", 0):
        return [Violation(name, "minLength", f"{name} must not be empty")]
    return []


def _check_uri(name: str, value: object, fmt: str, rules: object) -> list[Violation]:
    media = _media_of(fmt) or "image/"
    if not isinstance(value, str) or not _uri_ok(value, media):
        msg = f"{name} must be an http(s) URL or a base64 data: URI ({fmt})"
        return [Violation(name, "format", msg)]
    return _check_rules(name, value, rules)


def _check_array(name: str, value: list[Any], spec: Mapping[str, Any]) -> list[Violation]:
    if len(value) < spec.get("minItems", 0):
        return [Violation(name, "minItems", f"{name} needs at least {spec['minItems']} items")]
    if len(value) > spec.get("maxItems", len(value)):
        return [Violation(name, "maxItems", f"{name} takes at most {spec['maxItems']} items")]
    fmt, items = spec.get("format"), spec.get("items")
    found: list[Violation] = []
    for index, item in enumerate(value):
        where = f"{name}[{index}]"
        if isinstance(fmt, str) and fmt.endswith("_uris"):
            found.extend(_check_uri(where, item, fmt, spec.get("validations")))
        elif isinstance(items, dict):
            found.extend(_check_field(where, item, items))
    return found


def _check_field(name: str, value: object, spec: Mapping[str, Any]) -> list[Violation]:
    kind = spec.get("type", "string")
    if not _type_ok(value, kind):
        got = "null" if value is None else type(value).__name__
        return [Violation(name, "type", f"{name} must be of type {kind}, got {got}")]
    if "enum" in spec and value not in spec["enum"]:
        allowed = ", ".join(map(str, spec["enum"]))
        return [Violation(name, "enum", f"{name} must be one of {allowed}; got {value!r}")]
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in spec and value < spec["minimum"]:
            return [Violation(name, "minimum", f"{name} must be >= {spec['minimum']}")]
        if "maximum" in spec and value > spec["maximum"]:
            return [Violation(name, "maximum", f"{name} must be <= {spec['maximum']}")]
        return []
    if isinstance(value, list):
        return _check_array(name, value, spec)
    if not isinstance(value, str):
        return []
    found = _check_string(name, value, spec)
    fmt = spec.get("format")
    if found or _media_of(fmt) is None or not isinstance(fmt, str):
        return found
    return _check_uri(name, value, fmt, spec.get("validations"))


def check_inputs(schema: Mapping[str, Any], inputs: Mapping[str, object]) -> list[Violation]:
    """Check inputs against a model's input schema.

    Args:
        schema: The model's ``input_schema``.
        inputs: The decoded JSON body.

    Returns:
        Every violation found (empty if valid). Keys the schema does not know are ignored.
    """
    found = [
        Violation(name, "required", f"{name} is required")
        for name in schema.get("required", ())
        if name not in inputs
    ]
    for name, spec in schema.get("properties", {}).items():
        if name in inputs and isinstance(spec, dict):
            found.extend(_check_field(name, inputs[name], spec))
    return found

"""Opt-in check of untyped inputs against a model's catalog ``input_schema``.

Typed inputs (``runcomfy_async.models``) check themselves. For any other model, the JSON
schema that ``GET /v1/models/{model_id}`` returns can be applied locally, so a mistake
fails before a request is sent rather than as a 422 afterwards. Only a subset of JSON
schema is applied: ``required``, ``type`` (with RunComfy's ``float``), ``enum``,
``minLength`` / ``maxLength``, ``minimum`` / ``maximum`` (and their exclusive forms),
``minItems`` / ``maxItems``, ``items`` and ``additionalProperties: false``; file fields
(``format`` ending in ``uri``) must be a URL, a ``data:`` URI, a path or bytes, and the
``*_uris`` formats (RunComfy's arrays of URLs, often without ``items``) a list of those.
Anything else is left to the server.

RunComfy extends the schema with ``validations`` entries such as
``{"validation_rule": "width_pixels>", "validation_value": 360, "validation_error": "…"}``
(``runcomfy-api.md``, "Catalog" [seen]). The rules on pixels (``width_pixels``,
``height_pixels``), size (``file_size_mb``, also spelled ``size_mb``: the decoded bytes,
1 MB = 10^6 bytes) and length (``duration_seconds``, for the audio files whose length we
can read) are applied to files we can read here (paths, bytes, ``data:`` URIs); a remote
URL is not fetched, and rules on other measures are skipped. The bounds are read as
inclusive: the same models document
"360–2000 px" next to ``width_pixels>`` 360, and a strict reading would refuse images
the docs allow. When in doubt the server decides, so we never refuse a valid input.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import Final

from .._errors import InputValidationError
from .._wire import ModelInfo
from ._files import MediaKind, check_media_value, probe_media
from ._media import MediaInfo, describe

__all__ = ["check_inputs"]

_RULE: Final = re.compile(r"\s*([A-Za-z_]+)\s*(>=|<=|==|=|>|<)\s*")
_PIXEL_METRICS: Final = frozenset({"width_pixels", "height_pixels"})
_SIZE_METRICS: Final = frozenset({"file_size_mb", "size_mb"})
_METRICS: Final = _PIXEL_METRICS | _SIZE_METRICS | {"duration_seconds"}
_MB: Final = 1_000_000  # RunComfy's MB is decimal
_FILE_KINDS: Final[Mapping[str, MediaKind]] = {
    "image_uri": "image",
    "audio_uri": "audio",
    "video_uri": "video",
    # An image whose mask travels with it (Ideogram v3 edits); the value is a URL.
    "image_uri_with_mask_image_ideogramv3": "image",
}
# RunComfy's list formats: arrays of URLs, often listed without ``items``.
_LIST_KINDS: Final[Mapping[str, MediaKind]] = {
    "image_uris": "image",
    "audio_uris": "audio",
    "video_uris": "video",
}


async def check_inputs(
    inputs: Mapping[str, object], schema: ModelInfo | Mapping[str, object]
) -> None:
    """Check ``inputs`` against a model's catalog schema; raise at the first violation.

    Local files are read in a worker thread only when a pixel rule needs them.

    Args:
        inputs: The inputs as they will be sent (paths and bytes allowed in file fields).
        schema: The model's catalog entry, or its ``input_schema`` mapping.

    Raises:
        InputValidationError: A value breaks the schema; it names the field, the value
            and the rule.
        ImportError: A pixel rule applies to a local image and Pillow is missing.
    """
    root = schema.input_schema if isinstance(schema, ModelInfo) else schema
    properties = _mapping(root.get("properties"))
    required = root.get("required")
    for name in required if isinstance(required, list) else ():
        if isinstance(name, str) and inputs.get(name) is None:
            raise InputValidationError(field=name, value=None, rule="is required by the schema")
    if root.get("additionalProperties") is False:
        for name in inputs:
            if name not in properties:
                raise InputValidationError(
                    field=name, value=describe(inputs[name]), rule="is not an input of this model"
                )
    for name, value in inputs.items():
        prop = _mapping(properties.get(name))
        if value is None or not prop:
            continue
        _check_value(name, value, prop)
        await _check_validations(name, value, prop)


def _mapping(value: object) -> Mapping[str, object]:
    return value if isinstance(value, Mapping) else {}


def _is_local_file(value: object) -> bool:
    return isinstance(value, bytes | os.PathLike)


def _is_file_field(name: str, prop: Mapping[str, object]) -> bool:
    fmt = prop.get("format")
    if isinstance(fmt, str) and fmt.lower() in _FILE_KINDS:
        return True
    return (isinstance(fmt, str) and fmt.lower().endswith(("uri", "url"))) or name.lower().endswith(
        ("_url", "_uri")
    )


def _type_matches(value: object, word: object) -> bool:
    if word == "string":
        return isinstance(value, str)
    if word == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if word in ("number", "float"):  # "float" is RunComfy's word for a number
        return isinstance(value, int | float) and not isinstance(value, bool)
    if word == "boolean":
        return isinstance(value, bool)
    if word == "array":
        return isinstance(value, list | tuple)
    if word == "object":
        return isinstance(value, Mapping)
    if word == "null":
        return value is None
    return True  # a type word we do not know: the server decides


def _check_type(name: str, value: object, prop: Mapping[str, object]) -> None:
    declared = prop.get("type")
    words = declared if isinstance(declared, list) else [declared] if declared else []
    if not words or any(_type_matches(value, w) for w in words):
        return
    raise InputValidationError(
        field=name,
        value=describe(value),
        rule=f"must be of type {' or '.join(map(str, words))}, not {type(value).__name__}",
    )


def _same(a: object, b: object) -> bool:
    # JSON has no "True == 1": a bool only matches a bool.
    return a == b and isinstance(a, bool) == isinstance(b, bool)


def _check_enum(name: str, value: object, prop: Mapping[str, object]) -> None:
    choices = prop.get("enum")
    if not isinstance(choices, list) or any(_same(value, c) for c in choices):
        return
    rule = f"must be one of {', '.join(repr(c) for c in choices)}"
    if isinstance(value, str):
        near = [c for c in choices if isinstance(c, str) and c.lower() == value.lower()]
        if near:
            rule += f"; did you mean {near[0]!r}? (case matters)"
    raise InputValidationError(field=name, value=value, rule=rule)


def _bound(prop: Mapping[str, object], key: str) -> float | None:
    bound = prop.get(key)
    return float(bound) if isinstance(bound, int | float) and not isinstance(bound, bool) else None


def _measure(value: object) -> tuple[float, str, str, str] | None:
    if isinstance(value, str):
        return len(value), " characters long", "minLength", "maxLength"
    if isinstance(value, list | tuple):
        return len(value), " items long", "minItems", "maxItems"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value, "", "minimum", "maximum"
    return None


def _check_sizes(name: str, value: object, prop: Mapping[str, object]) -> None:
    measured = _measure(value)
    if measured is None:
        return
    measure, unit, low_key, high_key = measured
    low, high = _bound(prop, low_key), _bound(prop, high_key)
    if low is not None and measure < low:
        rule = f"is {measure:g}{unit}; the schema's {low_key} is {low:g}"
    elif high is not None and measure > high:
        rule = f"is {measure:g}{unit}; the schema's {high_key} is {high:g}"
    else:
        return
    raise InputValidationError(field=name, value=describe(value), rule=rule)


def _check_exclusive(name: str, value: object, prop: Mapping[str, object]) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return
    low, high = _bound(prop, "exclusiveMinimum"), _bound(prop, "exclusiveMaximum")
    if low is not None and value <= low:
        rule = f"must be greater than {low:g} (exclusiveMinimum)"
    elif high is not None and value >= high:
        rule = f"must be less than {high:g} (exclusiveMaximum)"
    else:
        return
    raise InputValidationError(field=name, value=value, rule=rule)


def _check_url_list(name: str, value: object, prop: Mapping[str, object]) -> bool:
    kind = _LIST_KINDS.get(str(prop.get("format", "")).lower())
    if kind is None:
        return False
    if not isinstance(value, list | tuple):
        raise InputValidationError(
            field=name, value=describe(value), rule=f"must be a list of {kind} URLs"
        )
    _check_sizes(name, value, prop)
    for index, item in enumerate(value):
        check_media_value(f"{name}[{index}]", item, kind=kind)
    return True


def _check_value(name: str, value: object, prop: Mapping[str, object]) -> None:
    if _check_url_list(name, value, prop):
        return
    if _is_file_field(name, prop) and (_is_local_file(value) or isinstance(value, str)):
        # A path or bytes becomes a data: URI string when sent; a string must be a URL.
        fmt = prop.get("format")
        check_media_value(name, value, kind=_FILE_KINDS.get(str(fmt).lower()))
        return
    _check_type(name, value, prop)
    _check_enum(name, value, prop)
    _check_sizes(name, value, prop)
    _check_exclusive(name, value, prop)
    items = _mapping(prop.get("items"))
    if items and isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_value(f"{name}[{index}]", item, items)


# --- RunComfy's "validations" ------------------------------------------------------------


def _parse_rule(entry: object) -> tuple[str, str, float, str | None] | None:
    if not isinstance(entry, Mapping):
        return None
    match = _RULE.fullmatch(str(entry.get("validation_rule", "")))
    bound = entry.get("validation_value")
    if match is None or isinstance(bound, bool) or not isinstance(bound, int | float):
        return None
    message = entry.get("validation_error")
    return (
        match.group(1).lower(),
        match.group(2),
        float(bound),
        (message if isinstance(message, str) and message else None),
    )


def _holds(measure: float, op: str, bound: float) -> bool:
    # Inclusive on purpose; see the module docstring.
    if op in (">", ">="):
        return measure >= bound
    if op in ("<", "<="):
        return measure <= bound
    return measure == bound


async def _check_validations(name: str, value: object, prop: Mapping[str, object]) -> None:
    entries = prop.get("validations")
    rules = [r for r in map(_parse_rule, entries if isinstance(entries, list) else ()) if r]
    rules = [r for r in rules if r[0] in _METRICS]
    if not rules:
        return
    if isinstance(value, list | tuple):
        files: Sequence[tuple[str, object]] = [(f"{name}[{i}]", v) for i, v in enumerate(value)]
    else:
        files = [(name, value)]
    # Sizes need no Pillow or mutagen; pixels and lengths do.
    details = any(rule[0] not in _SIZE_METRICS for rule in rules)
    for field, item in files:
        info = await probe_media(item, field=field, details=details)
        if info is None:
            continue  # a remote URL: nothing we can measure here
        for rule in rules:
            _check_measure(field, item, info, rule)


def _measured(metric: str, info: MediaInfo) -> tuple[float, str, str] | None:
    """The file's measure for ``metric``, its unit, and how to say what it is; None: unknown."""
    if metric in _PIXEL_METRICS:
        if info.width is None or info.height is None:
            return None  # not an image
        measure = info.width if metric == "width_pixels" else info.height
        return measure, "px", f"image is {info.width}×{info.height} px"
    if metric in _SIZE_METRICS:
        return info.size / _MB, "MB", f"file is {info.size:,} bytes"
    if info.seconds is None:
        return None  # a video, or an audio format whose length we do not read
    return info.seconds, "s", f"{info.kind} lasts {info.seconds:.3g} s"


def _check_measure(
    field: str, value: object, info: MediaInfo, rule: tuple[str, str, float, str | None]
) -> None:
    metric, op, bound, message = rule
    found = _measured(metric, info)
    if found is None or _holds(found[0], op, bound):
        return
    _, unit, facts = found
    limit = {">": "at least", ">=": "at least", "<": "at most", "<=": "at most"}.get(op, "exactly")
    what = {"px": metric.split("_")[0], "MB": "file size", "s": "length"}[unit]
    default = f"{what} must be {limit} {bound:g} {unit}"
    raise InputValidationError(
        field=field,
        value=describe(value),
        rule=f"{message or default} ({facts}; schema rule {metric}{op} {bound:g})",
    )

"""Opt-in checks of untyped inputs against a catalog input_schema, before any request."""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from runcomfy_async._errors import InputValidationError
from runcomfy_async._wire import ModelInfo
from runcomfy_async.inputs._schema import check_inputs

pytestmark = pytest.mark.anyio

URL = "https://example.com/fox.png"
WIDTH_ERROR = "Image width must be between 360 and 2000 pixels."

# Written by hand in the shape RunComfy's catalog uses (runcomfy-api.md, "Catalog"),
# not produced by our own code, so a misspelled key cannot hide on both sides.
SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["prompt", "img_url"],
    "properties": {
        "prompt": {"type": "string", "minLength": 1, "maxLength": 800},
        "img_url": {
            "type": "string",
            "format": "image_uri",
            "validations": [
                {
                    "validation_rule": "width_pixels>",
                    "validation_value": 360,
                    "validation_error": WIDTH_ERROR,
                },
                {
                    "validation_rule": "width_pixels<",
                    "validation_value": 2000,
                    "validation_error": WIDTH_ERROR,
                },
                {"validation_rule": "height_pixels>", "validation_value": 360},
                {"validation_rule": "aspect_ratio<", "validation_value": 4},
            ],
        },
        "duration": {"type": "integer", "enum": [5, 10], "default": 5},
        "resolution": {"type": "string", "enum": ["480P", "720P", "1080P"]},
        "seed": {"type": "integer", "minimum": 0, "maximum": 2147483647},
        "prompt_extend": {"type": "boolean"},
        "guidance": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 20},
        "tags": {"type": "array", "maxItems": 2, "items": {"type": "string", "maxLength": 5}},
    },
}
GOOD = {"prompt": "a red fox running through snow", "img_url": URL}


def png(size: tuple[int, int]) -> bytes:
    """Encode a blank PNG of ``size`` in memory."""
    buffer = io.BytesIO()
    Image.new("RGB", size).save(buffer, "PNG")
    return buffer.getvalue()


async def refusal(inputs: Mapping[str, object], schema: Any = SCHEMA) -> InputValidationError:
    """Run the check, expect a refusal, and return it."""
    with pytest.raises(InputValidationError) as excinfo:
        await check_inputs(inputs, schema)
    assert excinfo.value.rule
    return excinfo.value


async def test_valid_inputs_pass() -> None:
    """Inputs that meet every rule pass, URLs included (their pixels are not fetched)."""
    await check_inputs(
        {
            **GOOD,
            "duration": 10,
            "resolution": "720P",
            "seed": 0,
            "prompt_extend": False,
            "guidance": 7.5,
            "tags": ["a", "b"],
            "unknown_extra": object(),
        },
        SCHEMA,
    )


async def test_model_info_is_accepted_as_schema() -> None:
    """A decoded catalog entry can be passed directly."""
    info = ModelInfo(model_id="wan-ai/wan-2-5/image-to-video", input_schema=SCHEMA)
    await check_inputs(GOOD, info)
    error = await refusal({"img_url": URL}, info)
    assert error.field == "prompt"


@pytest.mark.parametrize("missing", ["prompt", "img_url"])
async def test_required_missing_refused(missing: str) -> None:
    """A required input that is absent (or None) is refused, naming it."""
    inputs = {k: v for k, v in GOOD.items() if k != missing}
    error = await refusal(inputs)
    assert (error.field, error.value) == (missing, None)
    assert "required" in error.rule
    error = await refusal({**GOOD, missing: None})
    assert error.field == missing


async def test_enum_violation_refused_with_spelling_hint() -> None:
    """A value outside the enum is refused; a case slip names the right spelling."""
    error = await refusal({**GOOD, "resolution": "720p"})
    assert (error.field, error.value) == ("resolution", "720p")
    assert "did you mean '720P'" in error.rule


@pytest.mark.parametrize(("value", "word"), [(7, "one of"), (True, "integer"), ("5", "integer")])
async def test_integer_enum_refuses_other_values_and_types(value: object, word: str) -> None:
    """An int enum refuses other numbers, bools (True is not 1 here) and strings."""
    error = await refusal({**GOOD, "duration": value})
    assert (error.field, error.value) == ("duration", value)
    assert word in error.rule


async def test_max_length_refused() -> None:
    """A string over maxLength is refused with its length."""
    error = await refusal({**GOOD, "prompt": "x" * 801})
    assert (error.field, error.value) == ("prompt", "x" * 801)
    assert error.rule == "is 801 characters long; the schema's maxLength is 800"


async def test_min_length_refused() -> None:
    """An empty string under minLength is refused."""
    error = await refusal({**GOOD, "prompt": ""})
    assert error.field == "prompt"
    assert "minLength" in error.rule


@pytest.mark.parametrize("seed", [-1, 2147483648])
async def test_minimum_and_maximum_refused(seed: int) -> None:
    """Numbers outside minimum..maximum are refused."""
    error = await refusal({**GOOD, "seed": seed})
    assert (error.field, error.value) == ("seed", seed)


@pytest.mark.parametrize("guidance", [0, 20, 25.5])
async def test_exclusive_bounds_refused(guidance: float) -> None:
    """exclusiveMinimum and exclusiveMaximum exclude the bound itself."""
    error = await refusal({**GOOD, "guidance": guidance})
    assert error.field == "guidance"


async def test_boolean_type_refused() -> None:
    """A boolean field refuses 1 and "true"."""
    for value in (1, "true"):
        error = await refusal({**GOOD, "prompt_extend": value})
        assert (error.field, error.value) == ("prompt_extend", value)


async def test_array_items_and_size_checked() -> None:
    """Arrays are checked for maxItems and each item against the items schema."""
    error = await refusal({**GOOD, "tags": ["a", "b", "c"]})
    assert error.field == "tags"
    error = await refusal({**GOOD, "tags": ["ok", "too long"]})
    assert (error.field, error.value) == ("tags[1]", "too long")


async def test_additional_properties_false_refuses_unknown_inputs() -> None:
    """With additionalProperties false, an unknown input name is refused."""
    strict = {**SCHEMA, "additionalProperties": False}
    error = await refusal({**GOOD, "promt": "typo"}, strict)
    assert (error.field, error.value) == ("promt", "typo")


async def test_file_field_string_must_be_url() -> None:
    """A bare file name in an image_uri field is refused with a Path(...) hint."""
    error = await refusal({**GOOD, "img_url": "fox.png"})
    assert error.field == "img_url"
    assert "Path('fox.png')" in error.rule


async def test_width_rule_on_local_image_refused(tmp_path: Path) -> None:
    """A local image narrower than the schema's width_pixels rule is refused."""
    path = tmp_path / "narrow.png"
    path.write_bytes(png((300, 400)))
    error = await refusal({**GOOD, "img_url": path})
    assert (error.field, error.value) == ("img_url", path)
    assert error.rule == (f"{WIDTH_ERROR} (image is 300×400 px; schema rule width_pixels> 360)")


async def test_width_rule_bounds_are_inclusive(tmp_path: Path) -> None:
    """360 px passes "width_pixels> 360", matching the documented 360–2000 px range."""
    path = tmp_path / "edge.png"
    path.write_bytes(png((360, 2000)))
    await check_inputs({**GOOD, "img_url": path}, SCHEMA)


async def test_pixel_rules_apply_to_bytes_and_data_uris() -> None:
    """Bytes and data: URIs are measured too; a rule without a message gets a default one."""
    error = await refusal({**GOOD, "img_url": png((2100, 400))})
    assert (error.field, error.value) == ("img_url", f"<{len(png((2100, 400))):,} bytes>")
    uri = "data:image/png;base64," + base64.b64encode(png((400, 300))).decode()
    error = await refusal({**GOOD, "img_url": uri})
    assert error.field == "img_url"
    assert error.rule.startswith("height must be at least 360 px")


async def test_unknown_validation_rules_are_skipped() -> None:
    """Rules we cannot evaluate locally (aspect_ratio, malformed ones) never refuse."""
    schema = {
        "properties": {
            "img_url": {
                "type": "string",
                "validations": [
                    {"validation_rule": "aspect_ratio<", "validation_value": 0.1},
                    {"validation_rule": "width_pixels>", "validation_value": "wide"},
                    {"validation_rule": "???", "validation_value": 1},
                    "not even a mapping",
                ],
            }
        }
    }
    await check_inputs({"img_url": png((400, 400))}, schema)


async def test_empty_schema_accepts_anything() -> None:
    """A model whose catalog entry has no schema is left to the server."""
    await check_inputs({"anything": 1}, ModelInfo(model_id="x/y"))

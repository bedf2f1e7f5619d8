"""The models every simulator's catalog starts with: the two Wan seeds and other shapes.

Written by hand from ``runcomfy-api.md`` ("The two seed models", "Catalog", "More seen"), never
derived from the client's typed models, so a mistake cannot hide on both sides. Besides the Wan
image-to-video models (``output.video``, priced per second) the catalog holds the other shapes
users meet: an image model priced per output (``output.images``, one per ``num_images``), an
audio model (``output.audio``, a WAV), a model taking an ``image_uris`` list (``output.image_urls``)
and an upscaler whose schema uses ``"type": "float"`` and ``validations`` (``output`` a list of
``{"url": ...}`` objects).
"""

from __future__ import annotations

from typing import Any, Final

from ._spec import ModelSpec

__all__ = [
    "AUDIO",
    "COLLAGE",
    "FLUX",
    "SEED_MODELS",
    "UPSCALE",
    "WAN22",
    "WAN25",
]

WAN25: Final = "wan-ai/wan-2-5/image-to-video"
WAN22: Final = "wan-ai/wan-2-2/image-to-video"
FLUX: Final = "acme/flux-lite/text-to-image"
AUDIO: Final = "acme/tone-voice/text-to-audio"
COLLAGE: Final = "acme/collage/images-to-image"
UPSCALE: Final = "acme/upscale-pro/image-upscale"


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

_FLUX_SCHEMA: Final = {
    "type": "object",
    "required": ["prompt"],
    "properties": {
        "prompt": {"type": "string", "minLength": 1, "maxLength": 2000},
        "num_images": {
            "type": "integer",
            "minimum": 1,
            "maximum": 4,
            "default": 1,
            "description": "How many images to generate; each is billed.",
        },
        "aspect_ratio": {"type": "string", "enum": ["1:1", "16:9", "9:16"], "default": "1:1"},
        "guidance_scale": {"type": "float", "minimum": 0, "maximum": 20, "default": 3.5},
        "seed": {"type": "integer"},
    },
}

_AUDIO_SCHEMA: Final = {
    "type": "object",
    "required": ["prompt"],
    "properties": {
        "prompt": {"type": "string", "minLength": 1, "maxLength": 1000},
        "duration": {
            "type": "integer",
            "minimum": 1,
            "maximum": 30,
            "default": 10,
            "description": "Length of the audio in seconds; billed per second.",
        },
        "voice": {"type": "string", "enum": ["calm", "bright"], "default": "calm"},
    },
}

_COLLAGE_SCHEMA: Final = {
    "type": "object",
    "required": ["prompt", "image_uris"],
    "properties": {
        "prompt": {"type": "string", "minLength": 1, "maxLength": 800},
        # As RunComfy lists it: an array of URLs with a format and no `items`.
        "image_uris": {
            "type": "array",
            "format": "image_uris",
            "minItems": 1,
            "maxItems": 4,
            "description": "1-4 reference images, public URLs or data: URIs.",
        },
        "strength": {"type": "float", "minimum": 0, "maximum": 1, "default": 0.8},
    },
}

_UPSCALE_SCHEMA: Final = {
    "type": "object",
    "required": ["image_url"],
    "properties": {
        "image_url": {
            "type": "string",
            "format": "image_uri",
            "description": "The image to upscale: wider than 64 px, under 5 MB.",
            "validations": [
                {
                    "validation_rule": "width_pixels>",
                    "validation_value": 64,
                    "validation_error": "Image width must be at least 64 pixels.",
                },
                {
                    "validation_rule": "file_size_mb<",
                    "validation_value": 5,
                    "validation_error": "Image must be smaller than 5 MB.",
                },
            ],
        },
        "scale": {"type": "float", "minimum": 1, "maximum": 4, "default": 2.0},
    },
}

_VIDEO_NOTE: Final = "Billed per second of output video (duration)."

SEED_MODELS: Final[tuple[ModelSpec, ...]] = (
    ModelSpec(
        model_id=WAN25,
        display_name="Wan 2.5 Image to Video",
        input_schema=_WAN25_SCHEMA,
        base_price_usd=0.05,
        price_unit="second",
        pricing_note=_VIDEO_NOTE,
        categories=("video", "image-to-video"),
    ),
    ModelSpec(
        model_id=WAN22,
        display_name="Wan 2.2 Image to Video",
        input_schema=_WAN22_SCHEMA,
        base_price_usd=0.04,
        price_unit="second",
        pricing_note=_VIDEO_NOTE,
        categories=("video", "image-to-video"),
    ),
    ModelSpec(
        model_id=FLUX,
        display_name="Flux Lite Text to Image",
        input_schema=_FLUX_SCHEMA,
        output={"images": ["{urls}"]},
        output_files=("image.png",),
        count_input="num_images",
        base_price_usd=0.003,
        price_unit="output",
        pricing_note="Billed per output image (num_images).",
        categories=("image", "text-to-image"),
    ),
    ModelSpec(
        model_id=AUDIO,
        display_name="Tone Voice Text to Audio",
        input_schema=_AUDIO_SCHEMA,
        output={"audio": "{url}"},
        output_files=("audio.wav",),
        default_seconds=10.0,
        base_price_usd=0.002,
        price_unit="second",
        pricing_note="Billed per second of output audio (duration).",
        categories=("audio", "text-to-audio"),
    ),
    ModelSpec(
        model_id=COLLAGE,
        display_name="Collage Images to Image",
        input_schema=_COLLAGE_SCHEMA,
        output={"image_urls": ["{urls}"]},
        output_files=("collage.png",),
        base_price_usd=0.01,
        price_unit="output",
        pricing_note="Billed per output image.",
        categories=("image", "image-to-image"),
    ),
    ModelSpec(
        model_id=UPSCALE,
        display_name="Upscale Pro",
        input_schema=_UPSCALE_SCHEMA,
        output=[{"url": "{url}", "content_type": "image/png"}],
        output_files=("upscaled.png",),
        base_price_usd=0.02,
        price_unit="output",
        pricing_note="Billed per upscaled image.",
        categories=("image", "upscale"),
    ),
)
"""The entries every catalog starts with, in listing order."""

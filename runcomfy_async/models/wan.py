"""Typed inputs for Alibaba's Wan image-to-video models on RunComfy.

The limits come from each model's schema page, as copied in ``runcomfy-api.md`` ("The
two seed models"). They are enforced when an input is built, so a mistake fails before
any request is sent. Image and audio fields take an http(s) URL, a ``data:`` URI, a
:class:`pathlib.Path` or ``bytes``; local content is checked by
:func:`~runcomfy_async.models.prepare_inputs`.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import ClassVar, Final, Literal

from ..inputs import MediaRule, MediaSource, check_media_value
from ._base import ModelInput, check_bool, check_choice, check_int_range, check_text

__all__ = ["Wan22ImageToVideo", "Wan25ImageToVideo"]

# RunComfy's docs give two prompt limits: 800 on the models' schema pages, 2000 in another
# copy. We enforce 800, the stricter: a prompt within 800 is valid under either reading,
# while a longer one may be refused or fail the job, which we would only learn of after
# submitting (and perhaps paying).
_PROMPT_MAX: Final = 800
_WAN22_NEGATIVE_MAX: Final = 500
_SEED_MAX: Final = 2**31 - 1
_IMAGE_FORMATS: Final = ("jpeg", "png", "bmp", "webp")

_WAN25_IMAGE: Final = MediaRule(
    kind="image", formats=_IMAGE_FORMATS, owner="Wan 2.5", min_side=360, max_side=2000
)
_WAN25_AUDIO: Final = MediaRule(
    kind="audio",
    formats=("wav", "mp3"),
    owner="Wan 2.5",
    max_bytes=15_000_000,
    min_seconds=3,
    max_seconds=30,
)
_WAN22_IMAGE: Final = MediaRule(
    kind="image",
    formats=_IMAGE_FORMATS,
    owner="Wan 2.2",
    max_bytes=10_000_000,
    min_side=360,
    max_side=2000,
    allow_alpha=False,
)


class _PromptAndImage(ModelInput, frozen=True):
    # The two required inputs, positional; subclasses add keyword-only options.
    prompt: str
    img_url: MediaSource


class Wan25ImageToVideo(_PromptAndImage, frozen=True, kw_only=True):
    """Inputs for ``wan-ai/wan-2-5/image-to-video``: animate an image, optionally with sound.

    Args:
        prompt: What should happen in the video; 1–800 characters.
        img_url: The first frame: JPEG, PNG, BMP or WEBP, width and height 360–2000 px.
        audio_url: Optional soundtrack: WAV or MP3, 3–30 s, under 15 MB.
        duration: Video length in seconds, 5 or 10.
        resolution: ``"480P"``, ``"720P"`` or ``"1080P"`` (upper-case P).
        negative_prompt: What to avoid.

    Raises:
        InputValidationError: A value breaks the model's schema; nothing is sent.
    """

    model_id: ClassVar[str] = "wan-ai/wan-2-5/image-to-video"
    display_name: ClassVar[str] = "Wan 2.5"
    media_rules: ClassVar[Mapping[str, MediaRule]] = MappingProxyType(
        {"img_url": _WAN25_IMAGE, "audio_url": _WAN25_AUDIO}
    )

    audio_url: MediaSource | None = None
    duration: Literal[5, 10] = 5
    resolution: Literal["480P", "720P", "1080P"] = "480P"
    negative_prompt: str | None = None

    def __post_init__(self) -> None:
        """Refuse values the model's schema does not allow."""
        check_text("prompt", self.prompt, owner=self.display_name, max_length=_PROMPT_MAX)
        check_media_value("img_url", self.img_url, kind="image")
        if self.audio_url is not None:
            check_media_value("audio_url", self.audio_url, kind="audio")
        check_choice("duration", self.duration, (5, 10))
        check_choice("resolution", self.resolution, ("480P", "720P", "1080P"))
        # No length limit is documented for Wan 2.5's negative prompt: the server decides.
        check_text("negative_prompt", self.negative_prompt, owner=self.display_name, required=False)


class Wan22ImageToVideo(_PromptAndImage, frozen=True, kw_only=True):
    """Inputs for ``wan-ai/wan-2-2/image-to-video``: animate an image.

    Args:
        prompt: What should happen in the video; 1–800 characters.
        img_url: The first frame: JPEG, PNG, BMP or WEBP without transparency, width and
            height 360–2000 px, under 10 MB.
        negative_prompt: What to avoid; at most 500 characters.
        template: A named motion effect, e.g. ``"squish"``, ``"flying"``, ``"carousel"``.
        resolution: ``"480P"`` or ``"1080P"`` (Wan 2.2 has no 720P).
        duration: Video length in seconds; only 5.
        prompt_extend: Let the model rewrite the prompt in more detail.
        seed: Random seed, 0–2147483647, for repeatable results.

    Raises:
        InputValidationError: A value breaks the model's schema; nothing is sent.
    """

    model_id: ClassVar[str] = "wan-ai/wan-2-2/image-to-video"
    display_name: ClassVar[str] = "Wan 2.2"
    media_rules: ClassVar[Mapping[str, MediaRule]] = MappingProxyType({"img_url": _WAN22_IMAGE})

    negative_prompt: str | None = None
    # The template list is not published in full, so any non-blank name is sent as is.
    template: str | None = None
    resolution: Literal["480P", "1080P"] = "480P"
    duration: Literal[5] = 5
    prompt_extend: bool = True
    seed: int | None = None

    def __post_init__(self) -> None:
        """Refuse values the model's schema does not allow."""
        owner = self.display_name
        check_text("prompt", self.prompt, owner=owner, max_length=_PROMPT_MAX)
        check_media_value("img_url", self.img_url, kind="image")
        check_text(
            "negative_prompt",
            self.negative_prompt,
            owner=owner,
            required=False,
            max_length=_WAN22_NEGATIVE_MAX,
        )
        if self.template is not None:
            check_text("template", self.template, owner=owner)
        check_choice("resolution", self.resolution, ("480P", "1080P"))
        check_choice("duration", self.duration, (5,))
        check_bool("prompt_extend", self.prompt_extend)
        if self.seed is not None:
            check_int_range("seed", self.seed, 0, _SEED_MAX)

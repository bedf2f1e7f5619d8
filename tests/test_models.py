"""Typed model inputs: construction-time validation and the JSON they produce."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from runcomfy_async._errors import InputValidationError
from runcomfy_async.models import ModelInput, Wan22ImageToVideo, Wan25ImageToVideo

URL = "https://example.com/fox.png"
PROMPT = "a red fox running through snow"


def refused(excinfo: pytest.ExceptionInfo[InputValidationError], field: str, value: object) -> str:
    """Check the structured facts of a refusal and return its rule text."""
    error = excinfo.value
    assert error.field == field
    assert error.value == value
    assert error.rule
    assert field in str(error)
    return error.rule


# --- valid inputs and their JSON ---------------------------------------------------------


def test_wan25_minimal_inputs_golden() -> None:
    """Wan 2.5 sends the required fields plus its defaults, and omits unset options."""
    inputs = Wan25ImageToVideo(PROMPT, URL).to_inputs()
    assert inputs == {"prompt": PROMPT, "img_url": URL, "duration": 5, "resolution": "480P"}


def test_wan25_all_options_golden() -> None:
    """Every Wan 2.5 option lands under the name the API documents."""
    model = Wan25ImageToVideo(
        prompt=PROMPT,
        img_url=URL,
        audio_url="https://example.com/a.mp3",
        duration=10,
        resolution="1080P",
        negative_prompt="blurry",
    )
    assert model.to_inputs() == {
        "prompt": PROMPT,
        "img_url": URL,
        "audio_url": "https://example.com/a.mp3",
        "duration": 10,
        "resolution": "1080P",
        "negative_prompt": "blurry",
    }


def test_wan22_all_options_golden() -> None:
    """Every Wan 2.2 option lands under the name the API documents."""
    model = Wan22ImageToVideo(
        PROMPT,
        URL,
        negative_prompt="blurry",
        template="squish",
        resolution="1080P",
        duration=5,
        prompt_extend=False,
        seed=42,
    )
    assert model.to_inputs() == {
        "prompt": PROMPT,
        "img_url": URL,
        "negative_prompt": "blurry",
        "template": "squish",
        "resolution": "1080P",
        "duration": 5,
        "prompt_extend": False,
        "seed": 42,
    }


def test_wan22_defaults_golden() -> None:
    """Wan 2.2 sends its documented defaults and omits the unset seed and template."""
    assert Wan22ImageToVideo(PROMPT, URL).to_inputs() == {
        "prompt": PROMPT,
        "img_url": URL,
        "resolution": "480P",
        "duration": 5,
        "prompt_extend": True,
    }


def test_model_ids() -> None:
    """Each class knows the model it is for."""
    assert Wan25ImageToVideo.model_id == "wan-ai/wan-2-5/image-to-video"
    assert Wan22ImageToVideo.model_id == "wan-ai/wan-2-2/image-to-video"
    assert isinstance(Wan25ImageToVideo(PROMPT, URL), ModelInput)


def test_inputs_are_frozen() -> None:
    """A validated input cannot be changed afterwards, so it stays valid."""
    model = Wan25ImageToVideo(PROMPT, URL)
    with pytest.raises(AttributeError):
        model.prompt = "x"  # type: ignore[misc]


def test_replace_revalidates() -> None:
    """msgspec.structs.replace builds a new input, so the checks run again."""
    model = Wan25ImageToVideo(PROMPT, URL)
    assert msgspec.structs.replace(model, resolution="720P").resolution == "720P"
    with pytest.raises(InputValidationError):
        msgspec.structs.replace(model, resolution="720p")


def test_options_are_keyword_only() -> None:
    """Only prompt and img_url are positional, so options cannot be swapped by accident."""
    with pytest.raises(TypeError):
        Wan25ImageToVideo(PROMPT, URL, None, 10)  # type: ignore[call-arg]


def test_to_inputs_returns_a_fresh_dict() -> None:
    """Mutating the returned dict does not touch the input."""
    model = Wan25ImageToVideo(PROMPT, URL)
    model.to_inputs()["prompt"] = "changed"
    assert model.to_inputs()["prompt"] == PROMPT


def test_to_inputs_refuses_local_files(tmp_path: Path) -> None:
    """to_inputs() never reads files: a local path points to prepare_inputs instead."""
    model = Wan25ImageToVideo(PROMPT, tmp_path / "fox.png")
    with pytest.raises(RuntimeError, match="prepare_inputs"):
        model.to_inputs()


def test_repr_shortens_bytes() -> None:
    """A file given as bytes does not flood the repr."""
    text = repr(Wan25ImageToVideo(PROMPT, b"\x89PNG" + b"\x00" * 10_000))
    assert "<10,004 bytes>" in text
    assert len(text) < 300


def test_validation_error_is_a_value_error() -> None:
    """Callers catching ValueError also catch refused inputs."""
    with pytest.raises(ValueError, match="prompt"):
        Wan25ImageToVideo("", URL)


# --- prompt and text fields --------------------------------------------------------------


@pytest.mark.parametrize("model", [Wan25ImageToVideo, Wan22ImageToVideo])
@pytest.mark.parametrize("prompt", ["", "   ", "\n"])
def test_blank_prompt_refused(model: type[Wan25ImageToVideo], prompt: str) -> None:
    """The prompt is required and must not be blank."""
    with pytest.raises(InputValidationError) as excinfo:
        model(prompt, URL)
    assert "required" in refused(excinfo, "prompt", prompt)


@pytest.mark.parametrize("model", [Wan25ImageToVideo, Wan22ImageToVideo])
@pytest.mark.parametrize("prompt", [None, 42, b"bytes"])
def test_non_string_prompt_refused(model: type[Wan25ImageToVideo], prompt: Any) -> None:
    """A prompt that is not a string is refused, naming its type."""
    with pytest.raises(InputValidationError) as excinfo:
        model(prompt, URL)
    assert "string" in refused(excinfo, "prompt", prompt)


@pytest.mark.parametrize("model", [Wan25ImageToVideo, Wan22ImageToVideo])
def test_prompt_length_limit_is_800(model: type[Wan25ImageToVideo]) -> None:
    """800 characters pass and 801 fail, for both models (the stricter documented limit)."""
    model("x" * 800, URL)
    with pytest.raises(InputValidationError) as excinfo:
        model("x" * 801, URL)
    assert "801 characters" in refused(excinfo, "prompt", "x" * 801)


@given(st.text(min_size=1, max_size=900).filter(lambda s: s.strip()))
def test_prompt_accepted_exactly_up_to_800(prompt: str) -> None:
    """Any non-blank prompt is accepted if and only if it has at most 800 characters."""
    if len(prompt) <= 800:
        assert Wan25ImageToVideo(prompt, URL).prompt == prompt
    else:
        with pytest.raises(InputValidationError):
            Wan25ImageToVideo(prompt, URL)


def test_wan22_negative_prompt_limit_is_500() -> None:
    """Wan 2.2's negative prompt may have 500 characters, not 501."""
    Wan22ImageToVideo(PROMPT, URL, negative_prompt="n" * 500)
    with pytest.raises(InputValidationError) as excinfo:
        Wan22ImageToVideo(PROMPT, URL, negative_prompt="n" * 501)
    assert "at most 500" in refused(excinfo, "negative_prompt", "n" * 501)


def test_wan25_negative_prompt_has_no_local_limit() -> None:
    """No limit is documented for Wan 2.5's negative prompt, so none is enforced."""
    assert Wan25ImageToVideo(PROMPT, URL, negative_prompt="n" * 2000).negative_prompt


@pytest.mark.parametrize("model", [Wan25ImageToVideo, Wan22ImageToVideo])
def test_non_string_negative_prompt_refused(model: type[Wan25ImageToVideo]) -> None:
    """A negative prompt that is not a string is refused."""
    with pytest.raises(InputValidationError) as excinfo:
        model(PROMPT, URL, negative_prompt=["blurry"])  # type: ignore[arg-type]
    refused(excinfo, "negative_prompt", ["blurry"])


@pytest.mark.parametrize("template", ["", "  ", 3])
def test_bad_template_refused(template: Any) -> None:
    """A Wan 2.2 template must be a non-blank string."""
    with pytest.raises(InputValidationError) as excinfo:
        Wan22ImageToVideo(PROMPT, URL, template=template)
    refused(excinfo, "template", template)


# --- enums, numbers, booleans ------------------------------------------------------------


def test_wan25_resolutions_accepted() -> None:
    """Wan 2.5 accepts 480P, 720P and 1080P."""
    for resolution in ("480P", "720P", "1080P"):
        Wan25ImageToVideo(PROMPT, URL, resolution=resolution)


def test_lower_case_resolution_refused_with_spelling() -> None:
    """'720p' is refused, not normalised, and the message names the right spelling."""
    with pytest.raises(InputValidationError) as excinfo:
        Wan25ImageToVideo(PROMPT, URL, resolution="720p")  # type: ignore[arg-type]
    assert "'720P'" in refused(excinfo, "resolution", "720p")


@pytest.mark.parametrize("resolution", ["4K", "720", 720, None])
def test_unknown_resolution_refused(resolution: Any) -> None:
    """A resolution outside the enum, or not a string, is refused."""
    with pytest.raises(InputValidationError) as excinfo:
        Wan25ImageToVideo(PROMPT, URL, resolution=resolution)
    refused(excinfo, "resolution", resolution)


def test_wan22_has_no_720p() -> None:
    """Wan 2.2 accepts 480P and 1080P only."""
    Wan22ImageToVideo(PROMPT, URL, resolution="1080P")
    with pytest.raises(InputValidationError) as excinfo:
        Wan22ImageToVideo(PROMPT, URL, resolution="720P")  # type: ignore[arg-type]
    assert "'480P', '1080P'" in refused(excinfo, "resolution", "720P")


@pytest.mark.parametrize("duration", [7, 0, -5, 15])
def test_wan25_duration_outside_enum_refused(duration: Any) -> None:
    """Wan 2.5 durations are 5 or 10 seconds only."""
    Wan25ImageToVideo(PROMPT, URL, duration=10)
    with pytest.raises(InputValidationError) as excinfo:
        Wan25ImageToVideo(PROMPT, URL, duration=duration)
    assert "one of 5, 10" in refused(excinfo, "duration", duration)


@pytest.mark.parametrize("duration", ["5", 5.0, True, None])
def test_duration_of_wrong_type_refused(duration: Any) -> None:
    """A duration must be an int: a str, float, bool or None is refused."""
    with pytest.raises(InputValidationError) as excinfo:
        Wan25ImageToVideo(PROMPT, URL, duration=duration)
    assert "integer" in refused(excinfo, "duration", duration)


def test_wan22_duration_is_5_only() -> None:
    """Wan 2.2 only makes 5-second videos."""
    with pytest.raises(InputValidationError) as excinfo:
        Wan22ImageToVideo(PROMPT, URL, duration=10)  # type: ignore[arg-type]
    refused(excinfo, "duration", 10)


@pytest.mark.parametrize("seed", [0, 1, 2**31 - 1])
def test_seed_in_range_accepted(seed: int) -> None:
    """Seeds from 0 to 2**31 - 1 are accepted."""
    assert Wan22ImageToVideo(PROMPT, URL, seed=seed).to_inputs()["seed"] == seed


@pytest.mark.parametrize("seed", [-1, 2**31, True, False, "1", 1.0])
def test_bad_seed_refused(seed: Any) -> None:
    """A seed out of range, a bool, a str or a float is refused."""
    with pytest.raises(InputValidationError) as excinfo:
        Wan22ImageToVideo(PROMPT, URL, seed=seed)
    refused(excinfo, "seed", seed)


@given(st.integers())
def test_seed_accepted_exactly_in_range(seed: int) -> None:
    """Any int seed is accepted if and only if it lies in 0..2**31 - 1."""
    if 0 <= seed <= 2**31 - 1:
        Wan22ImageToVideo(PROMPT, URL, seed=seed)
    else:
        with pytest.raises(InputValidationError):
            Wan22ImageToVideo(PROMPT, URL, seed=seed)


@pytest.mark.parametrize("flag", [1, 0, "true", None])
def test_prompt_extend_must_be_bool(flag: Any) -> None:
    """prompt_extend must be exactly True or False."""
    with pytest.raises(InputValidationError) as excinfo:
        Wan22ImageToVideo(PROMPT, URL, prompt_extend=flag)
    refused(excinfo, "prompt_extend", flag)


# --- file fields ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "img",
    [
        URL,
        "http://example.com/fox.png",
        "HTTPS://EXAMPLE.COM/FOX.PNG",
        "https://example.com/fox?size=large",
        "data:image/png;base64,iVBORw0KGgo=",
        "data:application/octet-stream;base64,iVBORw0KGgo=",
        Path("fox.png"),
        b"\x89PNG\r\n\x1a\n",
    ],
)
def test_accepted_image_values(img: Any) -> None:
    """img_url takes an http(s) URL, a data: URI, a Path or bytes."""
    assert Wan25ImageToVideo(PROMPT, img).img_url == img


def test_string_that_looks_like_a_path_suggests_path() -> None:
    """A bare file name is refused with a hint to wrap it in Path(...)."""
    with pytest.raises(InputValidationError) as excinfo:
        Wan25ImageToVideo(PROMPT, "photos/fox.png")
    assert "Path('photos/fox.png')" in refused(excinfo, "img_url", "photos/fox.png")


@pytest.mark.parametrize("path", ["/tmp/fox", "./fox", "~/fox.jpg", "C:\\pics\\fox.jpg"])
def test_other_path_shapes_suggest_path(path: str) -> None:
    """Absolute, relative, home and Windows paths all get the Path(...) hint."""
    with pytest.raises(InputValidationError) as excinfo:
        Wan22ImageToVideo(PROMPT, path)
    assert "Path(" in refused(excinfo, "img_url", path)


@pytest.mark.parametrize(
    "img",
    [
        "",
        "fox",
        "ftp://example.com/fox.png",
        "file:///tmp/fox.png",
        "https://",
        "https://exa mple.com/fox.png",
        "data:image/png;base64,",
        "data:image/png,rawtext",
        "data:audio/wav;base64,UklGRg==",
        "data:text/plain;base64,aGk=",
        b"",
        42,
        None,
    ],
)
def test_refused_image_values(img: Any) -> None:
    """Anything but a URL, a base64 image data: URI, a Path or non-empty bytes is refused."""
    with pytest.raises(InputValidationError) as excinfo:
        Wan25ImageToVideo(PROMPT, img)
    assert excinfo.value.field == "img_url"
    assert excinfo.value.rule


@pytest.mark.parametrize("audio", ["data:image/png;base64,iVBORw0KGgo=", "song.mp3", 3.5])
def test_refused_audio_values(audio: Any) -> None:
    """audio_url follows the same shape rules, and a data: URI must declare audio."""
    with pytest.raises(InputValidationError) as excinfo:
        Wan25ImageToVideo(PROMPT, URL, audio_url=audio)
    assert excinfo.value.field == "audio_url"

"""Local files → checked data: URIs: formats by content, pixel and byte limits, audio length."""

from __future__ import annotations

import base64
import io
import sys
import wave
from pathlib import Path
from types import MappingProxyType

import pytest
from PIL import Image

from runcomfy_async._errors import InputValidationError
from runcomfy_async.inputs import _files as _inputs
from runcomfy_async.inputs._files import (
    MediaRule,
    check_request_size,
    encode_media,
    prepare_mapping,
    probe_media,
)
from runcomfy_async.models import Wan22ImageToVideo, Wan25ImageToVideo, prepare_inputs

pytestmark = pytest.mark.anyio

PROMPT = "a red fox running through snow"
URL = "https://example.com/fox.png"


def image_bytes(size: tuple[int, int] = (400, 400), fmt: str = "PNG", mode: str = "RGB") -> bytes:
    """Encode a blank image in memory."""
    buffer = io.BytesIO()
    Image.new(mode, size).save(buffer, fmt)
    return buffer.getvalue()


def write(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` and return the path."""
    path.write_bytes(data)
    return path


def wav_bytes(seconds: float, rate: int = 8000) -> bytes:
    """Encode silence as a tiny WAV: 8 kHz, mono, 8-bit."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(1)
        out.setframerate(rate)
        out.writeframes(b"\x80" * int(seconds * rate))
    return buffer.getvalue()


def decoded(uri: object) -> tuple[str, bytes]:
    """Split a data: URI into its MIME type and decoded content."""
    assert isinstance(uri, str)
    header, payload = uri.split(",", 1)
    assert header.startswith("data:")
    assert header.endswith(";base64")
    return header[5:-7], base64.b64decode(payload)


# --- images that pass ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "mime"),
    [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("WEBP", "image/webp"), ("BMP", "image/bmp")],
)
async def test_valid_image_becomes_data_uri(tmp_path: Path, fmt: str, mime: str) -> None:
    """PNG, JPEG, WEBP and BMP files of valid size become data: URIs with the right MIME type."""
    data = image_bytes((360, 2000), fmt)
    path = write(tmp_path / f"fox.{fmt.lower()}", data)
    for model in (Wan25ImageToVideo, Wan22ImageToVideo):
        inputs = await prepare_inputs(model(PROMPT, path))
        assert decoded(inputs["img_url"]) == (mime, data)
        assert inputs["prompt"] == PROMPT


async def test_format_is_judged_by_content_not_name(tmp_path: Path) -> None:
    """A JPEG named .png is sent as image/jpeg."""
    path = write(tmp_path / "really-a-jpeg.png", image_bytes(fmt="JPEG"))
    inputs = await prepare_inputs(Wan25ImageToVideo(PROMPT, path))
    assert decoded(inputs["img_url"])[0] == "image/jpeg"


async def test_bytes_input_becomes_data_uri() -> None:
    """Raw bytes are checked and inlined like a file."""
    data = image_bytes()
    inputs = await prepare_inputs(Wan25ImageToVideo(PROMPT, data))
    assert decoded(inputs["img_url"]) == ("image/png", data)


async def test_data_uri_input_is_checked_and_mime_corrected() -> None:
    """A data: URI is decoded and checked; its MIME type is rewritten to the real one."""
    payload = base64.b64encode(image_bytes()).decode()
    model = Wan25ImageToVideo(PROMPT, f"data:image/jpeg;base64,{payload}")
    inputs = await prepare_inputs(model)
    assert inputs["img_url"] == f"data:image/png;base64,{payload}"


async def test_url_inputs_pass_through_untouched() -> None:
    """URLs are neither fetched nor changed; prepare_inputs equals to_inputs for them."""
    model = Wan25ImageToVideo(PROMPT, URL, audio_url="https://example.com/a.mp3")
    assert await prepare_inputs(model) == model.to_inputs()


async def test_boundary_sizes_pass() -> None:
    """360 and 2000 px are both inside the documented 360–2000 px range."""
    for size in ((360, 360), (2000, 2000), (360, 2000)):
        await prepare_inputs(Wan22ImageToVideo(PROMPT, image_bytes(size)))


# --- images that fail ----------------------------------------------------------------------


@pytest.mark.parametrize("size", [(300, 300), (359, 400), (400, 359)])
async def test_too_small_image_refused(tmp_path: Path, size: tuple[int, int]) -> None:
    """An image under 360 px on either side is refused with its size in the message."""
    path = write(tmp_path / "small.png", image_bytes(size))
    with pytest.raises(InputValidationError) as excinfo:
        await prepare_inputs(Wan25ImageToVideo(PROMPT, path))
    error = excinfo.value
    assert (error.field, error.value) == ("img_url", path)
    assert error.rule == (
        f"image is {size[0]}×{size[1]} px; Wan 2.5 needs width and height within 360–2000 px"
    )


async def test_too_large_image_refused() -> None:
    """An image over 2000 px on either side is refused."""
    with pytest.raises(InputValidationError) as excinfo:
        await prepare_inputs(Wan22ImageToVideo(PROMPT, image_bytes((2001, 400))))
    assert "2001×400 px; Wan 2.2" in excinfo.value.rule
    assert excinfo.value.value == f"<{len(image_bytes((2001, 400))):,} bytes>"


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
async def test_alpha_refused_by_wan22_only(tmp_path: Path, mode: str) -> None:
    """An image with an alpha channel is refused by Wan 2.2 and accepted by Wan 2.5."""
    path = write(tmp_path / "alpha.png", image_bytes(mode=mode))
    await prepare_inputs(Wan25ImageToVideo(PROMPT, path))
    with pytest.raises(InputValidationError) as excinfo:
        await prepare_inputs(Wan22ImageToVideo(PROMPT, path))
    assert (excinfo.value.field, excinfo.value.value) == ("img_url", path)
    assert "alpha channel" in excinfo.value.rule
    assert mode in excinfo.value.rule


async def test_palette_transparency_refused_by_wan22() -> None:
    """A palette PNG with a transparent colour counts as having alpha."""
    image = Image.new("P", (400, 400))
    image.info["transparency"] = 0
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    with pytest.raises(InputValidationError, match="transparency"):
        await prepare_inputs(Wan22ImageToVideo(PROMPT, buffer.getvalue()))


async def test_text_file_named_png_refused(tmp_path: Path) -> None:
    """A text file with a .png name is refused: the content decides."""
    path = write(tmp_path / "fake.png", b"just some text, not an image\n" * 20)
    with pytest.raises(InputValidationError) as excinfo:
        await prepare_inputs(Wan25ImageToVideo(PROMPT, path))
    assert (excinfo.value.field, excinfo.value.value) == ("img_url", path)
    assert "judged by content" in excinfo.value.rule


async def test_gif_refused_as_unsupported_format() -> None:
    """A GIF is recognised and refused, naming the accepted formats."""
    with pytest.raises(InputValidationError) as excinfo:
        await prepare_inputs(Wan25ImageToVideo(PROMPT, image_bytes(fmt="GIF")))
    assert excinfo.value.rule == (
        "file is GIF (image, judged by content); Wan 2.5 accepts JPEG, PNG, BMP, WEBP"
    )


async def test_truncated_png_refused() -> None:
    """A PNG cut short is refused rather than sent."""
    data = image_bytes()
    with pytest.raises(InputValidationError, match="not a readable PNG"):
        await prepare_inputs(Wan25ImageToVideo(PROMPT, data[: len(data) // 2]))


async def test_invalid_base64_refused() -> None:
    """A data: URI whose payload is not base64 is refused."""
    with pytest.raises(InputValidationError, match="base64") as excinfo:
        await prepare_inputs(Wan25ImageToVideo(PROMPT, "data:image/png;base64,%%%%"))
    assert excinfo.value.field == "img_url"


async def test_missing_file_refused(tmp_path: Path) -> None:
    """A path that does not exist is refused before any request."""
    path = tmp_path / "nope.png"
    with pytest.raises(InputValidationError) as excinfo:
        await prepare_inputs(Wan25ImageToVideo(PROMPT, path))
    assert (excinfo.value.field, excinfo.value.value, excinfo.value.rule) == (
        "img_url",
        path,
        "no such file",
    )


async def test_directory_refused(tmp_path: Path) -> None:
    """A directory is not a file."""
    with pytest.raises(InputValidationError, match="directory"):
        await prepare_inputs(Wan25ImageToVideo(PROMPT, tmp_path))


async def test_empty_file_refused(tmp_path: Path) -> None:
    """An empty file is refused."""
    with pytest.raises(InputValidationError, match="empty"):
        await prepare_inputs(Wan25ImageToVideo(PROMPT, write(tmp_path / "e.png", b"")))


# --- byte caps (with small caps patched in, so no big files are written) -------------------


async def test_data_uri_cap_refuses_large_image(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An image over RunComfy's data-URI cap is refused, pointing to an https URL instead."""
    monkeypatch.setattr(
        _inputs, "DATA_URI_CAPS", MappingProxyType({"image": 100, "audio": 100, "video": 100})
    )
    path = write(tmp_path / "fox.png", image_bytes())
    with pytest.raises(InputValidationError) as excinfo:
        await prepare_inputs(Wan25ImageToVideo(PROMPT, path))
    assert (excinfo.value.field, excinfo.value.value) == ("img_url", path)
    assert "data: URI" in excinfo.value.rule
    assert "https URL" in excinfo.value.rule


async def test_model_byte_cap_refuses_large_image(monkeypatch: pytest.MonkeyPatch) -> None:
    """Wan 2.2's own byte cap (strictly under the limit) is applied to local images."""
    data = image_bytes()
    small = MediaRule(
        kind="image", formats=("png",), owner="Wan 2.2", max_bytes=len(data), min_side=360
    )
    monkeypatch.setattr(Wan22ImageToVideo, "media_rules", MappingProxyType({"img_url": small}))
    with pytest.raises(InputValidationError) as excinfo:
        await prepare_inputs(Wan22ImageToVideo(PROMPT, data))
    assert f"Wan 2.2 needs images under {len(data):,} bytes" in excinfo.value.rule
    relaxed = MediaRule(kind="image", formats=("png",), max_bytes=len(data) + 1)
    assert await encode_media(data, relaxed, field="img_url")


async def test_oversized_file_is_not_read_in_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file past the cap is refused with its true size, from a bounded read."""
    monkeypatch.setattr(
        _inputs, "DATA_URI_CAPS", MappingProxyType({"image": 1000, "audio": 1000, "video": 1000})
    )
    path = write(tmp_path / "big.bmp", image_bytes((400, 400), "BMP"))
    with pytest.raises(InputValidationError) as excinfo:
        await prepare_inputs(Wan25ImageToVideo(PROMPT, path))
    assert excinfo.value.rule.startswith(f"file is {path.stat().st_size:,} bytes; images sent")


async def test_whole_request_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    """A request whose inline data passes the 64 MiB cap is refused as a whole."""
    monkeypatch.setattr(_inputs, "REQUEST_CAP", 1000)
    with pytest.raises(InputValidationError) as excinfo:
        check_request_size({"prompt": "x" * 600, "img_url": "y" * 600})
    assert excinfo.value.field == "inputs"
    check_request_size({"prompt": "x" * 400, "img_url": "y" * 400})


# --- audio ---------------------------------------------------------------------------------


async def test_five_second_wav_passes(tmp_path: Path) -> None:
    """A 5 s WAV is within Wan 2.5's 3–30 s and becomes an audio/wav data: URI."""
    data = wav_bytes(5)
    path = write(tmp_path / "voice.wav", data)
    inputs = await prepare_inputs(Wan25ImageToVideo(PROMPT, URL, audio_url=path))
    assert decoded(inputs["audio_url"]) == ("audio/wav", data)
    assert inputs["img_url"] == URL


@pytest.mark.parametrize(("seconds", "shown"), [(1, "1.0"), (40, "40.0")])
async def test_wav_outside_3_to_30_seconds_refused(
    tmp_path: Path, seconds: float, shown: str
) -> None:
    """A 1 s or a 40 s WAV is refused with its length in the message."""
    path = write(tmp_path / "voice.wav", wav_bytes(seconds))
    with pytest.raises(InputValidationError) as excinfo:
        await prepare_inputs(Wan25ImageToVideo(PROMPT, URL, audio_url=path))
    assert (excinfo.value.field, excinfo.value.value) == ("audio_url", path)
    assert excinfo.value.rule == f"audio is {shown} s long; Wan 2.5 needs within 3–30 s"


async def test_image_given_as_audio_refused(tmp_path: Path) -> None:
    """A PNG in audio_url is refused, naming the accepted audio formats."""
    path = write(tmp_path / "song.wav", image_bytes())
    with pytest.raises(InputValidationError) as excinfo:
        await prepare_inputs(Wan25ImageToVideo(PROMPT, URL, audio_url=path))
    assert excinfo.value.rule == "file is PNG (image, judged by content); Wan 2.5 accepts WAV, MP3"


async def test_wav_needs_no_optional_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """WAV length is read with the stdlib, so mutagen is not needed for WAV."""
    monkeypatch.setitem(sys.modules, "mutagen", None)
    inputs = await prepare_inputs(Wan25ImageToVideo(PROMPT, URL, audio_url=wav_bytes(5)))
    assert decoded(inputs["audio_url"])[0] == "audio/wav"


async def test_missing_pillow_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without Pillow, a local image fails with an ImportError naming the media extra."""
    model = Wan25ImageToVideo(PROMPT, image_bytes())
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(ImportError, match=r"runcomfy-async\[media\]"):
        await prepare_inputs(model)


async def test_missing_mutagen_for_mp3_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without mutagen, an MP3's length cannot be read and the error names the extra."""
    monkeypatch.setitem(sys.modules, "mutagen", None)
    with pytest.raises(ImportError, match=r"runcomfy-async\[media\]"):
        await prepare_inputs(Wan25ImageToVideo(PROMPT, URL, audio_url=b"ID3\x04\x00" + bytes(64)))


# --- untyped mappings ----------------------------------------------------------------------


async def test_prepare_mapping_converts_local_files(tmp_path: Path) -> None:
    """Paths and bytes (also inside lists) become data: URIs; other values pass unchanged."""
    png = image_bytes((64, 64))  # generic checks only: no pixel limits for unknown models
    path = write(tmp_path / "a.png", png)
    inputs = {
        "prompt": PROMPT,
        "image_url": path,
        "image_urls": [path, URL],
        "mask": png,
        "seed": 3,
        "other": "data:image/png;base64,not-checked-here",
    }
    prepared = await prepare_mapping(inputs)
    assert decoded(prepared["image_url"]) == ("image/png", png)
    assert isinstance(prepared["image_urls"], list)
    assert decoded(prepared["image_urls"][0]) == ("image/png", png)
    assert prepared["image_urls"][1] == URL
    assert decoded(prepared["mask"]) == ("image/png", png)
    assert (prepared["prompt"], prepared["seed"], prepared["other"]) == (
        PROMPT,
        3,
        inputs["other"],
    )
    assert inputs["image_url"] == path  # the caller's mapping is left alone


async def test_prepare_mapping_sniffs_video_and_audio() -> None:
    """Video and audio are recognised by their magic bytes in untyped inputs."""
    mp4 = b"\x00\x00\x00\x18ftypmp42" + bytes(32)
    prepared = await prepare_mapping({"video_url": mp4, "audio_url": wav_bytes(1)})
    assert decoded(prepared["video_url"])[0] == "video/mp4"
    assert decoded(prepared["audio_url"])[0] == "audio/wav"


async def test_prepare_mapping_refuses_unknown_content() -> None:
    """Bytes that are no known image, audio or video are refused, naming the key."""
    with pytest.raises(InputValidationError) as excinfo:
        await prepare_mapping({"image_urls": [b"hello world, not media"]})
    assert excinfo.value.field == "image_urls[0]"
    assert excinfo.value.value == "<22 bytes>"


async def test_prepare_mapping_applies_data_uri_caps(monkeypatch: pytest.MonkeyPatch) -> None:
    """Generic data-URI caps apply to untyped inputs too."""
    monkeypatch.setattr(
        _inputs, "DATA_URI_CAPS", MappingProxyType({"image": 10, "audio": 10, "video": 10})
    )
    with pytest.raises(InputValidationError, match="at most"):
        await prepare_mapping({"image_url": image_bytes()})


async def test_probe_media_reads_pixels_and_skips_urls(tmp_path: Path) -> None:
    """probe_media measures local images and returns None for remote URLs."""
    info = await probe_media(write(tmp_path / "a.webp", image_bytes((500, 400), "WEBP")), field="x")
    assert info is not None
    assert (info.kind, info.format, info.width, info.height) == ("image", "webp", 500, 400)
    assert await probe_media(URL, field="x") is None

"""RunComfy's size and length ``validations`` applied to local files and ``data:`` URIs.

``file_size_mb<`` counts decoded bytes with 1 MB = 10^6 (``runcomfy-api.md``, "Schema
vocabulary"); ``duration_seconds`` bounds an audio file's length. Bounds are inclusive, as
for the pixel rules; a remote URL is never fetched. Schemas are written by hand.
"""

from __future__ import annotations

import base64
import io
import wave
from pathlib import Path
from typing import Any

import pytest

import runcomfy_async as rc
from runcomfy_async import Client
from runcomfy_async.testing import ModelSpec, Simulator

from .conftest import FAST_RETRY

pytestmark = pytest.mark.anyio

UPSCALE = "acme/upscale-pro/image-upscale"  # a seed catalog entry: file_size_mb< 5
VOICE = "acme/clone-voice/audio-to-audio"
SIZED = "acme/sized/file-to-file"


def rule(name: str, value: float, message: str | None = None) -> dict[str, Any]:
    """One ``validations`` entry as the catalog lists it."""
    entry: dict[str, Any] = {"validation_rule": name, "validation_value": value}
    if message:
        entry["validation_error"] = message
    return entry


def wav(seconds: float, rate: int = 8000) -> bytes:
    """A silent mono 16-bit WAV of the given length."""
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\0\0" * int(seconds * rate))
    return out.getvalue()


def data_uri(mime: str, data: bytes) -> str:
    """``data`` as a base64 ``data:`` URI."""
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


@pytest.fixture
async def checking(sim: Simulator) -> Any:
    """A client checking every model against its catalog schema, with two made-up models."""
    sim.register_model(
        ModelSpec(
            model_id=VOICE,
            input_schema={
                "type": "object",
                "required": ["audio_url"],
                "properties": {
                    "audio_url": {
                        "type": "string",
                        "format": "audio_uri",
                        "validations": [
                            rule("duration_seconds>", 3, "Audio must last at least 3 seconds."),
                            rule("duration_seconds<", 30),
                        ],
                    }
                },
            },
            duration_input=None,
        )
    )
    sim.register_model(
        ModelSpec(
            model_id=SIZED,
            input_schema={
                "type": "object",
                "properties": {
                    "file_url": {
                        "type": "string",
                        "format": "audio_uri",
                        "validations": [rule("file_size_mb<", 0.016044)],  # 16,044 bytes
                    }
                },
            },
            duration_input=None,
        )
    )
    async with Client(token=sim.token, base_url=sim.url, retry=FAST_RETRY, check_inputs=True) as c:
        yield c


async def test_file_size_counts_decoded_bytes_in_decimal_mb(
    checking: Client, sim: Simulator
) -> None:
    """A file of exactly the bound passes; one byte more is refused, as bytes or data: URI."""
    exact = wav(1.0)  # 44-byte header + 16,000 bytes of samples
    assert len(exact) == 16_044
    await checking.check_inputs(SIZED, {"file_url": exact})
    await checking.check_inputs(SIZED, {"file_url": data_uri("audio/wav", exact)})
    bigger = exact + b"\0\0"  # two bytes more (a size rule reads no more than the bytes)
    for value in (bigger, data_uri("audio/wav", bigger)):
        with pytest.raises(rc.InputValidationError) as info:
            await checking.check_inputs(SIZED, {"file_url": value})
        assert info.value.field == "file_url"
        assert "16,046 bytes" in info.value.rule and "file_size_mb< 0.016044" in info.value.rule
    assert sim.count("model") == 1 and sim.count("submit") == 0


async def test_seed_upscaler_refuses_a_large_local_image(
    checking: Client, sim: Simulator, tmp_path: Path
) -> None:
    """The catalog's upscaler (file_size_mb< 5) refuses a 5,000,001-byte file before submit."""
    image = pytest.importorskip("PIL.Image")
    path = tmp_path / "big.png"
    image.new("RGB", (100, 100)).save(path)
    with path.open("ab") as file:  # trailing bytes after IEND: still a readable PNG
        file.write(b"\0" * (5_000_001 - path.stat().st_size))
    with pytest.raises(rc.InputValidationError) as info:
        await checking.run(UPSCALE, {"image_url": path})
    assert "Image must be smaller than 5 MB." in info.value.rule
    assert "5,000,001 bytes" in info.value.rule
    assert sim.count("submit") == 0


async def test_audio_length_rules_apply_to_local_audio(checking: Client, sim: Simulator) -> None:
    """A 2 s WAV breaks duration_seconds> 3 with the catalog's message; 5 s and URLs pass."""
    with pytest.raises(rc.InputValidationError) as info:
        await checking.submit(VOICE, {"audio_url": wav(2.0)})
    assert info.value.rule.startswith("Audio must last at least 3 seconds. (audio lasts 2 s")
    with pytest.raises(rc.InputValidationError, match="length must be at most 30 s"):
        await checking.submit(VOICE, {"audio_url": data_uri("audio/wav", wav(31.0))})
    assert sim.count("submit") == 0
    await checking.submit(VOICE, {"audio_url": wav(5.0)})
    await checking.submit(VOICE, {"audio_url": "https://example.com/voice.wav"})  # not fetched
    assert sim.count("submit") == 2 and sim.storage_log == []

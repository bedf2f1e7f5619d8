"""Small but real media files served by the simulator's storage origin.

The PNG and the WAV are built in code (zlib + struct, the ``wave`` module); the MP4 is a
one-second, 64x64, 8 fps H.264 clip made once with ffmpeg (``-f lavfi -i
color=c=red:s=64x64:r=8:d=1 -c:v libx264 -crf 40 -preset veryslow -pix_fmt yuv420p -movflags
+faststart``) and embedded here so no package data is needed.
"""

from __future__ import annotations

import base64
import io
import math
import struct
import wave
import zlib
from typing import Final

__all__ = ["MP4_BYTES", "PNG_BYTES", "WAV_BYTES", "content_for", "make_png", "make_wav"]

_PNG_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"
_IMAGE_SUFFIXES: Final = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif")
_AUDIO_SUFFIXES: Final = (".wav", ".mp3", ".flac", ".ogg", ".m4a")


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def make_png(
    width: int = 480, height: int = 480, rgb: tuple[int, int, int] = (200, 60, 40)
) -> bytes:
    """Build a valid, single-colour, 8-bit RGB PNG (no alpha channel).

    Args:
        width: Width in pixels (at least 1).
        height: Height in pixels (at least 1).
        rgb: The fill colour.

    Returns:
        The PNG file's bytes.

    Raises:
        ValueError: If a dimension is not positive.
    """
    if width < 1 or height < 1:
        raise ValueError("width and height must be positive")
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    row = b"\x00" + bytes(rgb) * width
    pixels = zlib.compress(row * height, 9)
    return _PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", pixels) + _chunk(b"IEND", b"")


PNG_BYTES: Final[bytes] = make_png()
"""A 480x480 RGB PNG: inside the Wan models' 360-2000 px input bounds."""


def make_wav(seconds: float = 0.25, rate: int = 8000, tone_hz: float = 440.0) -> bytes:
    """Build a valid mono 16-bit PCM WAV holding a sine tone.

    Args:
        seconds: Length in seconds (at least one sample is written).
        rate: Samples per second.
        tone_hz: The tone's frequency.

    Returns:
        The WAV file's bytes.

    Raises:
        ValueError: If ``seconds`` is negative or ``rate`` is not positive.
    """
    if seconds < 0 or rate < 1:
        raise ValueError("seconds must be >= 0 and rate positive")
    count = max(1, round(seconds * rate))
    frames = b"".join(
        struct.pack("<h", round(8000 * math.sin(2 * math.pi * tone_hz * i / rate)))
        for i in range(count)
    )
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(frames)
    return buffer.getvalue()


WAV_BYTES: Final[bytes] = make_wav()
"""A quarter-second 8 kHz mono WAV tone (about 4 kB)."""

MP4_BYTES: Final[bytes] = base64.b64decode(
    "AAAAIGZ0eXBpc29tAAACAGlzb21pc28yYXZjMW1wNDEAAAOFbW9vdgAAAGxtdmhkAAAAAAAAAAAAAAAAAAAD6AAA"
    "A+gAAQAAAQAAAAAAAAAAAAAAAAEAAAAAAAAAAAAAAAAAAAABAAAAAAAAAAAAAAAAAABAAAAAAAAAAAAAAAAAAAAA"
    "AAAAAAAAAAAAAAAAAAAAAgAAAq90cmFrAAAAXHRraGQAAAADAAAAAAAAAAAAAAABAAAAAAAAA+gAAAAAAAAAAAAA"
    "AAAAAAAAAAEAAAAAAAAAAAAAAAAAAAABAAAAAAAAAAAAAAAAAABAAAAAAEAAAABAAAAAAAAkZWR0cwAAABxlbHN0"
    "AAAAAAAAAAEAAAPoAAAQAAABAAAAAAInbWRpYQAAACBtZGhkAAAAAAAAAAAAAAAAAABAAAAAQABVxAAAAAAALWhk"
    "bHIAAAAAAAAAAHZpZGUAAAAAAAAAAAAAAABWaWRlb0hhbmRsZXIAAAAB0m1pbmYAAAAUdm1oZAAAAAEAAAAAAAAA"
    "AAAAACRkaW5mAAAAHGRyZWYAAAAAAAAAAQAAAAx1cmwgAAAAAQAAAZJzdGJsAAAAwnN0c2QAAAAAAAAAAQAAALJh"
    "dmMxAAAAAAAAAAEAAAAAAAAAAAAAAAAAAAAAAEAAQABIAAAASAAAAAAAAAABFUxhdmM1OS4zNy4xMDAgbGlieDI2"
    "NAAAAAAAAAAAAAAAGP//AAAAOGF2Y0MBZAAK/+EAGmdkAAqscgREJsBEAAADAAQAAAMAQDxIlhGAAQAHaOhDg5LI"
    "sP34+AAAAAAQcGFzcAAAAAEAAAABAAAAFGJ0cnQAAAAAAAAZmAAAGZgAAAAYc3R0cwAAAAAAAAABAAAACAAACAAA"
    "AAAUc3RzcwAAAAAAAAABAAAAAQAAADhjdHRzAAAAAAAAAAUAAAABAAAQAAAAAAEAAEAAAAAAAQAAGAAAAAACAAAA"
    "AAAAAAMAAAgAAAAAHHN0c2MAAAAAAAAAAQAAAAEAAAAIAAAAAQAAADRzdHN6AAAAAAAAAAAAAAAIAAAC2AAAAA0A"
    "AAANAAAADQAAAA0AAAANAAAADQAAAA0AAAAUc3RjbwAAAAAAAAABAAADtQAAAGJ1ZHRhAAAAWm1ldGEAAAAAAAAA"
    "IWhkbHIAAAAAAAAAAG1kaXJhcHBsAAAAAAAAAAAAAAAALWlsc3QAAAAlqXRvbwAAAB1kYXRhAAAAAQAAAABMYXZm"
    "NTkuMjcuMTAwAAAACGZyZWUAAAM7bWRhdAAAAq8GBf//q9xF6b3m2Ui3lizYINkj7u94MjY0IC0gY29yZSAxNjQg"
    "cjMwOTUgYmFlZTQwMCAtIEguMjY0L01QRUctNCBBVkMgY29kZWMgLSBDb3B5bGVmdCAyMDAzLTIwMjIgLSBodHRw"
    "Oi8vd3d3LnZpZGVvbGFuLm9yZy94MjY0Lmh0bWwgLSBvcHRpb25zOiBjYWJhYz0xIHJlZj0xNiBkZWJsb2NrPTE6"
    "MDowIGFuYWx5c2U9MHgzOjB4MTMzIG1lPXVtaCBzdWJtZT0xMCBwc3k9MSBwc3lfcmQ9MS4wMDowLjAwIG1peGVk"
    "X3JlZj0xIG1lX3JhbmdlPTI0IGNocm9tYV9tZT0xIHRyZWxsaXM9MiA4eDhkY3Q9MSBjcW09MCBkZWFkem9uZT0y"
    "MSwxMSBmYXN0X3Bza2lwPTEgY2hyb21hX3FwX29mZnNldD0tMiB0aHJlYWRzPTIgbG9va2FoZWFkX3RocmVhZHM9"
    "MSBzbGljZWRfdGhyZWFkcz0wIG5yPTAgZGVjaW1hdGU9MSBpbnRlcmxhY2VkPTAgYmx1cmF5X2NvbXBhdD0wIGNv"
    "bnN0cmFpbmVkX2ludHJhPTAgYmZyYW1lcz04IGJfcHlyYW1pZD0yIGJfYWRhcHQ9MiBiX2JpYXM9MCBkaXJlY3Q9"
    "MyB3ZWlnaHRiPTEgb3Blbl9nb3A9MCB3ZWlnaHRwPTIga2V5aW50PTI1MCBrZXlpbnRfbWluPTggc2NlbmVjdXQ9"
    "NDAgaW50cmFfcmVmcmVzaD0wIHJjX2xvb2thaGVhZD02MCByYz1jcmYgbWJ0cmVlPTEgY3JmPTQwLjAgcWNvbXA9"
    "MC42MCBxcG1pbj0wIHFwbWF4PTY5IHFwc3RlcD00IGlwX3JhdGlvPTEuNDAgYXE9MToxLjAwAIAAAAAhZYiBAAI/"
    "/iRHwKSH6mCOPMgU4HVdHJHqNQqpppNfzIpnAAAACUGaCO2Id/8B1QAAAAlBnhBnEEP/OCEAAAAJAZ4YJoh3/0DA"
    "AAAACQGeGEaId/9AwQAAAAkBnhiNSHf/QMEAAAAJAZ4YrUh3/0DBAAAACQGeGM1Id/9AwQ=="
)
"""A one-second 64x64 H.264 MP4 (about 1.7 kB)."""


def content_for(name: str) -> tuple[bytes, str]:
    """Pick the bytes and Content-Type served for an output file name.

    Args:
        name: The file name (or path) from the output URL.

    Returns:
        ``(body, content_type)``: the PNG for image-like names, the WAV for audio-like ones,
        else the MP4.
    """
    if name.lower().endswith(_IMAGE_SUFFIXES):
        return PNG_BYTES, "image/png"
    if name.lower().endswith(_AUDIO_SUFFIXES):
        return WAV_BYTES, "audio/wav"
    return MP4_BYTES, "video/mp4"

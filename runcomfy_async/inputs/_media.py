"""What a file is, judged by its content: format, size, pixels, transparency, length.

Format comes from magic bytes, never from a file name. Image facts are read with Pillow
and audio length with the stdlib ``wave`` module or mutagen; Pillow and mutagen are the
optional ``media`` extra and are imported only when a file needs them, with an
``ImportError`` that says how to install them. Everything here is synchronous and does
CPU work: callers run it in a worker thread (see ``_inputs.py``).
"""

from __future__ import annotations

import io
import wave
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final, Literal, TypeAlias

import msgspec

from .._errors import InputValidationError

__all__ = [
    "MediaInfo",
    "MediaKind",
    "describe",
    "detail",
    "refuse",
    "sniff",
]

MediaKind: TypeAlias = Literal["image", "audio", "video"]

_MIME: Final[Mapping[str, str]] = MappingProxyType(
    {
        "png": "image/png",
        "jpeg": "image/jpeg",
        "bmp": "image/bmp",
        "webp": "image/webp",
        "gif": "image/gif",
        "tiff": "image/tiff",
        "wav": "audio/wav",
        "mp3": "audio/mpeg",
        "flac": "audio/flac",
        "ogg": "audio/ogg",
        "mp4": "video/mp4",
        "mov": "video/quicktime",
        "webm": "video/webm",
    }
)
_PILLOW_FORMATS: Final = frozenset({"png", "jpeg", "bmp", "webp", "gif", "tiff"})
_ALPHA_MODES: Final = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_NEEDS_MEDIA: Final = (
    "checking a local {what} needs {lib}, which is not installed: "
    "pip install 'runcomfy-async[media]' (or pass an https URL instead)"
)


class MediaInfo(msgspec.Struct, frozen=True, kw_only=True):
    """What we learned from a file's content.

    Attributes:
        kind: ``"image"``, ``"audio"`` or ``"video"``.
        format: The format found by content, e.g. ``"png"`` or ``"mp3"``.
        size: The file's length in bytes.
        width: Image width in pixels, when probed.
        height: Image height in pixels, when probed.
        mode: Pillow's image mode (``"RGB"``, ``"RGBA"`` …), when probed.
        has_alpha: Whether the image has an alpha channel or transparency.
        seconds: Audio length, when probed.
    """

    kind: MediaKind
    format: str
    size: int
    width: int | None = None
    height: int | None = None
    mode: str | None = None
    has_alpha: bool = False
    seconds: float | None = None

    @property
    def mime(self) -> str:
        """The MIME type to put in a ``data:`` URI."""
        return _MIME[self.format]


def describe(value: object) -> object:
    """Return a short stand-in for a large file value, for error messages and attributes."""
    if isinstance(value, bytes):
        return f"<{len(value):,} bytes>"
    if isinstance(value, str) and value[:5].lower() == "data:":
        return f"{value.split(',', 1)[0]},… ({len(value):,} characters)"
    return value


def refuse(field: str, value: object, rule: str) -> InputValidationError:
    """Build the error for a refused file value, with a short stand-in for the value."""
    return InputValidationError(field=field, value=describe(value), rule=rule)


def _magic(head: bytes) -> tuple[MediaKind, str] | None:
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image", "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image", "jpeg"
    if head[:4] == b"RIFF" and head[8:12] in (b"WEBP", b"WAVE"):
        return ("image", "webp") if head[8:12] == b"WEBP" else ("audio", "wav")
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image", "gif"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "image", "tiff"
    if head.startswith(b"BM"):
        return "image", "bmp"
    if head.startswith(b"ID3") or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "audio", "mp3"
    if head.startswith(b"fLaC"):
        return "audio", "flac"
    if head.startswith(b"OggS"):
        return "audio", "ogg"
    if head[4:8] == b"ftyp":
        return "video", "mov" if head[8:12] == b"qt  " else "mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "video", "webm"
    return None


def _probe_image(data: bytes, fmt: str, field: str, value: object) -> MediaInfo:
    try:
        from PIL import Image
    except ImportError as exc:
        raise ImportError(_NEEDS_MEDIA.format(what="image", lib="Pillow")) from exc
    try:
        with Image.open(io.BytesIO(data), formats=[fmt.upper()]) as img:
            width, height = img.size
            mode = img.mode
            alpha = mode in _ALPHA_MODES or "transparency" in img.info
            # verify() checks structure and checksums without decoding the pixels, so a
            # truncated file is caught and a decompression bomb is never expanded.
            img.verify()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise refuse(field, value, f"is not a readable {fmt.upper()} image ({exc})") from exc
    return MediaInfo(
        kind="image",
        format=fmt,
        size=len(data),
        width=width,
        height=height,
        mode=mode,
        has_alpha=alpha,
    )


def _wav_seconds(data: bytes) -> float | None:
    try:
        with wave.open(io.BytesIO(data)) as wav:
            rate, frames = wav.getframerate(), wav.getnframes()
    except (wave.Error, EOFError):
        return None  # e.g. a float or WAVE_FORMAT_EXTENSIBLE file: mutagen reads those
    return frames / rate if rate > 0 else None


def _probe_audio(data: bytes, fmt: str, field: str, value: object) -> MediaInfo:
    seconds = _wav_seconds(data) if fmt == "wav" else None
    if seconds is None and fmt in {"wav", "mp3"}:
        try:
            import mutagen.mp3
            import mutagen.wave
        except ImportError as exc:
            raise ImportError(_NEEDS_MEDIA.format(what=fmt.upper(), lib="mutagen")) from exc
        reader = mutagen.mp3.MP3 if fmt == "mp3" else mutagen.wave.WAVE
        try:
            length = getattr(reader(io.BytesIO(data)).info, "length", None)
        except (mutagen.MutagenError, OSError, ValueError) as exc:
            raise refuse(field, value, f"is not a readable {fmt.upper()} file ({exc})") from exc
        if not isinstance(length, int | float) or length <= 0:
            raise refuse(field, value, f"is a {fmt.upper()} file whose length cannot be read")
        seconds = float(length)
    return MediaInfo(kind="audio", format=fmt, size=len(data), seconds=seconds)


def sniff(data: bytes, field: str, value: object) -> MediaInfo:
    """Tell a file's kind and format from its first bytes; no optional library needed.

    Raises:
        InputValidationError: The file is empty or of a kind we do not recognise.
    """
    if not data:
        raise refuse(field, value, "is an empty file")
    found = _magic(data[:16])
    if found is None:
        raise refuse(
            field, value, "is not an image, audio or video file we recognise (judged by content)"
        )
    return MediaInfo(kind=found[0], format=found[1], size=len(data))


def detail(data: bytes, info: MediaInfo, field: str, value: object) -> MediaInfo:
    """Add pixel size and transparency (images) or length (WAV, MP3) to ``info``.

    Raises:
        InputValidationError: The file is damaged or not what its magic bytes say.
        ImportError: Reading it needs the ``media`` extra, which is missing.
    """
    if info.format in _PILLOW_FORMATS:
        return _probe_image(data, info.format, field, value)
    if info.kind == "audio":
        return _probe_audio(data, info.format, field, value)
    return info

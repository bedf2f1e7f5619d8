"""Safe local names for downloaded files.

A name comes from the URL's last path segment, which the server chose: it is treated as
hostile. After percent-decoding, directory parts (``..%2F..%2Fevil``), control and other
unprintable characters (``\\x00``, right-to-left overrides), characters Windows forbids,
leading dots (hidden files, ``..``) and Windows device names are all neutralised, and
:func:`inside` proves the final path is a direct child of the destination directory.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from pathlib import Path, PurePath
from typing import Final
from urllib.parse import unquote, urlsplit

from ._urls import check_download_url, public_url

__all__ = [
    "check_download_url",
    "extension_for",
    "inside",
    "plan_names",
    "public_url",
    "safe_name",
    "split_suffix",
]

_MAX_NAME_BYTES: Final = 200  # 255 is the usual limit; leave room for ".…part-…" and "-N"
_SUFFIX: Final = re.compile(r"\.[A-Za-z0-9]{1,10}$")
_FORBIDDEN: Final = re.compile(r'[<>:"|?*]')  # not allowed in Windows file names
_RESERVED: Final = frozenset(
    {"CON", "PRN", "AUX", "NUL", *(f"{p}{i}" for p in ("COM", "LPT") for i in range(1, 10))}
)
# Only types an output can plausibly have. The mimetypes module would read /etc files
# (blocking, on the loop) and answer differently from one machine to the next.
_EXTENSIONS: Final = {
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/webp": ".webp",
    "image/gif": ".gif",
    "image/bmp": ".bmp",
    "video/mp4": ".mp4",
    "video/webm": ".webm",
    "video/quicktime": ".mov",
    "video/x-matroska": ".mkv",
    "audio/mpeg": ".mp3",
    "audio/wav": ".wav",
    "audio/x-wav": ".wav",
    "audio/flac": ".flac",
    "model/gltf-binary": ".glb",
    "application/json": ".json",
    "application/zip": ".zip",
    "text/plain": ".txt",
}


def split_suffix(name: str) -> tuple[str, str]:
    """Split ``name`` into stem and extension (``""`` when it has none)."""
    match = _SUFFIX.search(name)
    if match is None or match.start() == 0:
        return name, ""
    return name[: match.start()], match.group()


def _cap(text: str, limit: int) -> str:
    return text.encode()[:limit].decode("utf-8", "ignore")


def safe_name(url: str, index: int) -> str:
    """Derive a safe file name from a URL's last path segment.

    The segment is percent-decoded; decoded directory parts (``../``, ``a\\b``), control
    and other unprintable characters, Windows-forbidden characters, leading dots and
    trailing dots or spaces are removed; Windows device names get a ``_`` prefix; the
    result is capped at 200 UTF-8 bytes, keeping the extension.

    Args:
        url: The file's URL.
        index: The file's 1-based position, for the fallback name ``output-{index}``.

    Returns:
        A single path component: never empty, never ``.`` or ``..``.
    """
    segment = urlsplit(url).path.rsplit("/", 1)[-1]
    name = unicodedata.normalize("NFC", unquote(segment, errors="replace"))
    name = re.split(r"[/\\]", name)[-1]
    name = "".join(c for c in name if c.isprintable())
    name = _FORBIDDEN.sub("_", name).strip(" .")
    stem, suffix = split_suffix(name)
    if stem.split(".", 1)[0].rstrip(" ").upper() in _RESERVED:
        stem = f"_{stem}"
    name = _cap(stem, _MAX_NAME_BYTES - len(suffix)).rstrip(" .") + suffix
    return name if split_suffix(name)[0] else f"output-{index}"


def plan_names(urls: Sequence[str]) -> list[str]:
    """Give each URL a safe, distinct name; later duplicates get ``-2``, ``-3`` ….

    Names are compared without their extension and ignoring case, so that neither an
    extension added later from the Content-Type nor a case-insensitive file system can
    make two files of one call collide.
    """
    taken: set[str] = set()
    names = []
    for index, url in enumerate(urls, 1):
        stem, suffix = split_suffix(safe_name(url, index))
        candidate, n = stem, 1
        while candidate.casefold() in taken:
            n += 1
            candidate = f"{stem}-{n}"
        taken.add(candidate.casefold())
        names.append(candidate + suffix)
    return names


def extension_for(content_type: str | None) -> str:
    """The extension for a Content-Type (``".mp4"``), or ``""`` for an unknown one."""
    if not content_type:
        return ""
    return _EXTENSIONS.get(content_type.split(";", 1)[0].strip().lower(), "")


def inside(directory: Path, name: str) -> Path:
    """Return ``directory / name``, proven to be a direct child of ``directory``.

    ``directory`` must already be resolved (absolute, no symlinks in it).

    Raises:
        ValueError: ``name`` is not a single, ordinary path component.
    """
    path = directory / name
    if name in ("", ".", "..") or PurePath(name).name != name or path.parent != directory:
        raise ValueError(f"unsafe file name {name!r}")
    return path

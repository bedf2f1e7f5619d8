"""Local files → checked ``data:`` URIs, before any request is sent or money spent.

RunComfy documents file inputs only as public HTTPS URLs. Its own partner nodes send
base64 ``data:`` URIs instead, with caps of 6 MiB per image, 32 MiB per video, 16 MiB per
audio file and 64 MiB per request (``runcomfy-api.md``, "File inputs" [seen]). We read
the caps as applying to the file's bytes, not to the base64 text; they are constants
here so the reading is one line to change.

A file's format is decided by its content, never by its name (``_media.py``). Remote
URLs are passed through untouched: RunComfy fetches them, we never do. Every read and
decode runs in a worker thread (``anyio.to_thread``) so that a large file never blocks
the event loop.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Mapping
from functools import partial
from types import MappingProxyType
from typing import Final, TypeAlias, TypeGuard
from urllib.parse import urlsplit

import anyio.to_thread
import msgspec

from .._errors import InputValidationError
from ._media import MediaInfo, MediaKind, describe, detail, refuse, sniff

__all__ = [
    "DATA_URI_CAPS",
    "MIB",
    "MediaInfo",
    "MediaKind",
    "MediaRule",
    "MediaSource",
    "REQUEST_CAP",
    "check_media_value",
    "check_request_size",
    "describe",
    "encode_media",
    "prepare_mapping",
    "probe_media",
]

#: What a file input may be: a URL or ``data:`` URI string, a local path, or raw bytes.
MediaSource: TypeAlias = str | os.PathLike[str] | bytes

MIB: Final = 1024 * 1024
DATA_URI_CAPS: Final[Mapping[MediaKind, int]] = MappingProxyType(
    {"image": 6 * MIB, "video": 32 * MIB, "audio": 16 * MIB}
)
REQUEST_CAP: Final = 64 * MIB

_DATA_URI: Final = re.compile(r"data:([\w.+-]+)/([\w.+-]+)((?:;[^,;]*)*?);base64,(.*)", re.S | re.I)
_WINDOWS_PATH: Final = re.compile(r"[A-Za-z]:[\\/]")
_SPACE: Final = re.compile(r"\s")
_FILE_SUFFIX: Final = re.compile(r"\.(png|jpe?g|bmp|webp|gif|tiff?|wav|mp3|flac|ogg|mp4|mov|webm)$")


class MediaRule(msgspec.Struct, frozen=True, kw_only=True):
    """What one model accepts in one file field; checked on local content only.

    Attributes:
        kind: ``"image"``, ``"audio"`` or ``"video"``.
        formats: Accepted formats by content, e.g. ``("jpeg", "png")``.
        owner: Who imposes the rule, named in messages (e.g. ``"Wan 2.5"``).
        max_bytes: The file must be strictly smaller than this, when set.
        min_side: Minimum width and height in pixels, when set.
        max_side: Maximum width and height in pixels, when set.
        allow_alpha: Whether an image may have an alpha channel or transparency.
        min_seconds: Minimum audio length, when set.
        max_seconds: Maximum audio length, when set.
    """

    kind: MediaKind
    formats: tuple[str, ...]
    owner: str = "this model"
    max_bytes: int | None = None
    min_side: int | None = None
    max_side: int | None = None
    allow_alpha: bool = True
    min_seconds: float | None = None
    max_seconds: float | None = None


def _looks_like_path(text: str) -> bool:
    return (
        text.startswith(("/", "./", "../", "~", "\\"))
        or _WINDOWS_PATH.match(text) is not None
        or _FILE_SUFFIX.search(text.lower()) is not None
    )


def check_media_value(field: str, value: object, *, kind: MediaKind | None) -> None:
    """Check the shape of a file value without any I/O (fit for ``__post_init__``).

    Remote URLs are not fetched, and local files are not opened here: their content is
    checked by :func:`encode_media`. Plain ``http://`` URLs are allowed because RunComfy,
    not this client, fetches them and no credential goes with them; RunComfy documents
    HTTPS, so plain HTTP is at the caller's risk.

    Raises:
        InputValidationError: The value is not a URL, ``data:`` URI, path or bytes.
    """
    if isinstance(value, bytes):
        if not value:
            raise refuse(field, value, "is empty bytes; pass the file's content")
        return
    if isinstance(value, os.PathLike):
        return
    if not isinstance(value, str):
        raise refuse(
            field,
            value,
            "must be an https URL, a data: URI, a pathlib.Path or bytes, "
            f"not {type(value).__name__}",
        )
    if not value.strip():
        raise refuse(field, value, "is required and must not be blank")
    if value[:5].lower() == "data:":
        _check_data_uri(field, value, kind)
    elif _WINDOWS_PATH.match(value) or not _is_web_url(value):
        hint = f"; to send a local file, pass Path({value!r})" if _looks_like_path(value) else ""
        raise refuse(field, value, f"is neither an http(s) URL nor a data: URI{hint}")


def _is_web_url(text: str) -> bool:
    if not text or _SPACE.search(text):
        return False
    try:
        parts = urlsplit(text)
        host = parts.hostname
    except ValueError:
        return False
    return parts.scheme.lower() in {"http", "https"} and bool(host)


def _check_data_uri(field: str, value: str, kind: MediaKind | None) -> tuple[str, str]:
    match = _DATA_URI.fullmatch(value)
    if match is None or not match.group(4):
        raise refuse(field, value, "is not a base64 data: URI (data:<type>/<subtype>;base64,…)")
    family = match.group(1).lower()
    # application/octet-stream says nothing either way; the real type is found by content.
    generic = f"{family}/{match.group(2).lower()}" == "application/octet-stream"
    if kind is not None and family != kind and not generic:
        raise refuse(field, value, f"declares {family}/{match.group(2)}, but {field} needs {kind}")
    return family, match.group(4)


# --- reading and checking (all of this runs in a worker thread) -------------------------


def _byte_limit(rule: MediaRule | None) -> int:
    if rule is None:
        return max(DATA_URI_CAPS.values())
    cap = DATA_URI_CAPS[rule.kind]
    return cap if rule.max_bytes is None else min(cap, rule.max_bytes - 1)


def _read(value: MediaSource, field: str, limit: int) -> tuple[bytes, int]:
    """Return the content (a path's is cut one byte past ``limit``) and the true size."""
    if isinstance(value, bytes):
        return value, len(value)
    if isinstance(value, str):
        try:
            data = base64.b64decode(_check_data_uri(field, value, None)[1], validate=True)
        except binascii.Error as exc:
            raise refuse(field, value, f"has an invalid base64 payload ({exc})") from exc
        return data, len(data)
    try:
        with open(value, "rb") as file:
            # Read at most one byte past the limit: enough to refuse an oversized file
            # without loading it, even one that grows while we read (or /dev/zero).
            data = file.read(limit + 1)
            return data, max(len(data), os.fstat(file.fileno()).st_size)
    except IsADirectoryError as exc:
        raise refuse(field, value, "is a directory, not a file") from exc
    except FileNotFoundError as exc:
        raise refuse(field, value, "no such file") from exc
    except OSError as exc:
        raise refuse(field, value, f"cannot be read ({exc.strerror or exc})") from exc


_PLURAL: Final[Mapping[MediaKind, str]] = {
    "image": "images",
    "audio": "audio files",
    "video": "videos",
}


def _size_text(size: int) -> str:
    if size % MIB == 0:
        return f"{size // MIB} MiB"
    return f"{size:,} bytes" if size < 1_000_000 else f"{size / 1_000_000:.1f} MB"


def _range_text(low: float | None, high: float | None, unit: str) -> str:
    if low is not None and high is not None:
        return f"within {low:g}–{high:g} {unit}"
    return f"at least {low:g} {unit}" if low is not None else f"at most {high:g} {unit}"


def _within(number: float, low: float | None, high: float | None) -> bool:
    return (low is None or number >= low) and (high is None or number <= high)


def _check_format(info: MediaInfo, rule: MediaRule, field: str, value: object) -> None:
    if info.kind != rule.kind or info.format not in rule.formats:
        accepted = ", ".join(f.upper() for f in rule.formats)
        raise refuse(
            field,
            value,
            f"file is {info.format.upper()} ({info.kind}, judged by content); "
            f"{rule.owner} accepts {accepted}",
        )


def _check_caps(info: MediaInfo, rule: MediaRule | None, field: str, value: object) -> None:
    if rule is not None and rule.max_bytes is not None and info.size >= rule.max_bytes:
        raise refuse(
            field,
            value,
            f"file is {_size_text(info.size)}; {rule.owner} needs {_PLURAL[rule.kind]} under "
            f"{_size_text(rule.max_bytes)}",
        )
    cap = DATA_URI_CAPS[info.kind]
    if info.size > cap:
        raise refuse(
            field,
            value,
            f"file is {_size_text(info.size)}; {_PLURAL[info.kind]} sent inline as data: URIs "
            f"may be at most {_size_text(cap)} (RunComfy's own limit): upload it and pass its "
            "https URL instead",
        )


def _check_content(info: MediaInfo, rule: MediaRule, field: str, value: object) -> None:
    who = rule.owner
    low, high = rule.min_side, rule.max_side
    width, height = info.width or 0, info.height or 0
    if info.width is not None and not (_within(width, low, high) and _within(height, low, high)):
        raise refuse(
            field,
            value,
            f"image is {width}×{height} px; {who} needs width and height "
            + _range_text(low, high, "px"),
        )
    if info.has_alpha and not rule.allow_alpha:
        raise refuse(
            field,
            value,
            f"image has an alpha channel or transparency (mode {info.mode}); {who} needs an "
            "image without one: flatten it to RGB first",
        )
    secs = info.seconds
    if secs is not None and not _within(secs, rule.min_seconds, rule.max_seconds):
        raise refuse(
            field,
            value,
            f"audio is {secs:.1f} s long; {who} needs "
            + _range_text(rule.min_seconds, rule.max_seconds, "s"),
        )


def _encode_sync(value: MediaSource, rule: MediaRule | None, field: str) -> str:
    data, size = _read(value, field, _byte_limit(rule))
    info = msgspec.structs.replace(sniff(data, field, value), size=size)
    # Cheap checks first: a GIF is refused as a GIF even where Pillow is not installed,
    # and an oversized file is refused before it is read in full or decoded.
    if rule is not None:
        _check_format(info, rule, field, value)
    _check_caps(info, rule, field, value)
    if rule is not None:
        _check_content(detail(data, info, field, value), rule, field, value)
    if isinstance(value, str):
        # Reuse the caller's base64 text; only the MIME type is rewritten to the real one.
        return f"data:{info.mime};base64,{value.split(',', 1)[1]}"
    return f"data:{info.mime};base64,{base64.b64encode(data).decode('ascii')}"


def _is_local(value: object) -> TypeGuard[MediaSource]:
    return isinstance(value, bytes | os.PathLike) or (
        isinstance(value, str) and value[:5].lower() == "data:"
    )


async def encode_media(value: MediaSource, rule: MediaRule | None, *, field: str) -> str:
    """Turn one file value into what the API receives, checking local content.

    URLs come back unchanged and are not fetched. Paths, bytes and ``data:`` URIs are
    read and checked in a worker thread and come back as a ``data:`` URI whose MIME type
    is the one found by content.

    Args:
        value: A URL, a ``data:`` URI, a local path or raw bytes.
        rule: The model's rule for this field; None applies only the generic checks
            (recognised format, data-URI size caps).
        field: The input's name, for error messages.

    Returns:
        The string to send.

    Raises:
        InputValidationError: The file is missing, unreadable, of the wrong kind or
            format, too large, or breaks the rule.
        ImportError: Checking the file needs the ``media`` extra, which is missing.
    """
    if isinstance(value, str) and not _is_local(value):
        return value
    return await anyio.to_thread.run_sync(partial(_encode_sync, value, rule, field))


async def probe_media(value: object, *, field: str, details: bool = True) -> MediaInfo | None:
    """Read a local file value's facts (size, pixels, length) off the event loop.

    With ``details=False`` only the content's kind, format and size are read, which needs
    no optional library.

    Returns:
        The facts, or None when the value is not local (a URL, or not a file at all).

    Raises:
        InputValidationError: The file is missing, unreadable or of unknown content.
        ImportError: Reading it needs the ``media`` extra, which is missing.
    """
    if not _is_local(value):
        return None
    source: MediaSource = value

    def probe() -> MediaInfo:
        data, size = _read(source, field, REQUEST_CAP)
        if size > REQUEST_CAP:
            raise refuse(field, source, f"file is {_size_text(size)}, too large to send inline")
        info = sniff(data, field, source)
        return detail(data, info, field, source) if details else info

    return await anyio.to_thread.run_sync(probe)


_SCALARS: Final = frozenset({int, float, bool, type(None)})


def _string_bytes(value: object) -> int:
    """The characters of every string in ``value``, at any depth (iterative: a hostile
    nesting cannot overflow the stack; plain types first: it runs on every submit)."""
    total = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            total += len(item)
        elif type(item) in _SCALARS:
            continue
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
        elif isinstance(item, Mapping):
            stack.extend(item.values())
    return total


def check_request_size(payload: Mapping[str, object]) -> None:
    """Refuse a payload whose inline data would pass RunComfy's 64 MiB request cap.

    The size counts the text of every string value, which is where data URIs live;
    numbers and keys are negligible next to the cap.

    Raises:
        InputValidationError: The payload is too large.
    """
    total = _string_bytes(payload)
    if total > REQUEST_CAP:
        raise InputValidationError(
            field="inputs",
            value=f"<{total:,} characters of inputs>",
            rule=f"the request would be {_size_text(total)}; RunComfy caps a request at "
            f"{_size_text(REQUEST_CAP)}: send the largest files as https URLs",
        )


async def _prepare_value(key: str, value: object) -> object:
    if isinstance(value, bytes | os.PathLike):
        return await encode_media(value, None, field=key)
    if isinstance(value, list | tuple) and any(isinstance(v, bytes | os.PathLike) for v in value):
        return [await _prepare_value(f"{key}[{i}]", item) for i, item in enumerate(value)]
    return value


async def prepare_mapping(inputs: Mapping[str, object]) -> dict[str, object]:
    """Convert the local files in an untyped input mapping to ``data:`` URIs.

    Only ``Path`` (any ``os.PathLike``) and ``bytes`` values, directly or inside a list,
    are touched, with generic checks only (format recognised by content, data-URI size
    caps): the model is unknown, so its own rules are the server's to apply. Every other
    value, ``data:`` URI strings included, is passed through as is.

    Args:
        inputs: The inputs as the caller wrote them.

    Returns:
        A new dict, ready to encode as JSON.

    Raises:
        InputValidationError: A file is missing, unreadable, unrecognised or too large,
            or the whole request would pass 64 MiB.
    """
    prepared = {key: await _prepare_value(key, value) for key, value in inputs.items()}
    check_request_size(prepared)
    return prepared

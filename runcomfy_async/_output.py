"""A job's output: the files a succeeded job produced, whatever shape the server sent.

Keys differ per model (``video``, ``audio``, ``image_urls``, a list of ``{"url": …}``
objects…), so the output is kept exactly as sent (:attr:`Output.raw`) and every URL
string in it, at any depth, is collected in the server's order (:attr:`Output.urls`), as
RunComfy's own clients do (``runcomfy-api.md``, "Outputs beyond the Wan keys"). An output
whose URLs a client cannot find is a paid result lost.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

__all__ = ["Output", "to_output"]

_KINDS: Final = ("image", "video", "audio")
_EXTENSIONS: Final = {
    "image": (".png", ".jpg", ".jpeg", ".webp", ".bmp"),
    "video": (".mp4", ".webm", ".mov", ".mkv", ".gif", ".avi"),
    "audio": (".wav", ".mp3", ".flac", ".ogg", ".m4a", ".aac"),
}
# The keys a kind's shortcut reads, singular then plural ("image", "image_url"; "images"…).
_ONE_KEYS: Final = {kind: (kind, f"{kind}_url", f"{kind}_uri") for kind in _KINDS}
_MANY_KEYS: Final = {kind: (f"{kind}s", f"{kind}_urls", f"{kind}_uris") for kind in _KINDS}
_KNOWN_KEYS: Final = frozenset(
    k for keys in (*_ONE_KEYS.values(), *_MANY_KEYS.values()) for k in keys
)


class Output(msgspec.Struct, frozen=True):
    """A job's output files, whatever shape the server sent them in.

    Attributes:
        raw: The ``output`` JSON value exactly as the server sent it (``None`` for an
            ``Output`` built by hand).
        image, video, audio: The first file of that kind: the ``image`` / ``image_url``
            key, else the first of the plural list; for a bare URL or a list of URLs, or
            keys no shortcut knows, the first URL with that kind's file extension.
        images, videos, audios: Every file of that kind: the ``images`` /
            ``image_urls`` list, else the singular key.
        other: URLs no shortcut holds, in order.
    """

    raw: Any = None
    image: str | None = None
    video: str | None = None
    audio: str | None = None
    images: tuple[str, ...] = ()
    videos: tuple[str, ...] = ()
    audios: tuple[str, ...] = ()
    other: tuple[str, ...] = ()

    @property
    def urls(self) -> tuple[str, ...]:
        """Every URL once, in the server's order: any key, any depth, ``{"url": …}`` objects."""
        found: list[str | None] = [url for _, url in find_urls(self.raw)]
        found += [self.image, self.video, self.audio, *self.images, *self.videos, *self.audios]
        return tuple(dict.fromkeys(u for u in (*found, *self.other) if u))

    @property
    def url_keys(self) -> tuple[str, ...]:
        """For each of :attr:`urls`, the top-level key it came from (``""`` for none)."""
        where = {url: key for key, url in reversed(find_urls(self.raw))}
        for kind in _KINDS:
            for url in (getattr(self, kind), *getattr(self, f"{kind}s")):
                if url:
                    where.setdefault(url, kind)
        return tuple(where.get(url, "") for url in self.urls)


def _is_url(value: object) -> bool:
    return isinstance(value, str) and value[:8].lower().startswith(("https://", "http://"))


def find_urls(raw: object) -> list[tuple[str, str]]:
    """Every URL string in ``raw`` with its top-level key, depth first, in the server's order.

    Iterative, so a hostile nesting depth cannot overflow the stack.
    """
    found: list[tuple[str, str]] = []
    stack: list[tuple[str, object]] = [("", raw)]
    while stack:
        key, value = stack.pop()
        if _is_url(value):
            found.append((key, str(value)))
        elif isinstance(value, dict):
            items = [(key or str(k), v) for k, v in value.items()]
            stack.extend(reversed(items))
        elif isinstance(value, list | tuple):
            stack.extend((key, v) for v in reversed(value))
    return found


def _by_extension(urls: list[str], kind: str) -> list[str]:
    return [u for u in urls if u.split("?", 1)[0].lower().endswith(_EXTENSIONS[kind])]


def _under(found: dict[str, list[str]], keys: tuple[str, ...]) -> list[str]:
    """The URLs found under ``keys``, in the keys' order (a plain loop: run once a job)."""
    urls: list[str] = []
    for key in keys:
        some = found.get(key)
        if some:
            urls += some
    return urls


def to_output(raw: object) -> Output | None:
    """Build the :class:`Output` of a succeeded job's ``output`` value (``None`` stays ``None``)."""
    if raw is None:
        return None
    found = find_urls(raw)
    urls = list(dict.fromkeys(url for _, url in found))
    fields: dict[str, Any] = {}
    held: set[str] = set()
    if isinstance(raw, dict) and not _KNOWN_KEYS.isdisjoint(raw):
        under: dict[str, list[str]] = {}  # top-level key → its URLs, in order (one walk)
        for key, url in found:
            under.setdefault(key, []).append(url)
        for kind in _KINDS:
            one, many = _under(under, _ONE_KEYS[kind]), _under(under, _MANY_KEYS[kind])
            if one or many:
                fields[kind] = (one or many)[0]
                fields[f"{kind}s"] = tuple(dict.fromkeys(many or one))
                held.update(one, many)
    else:
        for kind in _KINDS:
            of_kind = _by_extension(urls, kind)
            if of_kind:
                fields[kind] = of_kind[0]
                fields[f"{kind}s"] = tuple(of_kind)
                held.update(of_kind)
    other = tuple(u for u in urls if u not in held) if held else tuple(urls)
    return Output(raw=raw, other=other, **fields)

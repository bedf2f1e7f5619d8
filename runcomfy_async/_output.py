"""A job's output: the files a succeeded job produced, whatever shape the server sent."""

from __future__ import annotations

from typing import Final

import msgspec

__all__ = ["Output", "to_output"]


_VIDEO_EXT: Final = (".mp4", ".webm", ".mov", ".mkv", ".gif", ".avi")
_IMAGE_EXT: Final = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


class Output(msgspec.Struct, frozen=True):
    """A job's output files, whatever shape the server sent them in.

    The Wan models answer ``{"image", "video", "images", "videos"}`` (all optional); the
    API prose also allows a bare URL or a list of URLs, which are sorted into the same
    fields by file extension (anything unrecognised lands in ``other``).
    """

    image: str | None = None
    video: str | None = None
    images: tuple[str, ...] = ()
    videos: tuple[str, ...] = ()
    other: tuple[str, ...] = ()

    @property
    def urls(self) -> tuple[str, ...]:
        """Every output URL once, in order: image, video, images, videos, other."""
        seen: dict[str, None] = {}
        for url in (self.image, self.video, *self.images, *self.videos, *self.other):
            if url:
                seen.setdefault(url, None)
        return tuple(seen)


class _OutputObject(msgspec.Struct, frozen=True):
    image: str | None = None
    video: str | None = None
    images: list[str] | None = None
    videos: list[str] | None = None


def _output_from_urls(urls: list[str]) -> Output:
    images, videos, other = [], [], []
    for url in urls:
        path = url.split("?", 1)[0].lower()
        if path.endswith(_VIDEO_EXT):
            videos.append(url)
        elif path.endswith(_IMAGE_EXT):
            images.append(url)
        else:
            other.append(url)
    return Output(
        image=images[0] if images else None,
        video=videos[0] if videos else None,
        images=tuple(images),
        videos=tuple(videos),
        other=tuple(other),
    )


def to_output(raw: object) -> Output | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        return _output_from_urls([raw])
    if isinstance(raw, list):
        return _output_from_urls([u for u in raw if isinstance(u, str)])
    if isinstance(raw, dict):
        try:
            obj = msgspec.convert(raw, _OutputObject, strict=False)
        except msgspec.ValidationError:
            # An object with odd value types: keep whatever strings it holds.
            return _output_from_urls([v for v in raw.values() if isinstance(v, str)])
        return Output(
            image=obj.image,
            video=obj.video,
            images=tuple(obj.images or ()),
            videos=tuple(obj.videos or ()),
        )
    return None

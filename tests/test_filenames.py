"""Safe local names for downloaded files, and which download URLs are accepted."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runcomfy_async._filenames import (
    check_download_url,
    extension_for,
    inside,
    plan_names,
    public_url,
    safe_name,
)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://s/files/r/video.mp4", "video.mp4"),
        ("https://s/files/r/..%2F..%2Fevil.mp4", "evil.mp4"),
        ("https://s/files/r/a%5C..%5Cb.png", "b.png"),
        ("https://s/files/r/%2e%2e", "output-3"),
        ("https://s/files/r/...", "output-3"),
        ("https://s/files/r/", "output-3"),
        ("https://s", "output-3"),
        ("https://s/files/r/.bashrc", "bashrc"),
        ("https://s/files/r/a%00b%1F.png", "ab.png"),
        ("https://s/files/r/%E2%80%AEgnp.exe", "gnp.exe"),
        ("https://s/files/r/a%3A%2A%3F.png", "a___.png"),
        ("https://s/files/r/CON.png", "_CON.png"),
        ("https://s/files/r/nul", "_nul"),
        ("https://s/files/r/clip.mp4?x=/../../etc#frag", "clip.mp4"),
        ("https://s/files/r/caf%C3%A9.png", "café.png"),
    ],
)
def test_safe_name(url: str, expected: str) -> None:
    """Hostile URL names become one plain, visible, portable path component."""
    assert safe_name(url, 3) == expected


def test_long_names_are_capped_keeping_the_extension() -> None:
    """Names are capped at 200 UTF-8 bytes and keep their extension."""
    name = safe_name("https://s/" + "é" * 300 + ".mp4", 1)
    assert len(name.encode()) <= 200
    assert name.endswith("é.mp4")


@given(st.text(max_size=300))
def test_any_segment_gives_a_single_component(segment: str) -> None:
    """Whatever the URL's last segment, the name is one safe component inside dest."""
    name = safe_name("https://s/files/r/" + segment, 1)
    directory = Path("/tmp/dest").resolve()
    assert inside(directory, name).parent == directory
    assert name
    assert not name.startswith(".")
    assert "/" not in name
    assert "\\" not in name
    assert all(c.isprintable() for c in name)
    assert len(name.encode()) <= 200


def test_plan_names_disambiguates_ignoring_case_and_extension() -> None:
    """Duplicate stems (any case, any extension) get -2, -3 …, so names can never collide."""
    urls = ["https://s/a/out.mp4", "https://s/b/out.mp4", "https://s/c/OUT", "https://s/d/out.png"]
    assert plan_names(urls) == ["out.mp4", "out-2.mp4", "OUT-3", "out-4.png"]


@pytest.mark.parametrize(
    ("content_type", "extension"),
    [
        ("video/mp4", ".mp4"),
        ("image/png; charset=binary", ".png"),
        ("IMAGE/JPEG", ".jpg"),
        ("application/octet-stream", ""),
        (None, ""),
    ],
)
def test_extension_for(content_type: str | None, extension: str) -> None:
    """Known media types map to one extension; anything else adds none."""
    assert extension_for(content_type) == extension


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "../x"])
def test_inside_refuses_non_components(name: str) -> None:
    """Only a single ordinary component is accepted as a file name."""
    with pytest.raises(ValueError, match="unsafe"):
        inside(Path("/tmp/dest"), name)


@pytest.mark.parametrize(
    "url", ["https://cdn.example.com/a.png", "http://127.0.0.1:8000/a.png", "http://[::1]/a.mp4"]
)
def test_accepted_urls(url: str) -> None:
    """https anywhere, plain http to loopback."""
    check_download_url(url)


def test_public_url_drops_the_query() -> None:
    """Signed query strings never reach messages."""
    assert public_url("https://s/a.mp4?X-Amz-Signature=abc#f") == "https://s/a.mp4"

"""Outputs of every shape RunComfy's models answer: raw kept, every URL found, all downloaded.

The output bodies are written by hand from ``runcomfy-api.md`` ("Result", "Outputs beyond the
Wan keys"), never produced by our structs; the simulator replays them verbatim.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from runcomfy_async import Client, JobState, Result
from runcomfy_async.testing import JobScript, Simulator
from runcomfy_async.testing._assets import content_for

from .conftest import FAST_RETRY, GOOD_INPUTS, WAN25

pytestmark = pytest.mark.anyio

AUDIO = "acme/tone-voice/text-to-audio"
FLUX = "acme/flux-lite/text-to-image"
COLLAGE = "acme/collage/images-to-image"
UPSCALE = "acme/upscale-pro/image-upscale"


def fill(value: Any, base: str) -> Any:
    """Replace ``BASE`` in a hand-written golden body with the job's storage folder."""
    if isinstance(value, str):
        return value.replace("BASE", base)
    if isinstance(value, list):
        return [fill(v, base) for v in value]
    if isinstance(value, dict):
        return {k: fill(v, base) for k, v in value.items()}
    return value


async def replay(client: Client, sim: Simulator, output: Any, files: tuple[str, ...]) -> Result:
    """Run one WAN25 job whose ``output`` is the golden body; return its result."""
    sim.script_next(
        JobScript(queue_polls=0, run_polls=0, output=fill(output, "{storage}/files/{request_id}"))
    )
    handle = await client.submit(WAN25, GOOD_INPUTS)
    result = await handle.wait()
    assert result.status is JobState.SUCCEEDED
    base = f"{sim.storage_url}/files/{handle.request_id}"
    assert result.output is not None
    assert result.output.raw == fill(output, base)
    return result


GOLDEN: list[tuple[str, Any, list[str], dict[str, Any]]] = [
    ("audio", {"audio": "BASE/a.wav"}, ["a.wav"], {"audio": "a.wav", "audios": ("a.wav",)}),
    (
        "audios",
        {"audios": ["BASE/a.wav", "BASE/b.mp3"]},
        ["a.wav", "b.mp3"],
        {"audio": "a.wav", "audios": ("a.wav", "b.mp3")},
    ),
    (
        "image_urls",
        {"image_urls": ["BASE/x.png", "BASE/y.png"]},
        ["x.png", "y.png"],
        {"image": "x.png", "images": ("x.png", "y.png")},
    ),
    (
        "url objects",
        [{"url": "BASE/u.png", "content_type": "image/png"}, {"url": "BASE/v.png"}],
        ["u.png", "v.png"],
        {"image": "u.png"},
    ),
    (
        "bare list in server order",
        ["BASE/c.mp4", "BASE/a.png", "BASE/b.wav"],
        ["c.mp4", "a.png", "b.wav"],
        {"video": "c.mp4", "image": "a.png", "audio": "b.wav"},
    ),
    (
        "nested, repeated",
        {
            "result": {"files": [{"url": "BASE/n1.mp4"}, {"more": [["BASE/n2.png"]]}]},
            "preview": "BASE/n1.mp4",
            "seed": 7,
            "note": "not a url",
        },
        ["n1.mp4", "n2.png"],
        {"video": "n1.mp4", "image": "n2.png"},
    ),
    (
        "wan object",
        {"video": "BASE/v.mp4", "videos": ["BASE/v.mp4", "BASE/w.mp4"], "image": "BASE/f.png"},
        ["v.mp4", "w.mp4", "f.png"],
        {"video": "v.mp4", "videos": ("v.mp4", "w.mp4"), "image": "f.png"},
    ),
]


@pytest.mark.parametrize(
    ("name", "output", "files", "shortcuts"), GOLDEN, ids=[g[0] for g in GOLDEN]
)
async def test_every_url_found_in_server_order(
    client: Client,
    sim: Simulator,
    tmp_path: Path,
    name: str,
    output: Any,
    files: list[str],
    shortcuts: dict[str, Any],
) -> None:
    """Every URL of the output is in urls, once, in server order; all are downloaded."""
    result = await replay(client, sim, output, tuple(files))
    assert result.output is not None
    base = result.output.urls[0].rsplit("/", 1)[0]
    assert result.output.urls == tuple(f"{base}/{f}" for f in files)
    for field, expected in shortcuts.items():
        got = getattr(result.output, field)
        want = (
            tuple(f"{base}/{f}" for f in expected)
            if isinstance(expected, tuple)
            else f"{base}/{expected}"
        )
        assert got == want, field
    paths = await client.download(result, tmp_path)
    assert [p.name for p in paths] == files
    assert all(p.read_bytes() == content_for(f)[0] for p, f in zip(paths, files, strict=True))


async def test_url_without_file_name_is_named_for_its_key(
    client: Client, sim: Simulator, tmp_path: Path
) -> None:
    """A URL whose path names no file is saved under the key it came from."""
    result = await replay(client, sim, {"audio": "BASE/a.wav", "mask": ["BASE/..."]}, ())
    assert result.output is not None
    assert result.output.url_keys == ("audio", "mask")
    paths = await client.download(result, tmp_path)
    assert [p.name for p in paths] == ["a.wav", "mask.mp4"]


@pytest.mark.parametrize(
    ("model", "inputs", "field"),
    [
        (AUDIO, {"prompt": "a calm voice", "duration": 3}, "audio"),
        (FLUX, {"prompt": "a fox", "num_images": 2}, "images"),
        (COLLAGE, {"prompt": "mix", "image_uris": ["https://example.com/a.png"]}, "images"),
        (UPSCALE, {"image_url": "https://example.com/a.png"}, "image"),
    ],
)
async def test_catalog_models_answer_their_own_shapes(
    client: Client, sim: Simulator, tmp_path: Path, model: str, inputs: dict[str, Any], field: str
) -> None:
    """Non-Wan catalog models' outputs are found and downloaded, whatever their keys."""
    sim.script_next(JobScript(queue_polls=0, run_polls=0))
    result = await client.run(model, inputs)
    assert result.output is not None and result.output.urls
    assert getattr(result.output, field)
    paths = await client.download(result, tmp_path)
    assert len(paths) == len(result.output.urls)
    assert sim.stats.storage_requests >= len(paths)


async def test_resumed_result_keeps_raw_output(sim: Simulator, tmp_path: Path) -> None:
    """A keyed run resumed from the journal returns the same raw output and URLs, no new job."""
    golden = {"audios": ["{storage}/files/{request_id}/a.wav"], "extra": {"url": "{url}"}}
    sim.script_next(JobScript(queue_polls=0, run_polls=0, output=golden, output_files=("z.png",)))
    journal = tmp_path / "j.db"
    async with Client(
        token=sim.token, base_url=sim.url, retry=FAST_RETRY, journal=journal
    ) as client:
        first = await client.run(WAN25, GOOD_INPUTS, key="k1")
    async with Client(
        token=sim.token, base_url=sim.url, retry=FAST_RETRY, journal=journal
    ) as client:
        again = await client.run(WAN25, GOOD_INPUTS, key="k1")
    assert sim.count("submit") == 1
    assert first.output is not None and again.output is not None
    assert again.output.raw == first.output.raw
    assert again.output.urls == first.output.urls and len(first.output.urls) == 2

"""The simulator's catalog over real HTTP: unknown models, registration, listing, shapes, prices.

Expected bodies are written from ``runcomfy-api.md`` ("Catalog", "More seen"), not from the
client's structs.
"""

from __future__ import annotations

import base64
import io
import json
import wave
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from runcomfy_async.testing import JobScript, ModelSpec, Simulator
from runcomfy_async.testing._assets import WAV_BYTES, make_png

from .test_simulator_http import GOOD, WAN22, WAN25, assert_envelope, call, req_url

pytestmark = pytest.mark.anyio

FLUX = "acme/flux-lite/text-to-image"
AUDIO = "acme/tone-voice/text-to-audio"
COLLAGE = "acme/collage/images-to-image"
UPSCALE = "acme/upscale-pro/image-upscale"
DONE = JobScript(queue_polls=0, run_polls=0)


@pytest.fixture
async def http(anyio_backend: str) -> AsyncIterator[aiohttp.ClientSession]:
    """A plain aiohttp session with no connection reuse."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s:
        yield s


def png_uri(width: int, height: int) -> str:
    return "data:image/png;base64," + base64.b64encode(make_png(width, height)).decode()


async def run_job(
    http: aiohttp.ClientSession, sim: Simulator, model: str, inputs: dict[str, Any]
) -> dict[str, Any]:
    """Submit, then read the result with its cost (jobs finish at once under DONE)."""
    status, body, _ = await call(http, "POST", f"{sim.url}/v1/models/{model}", json=inputs)
    assert status == 200, body
    _, result, _ = await call(
        http, "GET", req_url(sim, body["request_id"], "result?include_cost=1")
    )
    assert result["status"] == "succeeded", result
    return dict(result)


# --- unknown models, registration -----------------------------------------------------------


async def test_unknown_model_is_refused_by_default(http: aiohttp.ClientSession) -> None:
    """By default an unlisted model is 400 / 400001 on submit and on its catalog entry."""
    async with Simulator() as sim:
        for method in ("POST", "GET"):
            status, body, _ = await call(http, method, f"{sim.url}/v1/models/acme/x/y", json={})
            assert status == 400
            assert_envelope(body, 400001)
        assert sim.stats.jobs_created == 0


async def test_register_model_makes_it_known(http: aiohttp.ClientSession) -> None:
    """register_model() and models= add entries: listed, validated, submitted, priced."""
    schema = {"type": "object", "required": ["text"], "properties": {"text": {"type": "string"}}}
    spec = ModelSpec(
        model_id="acme/ctor/one", output="url", base_price_usd=0.5, price_unit="output"
    )
    async with Simulator(script=DONE, models=[spec]) as sim:
        made = sim.register_model(
            "acme/made-up/model",
            input_schema=schema,
            output={"audios": ["{urls}"]},
            output_files=("a.wav",),
            base_price_usd=0.01,
            price_unit="second",
            categories=("audio",),
            display_name="Made Up",
        )
        assert isinstance(made, ModelSpec)
        status, entry, _ = await call(http, "GET", f"{sim.url}/v1/models/acme/made-up/model")
        assert status == 200
        assert entry["display_name"] == "Made Up"
        assert entry["input_schema"] == schema
        assert entry["categories"] == ["audio"]
        url = f"{sim.url}/v1/models/acme/made-up/model"
        status, body, _ = await call(http, "POST", url, json={})
        assert (status, body["detail"][0]["rule"]) == (422, "required")
        result = await run_job(http, sim, "acme/made-up/model", {"text": "hi", "duration": 20})
        assert result["output"] == {
            "audios": [f"{sim.storage_url}/files/{result['request_id']}/a.wav"]
        }
        assert result["cost"] == pytest.approx(0.2)
        result = await run_job(http, sim, "acme/ctor/one", {"anything": [1]})
        assert result["output"].endswith("/output.mp4")
        assert result["cost"] == pytest.approx(0.5)


async def test_accept_mode_keeps_opaque_inputs_and_default_cost(
    http: aiohttp.ClientSession,
) -> None:
    """unknown_models='accept' takes any id with opaque inputs, the Wan shape and cost 0.25."""
    async with Simulator(script=DONE, unknown_models="accept") as sim:
        result = await run_job(http, sim, "someone/else/model", {"whatever": True})
        assert set(result["output"]) == {"video", "videos"}
        assert result["cost"] == pytest.approx(0.25)


def test_model_spec_rejects_nonsense() -> None:
    """A ModelSpec refuses an empty id, a bad price unit and negative prices."""
    with pytest.raises(ValueError, match="model id"):
        ModelSpec(model_id="")
    with pytest.raises(ValueError, match="price_unit"):
        ModelSpec(model_id="a/b", price_unit="token")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="base_price_usd"):
        ModelSpec(model_id="a/b", base_price_usd=-1)


# --- listing --------------------------------------------------------------------------------


async def test_listing_pages_searches_and_filters(
    runcomfy_sim: Simulator, http: aiohttp.ClientSession
) -> None:
    """GET /v1/models pages, searches id and display name, filters by category and kind."""
    sim = runcomfy_sim

    async def ids(query: str) -> tuple[list[str], int]:
        status, body, _ = await call(http, "GET", f"{sim.url}/v1/models?{query}")
        assert status == 200, body
        return [m["model_id"] for m in body["models"]], body["total"]

    every, total = await ids("")
    assert total == 6
    assert every == [WAN25, WAN22, FLUX, AUDIO, COLLAGE, UPSCALE]
    assert await ids("limit=2&offset=2") == ([FLUX, AUDIO], 6)
    assert await ids("search=FLUX LITE") == ([FLUX], 1)  # display name, case-insensitive
    assert await ids("search=tone-voice") == ([AUDIO], 1)  # id
    assert await ids("category=image") == ([FLUX, COLLAGE, UPSCALE], 3)
    assert await ids("category=image-to-video&search=2-2") == ([WAN22], 1)
    assert await ids("kind=model&limit=1") == ([WAN25], 6)
    assert await ids("kind=workflow") == ([], 0)
    _, body, _ = await call(http, "GET", f"{sim.url}/v1/models?search=flux")
    assert "input_schema" not in body["models"][0]
    _, body, _ = await call(http, "GET", f"{sim.url}/v1/models?search=flux&include_schema=true")
    assert body["models"][0]["input_schema"]["properties"]["num_images"]["default"] == 1


async def test_categories_route_is_not_a_model(
    runcomfy_sim: Simulator, http: aiohttp.ClientSession
) -> None:
    """GET /v1/models/categories lists every category; it is never read as a model id."""
    sim = runcomfy_sim
    status, body, _ = await call(http, "GET", f"{sim.url}/v1/models/categories")
    assert status == 200
    assert body == {
        "categories": [
            "audio",
            "image",
            "image-to-image",
            "image-to-video",
            "text-to-audio",
            "text-to-image",
            "upscale",
            "video",
        ]
    }
    assert sim.log[-1].route == "categories"
    sim.register_model("acme/categories/x", categories=("zeta",))
    status, entry, _ = await call(http, "GET", f"{sim.url}/v1/models/acme/categories/x")
    assert (status, entry["model_id"]) == (200, "acme/categories/x")
    _, body, _ = await call(http, "GET", f"{sim.url}/v1/models/categories")
    assert body["categories"][-1] == "zeta"


async def test_entries_carry_kind_categories_and_pricing(
    runcomfy_sim: Simulator, http: aiohttp.ClientSession
) -> None:
    """Each entry has kind 'model', categories, a price unit by medium and a pricing note."""
    units = {WAN25: "second", WAN22: "second", FLUX: "output", AUDIO: "second"}
    units |= {COLLAGE: "output", UPSCALE: "output"}
    for model_id, unit in units.items():
        _, entry, _ = await call(http, "GET", f"{runcomfy_sim.url}/v1/models/{model_id}")
        assert entry["kind"] == "model"
        assert entry["price_unit"] == unit
        assert entry["categories"]
        assert isinstance(entry["pricing_note"], str) and entry["pricing_note"]
        assert entry["base_price_usd"] > 0


# --- output shapes and prices ---------------------------------------------------------------


async def test_image_model_answers_one_url_per_image_priced_per_output(
    http: aiohttp.ClientSession,
) -> None:
    """The image model answers {"images": [...]}, one per num_images, costing base x count."""
    async with Simulator(script=DONE) as sim:
        three = await run_job(http, sim, FLUX, {"prompt": "a fox", "num_images": 3})
        base = f"{sim.storage_url}/files/{three['request_id']}"
        assert three["output"] == {"images": [f"{base}/image_{i}.png" for i in (1, 2, 3)]}
        assert three["cost"] == pytest.approx(0.009)
        one = await run_job(http, sim, FLUX, {"prompt": "a fox"})
        assert len(one["output"]["images"]) == 1
        assert one["cost"] == pytest.approx(0.003)
        async with http.get(three["output"]["images"][2]) as r:
            assert (r.status, r.headers["Content-Type"]) == (200, "image/png")


async def test_audio_model_serves_a_real_wav_priced_per_second(
    http: aiohttp.ClientSession,
) -> None:
    """The audio model answers {"audio": url} to a real WAV, costing base x duration."""
    async with Simulator(script=DONE) as sim:
        result = await run_job(http, sim, AUDIO, {"prompt": "rain", "duration": 7})
        assert set(result["output"]) == {"audio"}
        assert result["cost"] == pytest.approx(0.014)
        async with http.get(result["output"]["audio"]) as r:
            assert (r.status, r.headers["Content-Type"]) == (200, "audio/wav")
            data = await r.read()
        assert data == WAV_BYTES
        with wave.open(io.BytesIO(data)) as clip:
            assert clip.getnframes() > 0
        default = await run_job(http, sim, AUDIO, {"prompt": "rain"})
        assert default["cost"] == pytest.approx(0.02)  # the schema's default duration, 10 s


async def test_image_uris_model_and_upscaler_shapes(http: aiohttp.ClientSession) -> None:
    """The image_uris model answers {"image_urls": [...]}; the upscaler [{"url": ...}]."""
    async with Simulator(script=DONE) as sim:
        inputs = {"prompt": "merge", "image_uris": ["https://x/a.png", png_uri(8, 8)]}
        collage = await run_job(http, sim, COLLAGE, inputs)
        assert collage["output"] == {
            "image_urls": [f"{sim.storage_url}/files/{collage['request_id']}/collage.png"]
        }
        assert collage["cost"] == pytest.approx(0.01)
        upscaled = await run_job(http, sim, UPSCALE, {"image_url": png_uri(100, 100), "scale": 2.5})
        url = f"{sim.storage_url}/files/{upscaled['request_id']}/upscaled.png"
        assert upscaled["output"] == [{"url": url, "content_type": "image/png"}]
        assert upscaled["cost"] == pytest.approx(0.02)


async def test_video_cost_follows_the_duration(http: aiohttp.ClientSession) -> None:
    """Wan costs base x duration seconds: the input, else the schema default (5)."""
    async with Simulator(script=DONE) as sim:
        ten = await run_job(http, sim, WAN25, {**GOOD, "duration": 10})
        assert ten["cost"] == pytest.approx(0.5)
        five = await run_job(http, sim, WAN22, GOOD)
        assert five["cost"] == pytest.approx(0.2)
        sim.script_next(JobScript(queue_polls=0, run_polls=0, cost=9.0))
        assert (await run_job(http, sim, WAN25, GOOD))["cost"] == 9.0  # the script wins


# --- validation vocabulary ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "inputs", "field", "rule"),
    [
        (FLUX, {"prompt": "p", "num_images": 5}, "num_images", "maximum"),
        (FLUX, {"prompt": "p", "num_images": 0}, "num_images", "minimum"),
        (FLUX, {"prompt": "p", "guidance_scale": "high"}, "guidance_scale", "type"),
        (FLUX, {"prompt": "p", "num_images": 2.0}, "num_images", "type"),
        (AUDIO, {"prompt": "p", "duration": 31}, "duration", "maximum"),
        (COLLAGE, {"prompt": "p", "image_uris": "https://x/a.png"}, "image_uris", "type"),
        (COLLAGE, {"prompt": "p", "image_uris": []}, "image_uris", "minItems"),
        (COLLAGE, {"prompt": "p", "image_uris": ["https://x/a"] * 5}, "image_uris", "maxItems"),
        (COLLAGE, {"prompt": "p", "image_uris": ["ftp://x/a.png"]}, "image_uris[0]", "format"),
        (COLLAGE, {"prompt": "p", "image_uris": [3]}, "image_uris[0]", "format"),
        (UPSCALE, {"image_url": png_uri(64, 64), "scale": 5}, "scale", "maximum"),
        (UPSCALE, {"image_url": png_uri(50, 400)}, "image_url", "width_pixels>"),
        (UPSCALE, {"image_url": "data:audio/wav;base64,AAAA"}, "image_url", "format"),
    ],
)
async def test_runcomfy_schema_vocabulary_is_enforced(
    runcomfy_sim: Simulator,
    http: aiohttp.ClientSession,
    model: str,
    inputs: dict[str, Any],
    field: str,
    rule: str,
) -> None:
    """float, *_uris arrays, min/max and validations rules answer 422 naming field and rule."""
    url = f"{runcomfy_sim.url}/v1/models/{model}"
    status, body, _ = await call(http, "POST", url, json=inputs)
    assert status == 422, body
    assert_envelope(body, 422001)
    assert {"field": field, "rule": rule} in [
        {"field": v["field"], "rule": v["rule"]} for v in body["detail"]
    ]
    assert runcomfy_sim.stats.jobs_created == 0


async def test_file_size_validation_counts_decoded_megabytes(
    runcomfy_sim: Simulator, http: aiohttp.ClientSession
) -> None:
    """file_size_mb< measures the decoded data: URI bytes (1 MB = 10^6); floats pass as float."""
    big = "data:image/png;base64," + base64.b64encode(b"\0" * 5_000_000).decode()
    url = f"{runcomfy_sim.url}/v1/models/{UPSCALE}"
    raw = io.BytesIO(json.dumps({"image_url": big}).encode())  # aiohttp warns on big bytes
    status, body, _ = await call(http, "POST", url, data=raw)
    assert status == 422
    assert body["detail"][0]["rule"] == "file_size_mb<"
    ok = {"image_url": png_uri(65, 65), "scale": 1.5}
    assert (await call(http, "POST", url, json=ok))[0] == 200
    assert (await call(http, "POST", url, json={**ok, "scale": 3}))[0] == 200  # an int is a float

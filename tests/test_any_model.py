"""One input check for every entry point, any model: seed dicts, catalog schemas, vocabulary.

Schemas here are written by hand from ``runcomfy-api.md`` ("Schema vocabulary"), not derived
from the client's typed models.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

import runcomfy_async as rc
from runcomfy_async import Client
from runcomfy_async.testing import Simulator

from .conftest import FAST_RETRY, GOOD_INPUTS, WAN22, WAN25

pytestmark = pytest.mark.anyio

COLLAGE = "acme/collage/images-to-image"
FLUX = "acme/flux-lite/text-to-image"


@pytest.fixture
async def checking(sim: Simulator) -> Any:
    """A client that checks every model's dicts against its catalog schema."""
    async with Client(token=sim.token, base_url=sim.url, retry=FAST_RETRY, check_inputs=True) as c:
        yield c


@pytest.mark.parametrize(
    ("model", "bad", "field"),
    [
        (WAN25, {"resolution": "4K"}, "resolution"),
        (WAN25, {"prompt": "x" * 900}, "prompt"),
        (WAN25, {"duration": 7}, "duration"),
        (WAN25, {"img_url": "not a url"}, "img_url"),
        (WAN22, {"resolution": "720P"}, "resolution"),
        (WAN22, {"negative_prompt": "n" * 501}, "negative_prompt"),
        (WAN25, {"img_url": None}, "img_url"),
        (WAN25, {"seeed": 3}, "seeed"),
    ],
)
@pytest.mark.parametrize("entry", ["submit", "run", "map"])
async def test_seed_dicts_get_the_typed_checks_everywhere(
    client: Client, sim: Simulator, model: str, bad: dict[str, Any], field: str, entry: str
) -> None:
    """A bad dict for a seed model is refused locally from submit, run and map; nothing sent."""
    inputs = {**GOOD_INPUTS, **bad}

    async def call() -> None:
        if entry == "submit":
            await client.submit(model, inputs)
        elif entry == "run":
            await client.run(model, inputs)
        else:
            async for outcome in client.map(model, [inputs]):
                assert outcome.error is not None
                raise outcome.error

    with pytest.raises(rc.InputValidationError) as info:
        await call()
    assert info.value.field == field
    assert sim.log == []


async def test_seed_dict_sends_only_the_callers_keys(client: Client, sim: Simulator) -> None:
    """A checked seed dict is sent as written: no defaults added, nothing dropped."""
    await client.submit(WAN25, GOOD_INPUTS)
    (record,) = sim.log
    assert record.body is not None
    assert msgspec.json.decode(record.body) == GOOD_INPUTS


async def test_no_check_leaves_dicts_to_the_server(sim: Simulator) -> None:
    """check_inputs=False sends a seed dict unchecked; the server's 422 comes back."""
    async with Client(token=sim.token, base_url=sim.url, retry=FAST_RETRY, check_inputs=False) as c:
        with pytest.raises(rc.InvalidInputError):
            await c.submit(WAN25, {**GOOD_INPUTS, "resolution": "4K"})
    assert sim.count("submit") == 1 and sim.stats.jobs_created == 0


@pytest.mark.parametrize(
    ("inputs", "field"),
    [
        ({"prompt": "p", "image_uris": ["not a url"]}, "image_uris[0]"),
        ({"prompt": "p", "image_uris": "https://example.com/a.png"}, "image_uris"),
        ({"prompt": "p", "image_uris": []}, "image_uris"),
        ({"prompt": "p", "image_uris": ["https://e.com/a.png"], "strength": "high"}, "strength"),
        ({"prompt": "p", "image_uris": ["https://e.com/a.png"], "strength": 2.5}, "strength"),
    ],
)
async def test_catalog_schema_vocabulary(
    checking: Client, sim: Simulator, inputs: dict[str, Any], field: str
) -> None:
    """``*_uris`` lists without items and ``type: float`` are checked; no POST is sent."""
    with pytest.raises(rc.InputValidationError) as info:
        await checking.submit(COLLAGE, inputs)
    assert info.value.field == field
    assert sim.count("submit") == 0 and sim.count("model") == 1


async def test_catalog_entry_fetched_once_per_model(checking: Client, sim: Simulator) -> None:
    """Many checked submits for one model fetch its entry once; good inputs go through."""
    for n in range(3):
        await checking.submit(FLUX, {"prompt": f"fox {n}", "guidance_scale": 2.5})
    assert sim.count("model") == 1 and sim.count("submit") == 3


async def test_unknown_model_refused_before_any_job(checking: Client, sim: Simulator) -> None:
    """With checks on, a typo'd model id fails at the catalog (400001); no job is created."""
    with pytest.raises(rc.BadRequestError) as info:
        await checking.submit("acme/flux-lyte/text-to-image", {"prompt": "p"})
    assert info.value.error_code == 400001
    assert sim.count("submit") == 0 and sim.stats.jobs_created == 0


@pytest.mark.parametrize(
    ("schema", "value", "ok"),
    [
        ({"type": "float"}, 1.5, True),
        ({"type": "float"}, 2, True),
        ({"type": "float"}, "1.5", False),
        ({"type": "float"}, True, False),
        ({"type": "array", "format": "video_uris"}, ["https://e.com/a.mp4"], True),
        ({"type": "array", "format": "audio_uris"}, ["file.wav"], False),
        ({"type": "string", "format": "image_uri_with_mask_image_ideogramv3"}, "oops", False),
        (
            {"type": "string", "format": "image_uri_with_mask_image_ideogramv3"},
            "https://e.com/a.png",
            True,
        ),
    ],
)
async def test_schema_words_unit(schema: dict[str, Any], value: object, ok: bool) -> None:
    """RunComfy's own schema words are understood by the local check."""
    from runcomfy_async.inputs import check_inputs

    entry = {"type": "object", "properties": {"x": schema}}
    if ok:
        await check_inputs({"x": value}, entry)
    else:
        with pytest.raises(rc.InputValidationError):
            await check_inputs({"x": value}, entry)

"""The catalog from the library: list_models paging, search and category; env-var settings."""

from __future__ import annotations

from pathlib import Path

import pytest

import runcomfy_async as rc
from runcomfy_async import Client
from runcomfy_async.testing import Fault, FaultKind, Simulator

from .conftest import FAST_RETRY, GOOD_INPUTS, WAN25

pytestmark = pytest.mark.anyio


async def test_list_models_pages_by_itself(client: Client, sim: Simulator) -> None:
    """Every entry comes once, across pages asked with limit/offset until the total."""
    for n in range(120):
        sim.register_model(f"bulk/model-{n:03d}/text-to-image", categories=("bulk",))
    ids = [m.model_id async for m in client.list_models(category="bulk")]
    assert ids == [f"bulk/model-{n:03d}/text-to-image" for n in range(120)]
    pages = [r for r in sim.log if r.route == "models"]
    assert len(pages) == 3
    assert [r.query.get("offset") for r in pages] == ["0", "50", "100"]
    assert all(r.query.get("category") == "bulk" for r in pages)


async def test_list_models_search_and_fields(client: Client, sim: Simulator) -> None:
    """search narrows the listing; entries carry kind, categories, price and pricing note."""
    found = [m async for m in client.list_models(search="tone voice")]
    assert [m.model_id for m in found] == ["acme/tone-voice/text-to-audio"]
    (audio,) = found
    assert audio.kind == "model" and "audio" in audio.categories
    assert audio.price_unit == "second" and audio.base_price_usd == pytest.approx(0.002)
    assert audio.pricing_note
    images = [m async for m in client.list_models(category="image")]
    assert {m.price_unit for m in images} == {"output"}
    assert [m async for m in client.list_models(search="no such model")] == []


async def test_base_url_from_environment(sim: Simulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """Client() reads RUNCOMFY_BASE_URL; an explicit base_url wins."""
    monkeypatch.setenv("RUNCOMFY_BASE_URL", sim.url)
    monkeypatch.setenv("RUNCOMFY_API_TOKEN", sim.token)
    async with Client(retry=FAST_RETRY) as c:
        assert c.base_url == sim.url
        await c.submit(WAN25, GOOD_INPUTS)
    assert sim.count("submit") == 1
    async with Client(base_url="https://model-api.runcomfy.net") as c:
        assert c.base_url == "https://model-api.runcomfy.net"


async def test_token_from_file(
    sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The token may come from the file named by RUNCOMFY_API_TOKEN_FILE (newline stripped)."""
    monkeypatch.delenv("RUNCOMFY_API_TOKEN", raising=False)
    path = tmp_path / "token"
    path.write_text(sim.token + "\n")
    monkeypatch.setenv("RUNCOMFY_API_TOKEN_FILE", str(path))
    async with Client(base_url=sim.url, retry=FAST_RETRY) as c:
        await c.submit(WAN25, GOOD_INPUTS)
    assert sim.log[-1].authorization == f"Bearer {sim.token}"
    monkeypatch.setenv("RUNCOMFY_API_TOKEN_FILE", str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="RUNCOMFY_API_TOKEN_FILE"):
        Client(base_url=sim.url)


@pytest.mark.parametrize("variant", ["cancellation_requested", "no_outcome", "invalid_json"])
async def test_cancel_status_cancelled_is_confirmed(
    client: Client, sim: Simulator, variant: str
) -> None:
    """``{"status": "cancelled", "outcome": "cancellation_requested"}`` reads as cancelled."""
    handle = await client.submit(WAN25, GOOD_INPUTS)
    sim.add_fault(Fault(FaultKind.CANCEL_SHAPE, "cancel", variant=variant))
    answer = await handle.cancel()
    assert answer.cancelled
    with pytest.raises(rc.JobCancelledError):
        await handle.wait()

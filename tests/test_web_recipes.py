"""The README's web-server recipes, run: FastAPI over httpx's ASGI transport, aiohttp's server."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any, Final

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

import httpx
from aiohttp.test_utils import TestClient, TestServer

from runcomfy_async import TOKEN_ENV, Client, JobState
from runcomfy_async.testing import JobScript, Simulator

pytestmark = pytest.mark.anyio

README: Final = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
BLOCKS: Final = re.findall(r"^```python\n(.*?)^```", README, re.S | re.M)
FOX: Final = {"prompt": "a fox", "img_url": "https://example.com/fox.png"}


@pytest.fixture
def recipe_env(sim: Simulator, monkeypatch: pytest.MonkeyPatch) -> Simulator:
    """Make the recipes' ``Client()`` reach the simulator."""
    monkeypatch.setenv(TOKEN_ENV, sim.token)
    defaults = Client.__init__.__kwdefaults__
    assert defaults is not None
    monkeypatch.setitem(defaults, "base_url", sim.url)
    return sim


def _load(marker: str, name: str) -> dict[str, Any]:
    (block,) = [b for b in BLOCKS if marker in b]
    namespace: dict[str, Any] = {"__name__": name}
    exec(compile(block, f"README.md:{name}", "exec"), namespace)
    return namespace


def _events(text: str) -> list[str]:
    return re.findall(r"^event: (\w+)$", text, re.M)


async def test_fastapi_recipe_streams_transitions(recipe_env: Simulator) -> None:
    """FastAPI: client opened in lifespan, a job's transitions streamed as SSE to the end."""
    sim = recipe_env
    app = _load("FastAPI(lifespan", "readme_fastapi")["app"]
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://app") as http,
    ):
        created = await http.post("/videos", json=FOX)
        assert created.status_code == 202
        request_id = created.json()["id"]
        stream = await http.get(f"/videos/{request_id}/events")
        assert stream.headers["content-type"].startswith("text/event-stream")
        client = app.state.runcomfy
    assert _events(stream.text) == ["queued", "inprogress", "completed"]
    assert '"request_id":"' + request_id in stream.text
    assert "closed" in repr(client)  # the lifespan closed it
    assert sim.count("cancel") == 0


async def test_fastapi_browser_disconnect_leaves_nothing(recipe_env: Simulator) -> None:
    """A browser leaving mid-stream ends the watch: no cancel, no task left, the job runs on."""
    sim = recipe_env
    sim.script_next(JobScript(queue_polls=10_000))
    app = _load("FastAPI(lifespan", "readme_fastapi")["app"]
    async with app.router.lifespan_context(app):
        client: Client = app.state.runcomfy
        handle = await client.submit("wan-ai/wan-2-5/image-to-video", FOX)
        first_event = asyncio.Event()
        chunks: list[bytes] = []

        async def receive() -> dict[str, Any]:
            await first_event.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.body" and message.get("body"):
                chunks.append(message["body"])
                first_event.set()

        before = asyncio.all_tasks()
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": f"/videos/{handle.request_id}/events",
            "raw_path": f"/videos/{handle.request_id}/events".encode(),
            "query_string": b"",
            "headers": [(b"host", b"app")],
            "server": ("app", 80),
            "client": ("browser", 1234),
            "root_path": "",
        }
        await asyncio.wait_for(app(scope, receive, send), 10)
        assert b"event: queued" in chunks[0]
        assert asyncio.all_tasks() == before  # the watch and its poll are gone
        polls = sim.count("status", request_id=handle.request_id)
        assert (await client.status(handle.request_id)).state is JobState.IN_QUEUE
        assert sim.count("status", request_id=handle.request_id) == polls + 1  # only ours
        assert sim.count("cancel") == 0  # never cancelled remotely


async def test_aiohttp_recipe_opens_and_closes_the_client(recipe_env: Simulator) -> None:
    """aiohttp: the client lives in cleanup_ctx, serves a job, and closes with the app."""
    recipe = _load("web.run_app", "readme_aiohttp")
    app = recipe["make_app"]()
    async with TestClient(TestServer(app)) as http:
        created = await http.post("/videos", json=FOX)
        assert created.status == 202
        video_id = (await created.json())["id"]
        body = await (await http.get(f"/videos/{video_id}")).json()
        assert body["state"] in ("in_queue", "in_progress", "succeeded")
        client = app[recipe["CLIENT"]]
        assert "open" in repr(client)
    assert "closed" in repr(client)

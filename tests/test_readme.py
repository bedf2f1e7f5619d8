"""README.md stays true: every Python block runs against the simulator, commands match CI.

The snippets are written for real use (``Client()`` with the token and base URL from the
environment). Here only the two variables a user would export after ``runcomfy
simulator`` are set, ``RUNCOMFY_API_TOKEN`` and ``RUNCOMFY_BASE_URL``, and the text runs
unchanged. A model a snippet names that the simulator does not seed (a real RunComfy id)
is registered in the simulator's catalog, with a schema and an output of its own shape.
Plain scripts run as ``__main__`` in a worker thread (they call ``asyncio.run``); the
web-server block is imported and its app driven over HTTP; the pytest block runs under
pytest in a subprocess, through the installed ``runcomfy_sim`` fixture.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any, Final

import anyio
import pytest
from aiohttp.test_utils import TestClient, TestServer

from runcomfy_async import TOKEN_ENV
from runcomfy_async._config import BASE_URL_ENV, TOKEN_FILE_ENV
from runcomfy_async.cli import ExitCode
from runcomfy_async.testing import ModelSpec, Simulator

ROOT: Final = Path(__file__).resolve().parents[1]
README: Final = (ROOT / "README.md").read_text(encoding="utf-8")
BLOCKS: Final = re.findall(r"^```python\n(.*?)^```", README, re.S | re.M)
SHELL: Final = re.findall(r"^```sh\n(.*?)^```", README, re.S | re.M)

DEMO_COMMAND: Final = (
    "python3 -m venv .venv && . .venv/bin/activate && pip install -e '.[cli]' && runcomfy demo"
)
TEST_COMMAND: Final = "pip install -e '.[dev]' && pytest"

#: Real RunComfy models the README uses beyond the simulator's seeds, as the catalog lists
#: them (``runcomfy-api.md``; the schema written by hand), answering ``output.images``.
README_MODELS: Final = (
    ModelSpec(
        model_id="blackforestlabs/flux-1-kontext/pro/edit",
        display_name="FLUX.1 Kontext Pro Edit",
        input_schema={
            "type": "object",
            "required": ["prompt", "image_url"],
            "properties": {
                "prompt": {"type": "string", "minLength": 1},
                "image_url": {"type": "string", "format": "image_uri"},
                "seed": {"type": "integer"},
                "aspect_ratio": {"type": "string", "enum": ["1:1", "16:9", "9:16", "4:3", "3:4"]},
            },
        },
        output={"images": ["{urls}"]},
        output_files=("edit.png",),
        duration_input=None,
        base_price_usd=0.04,
        price_unit="output",
        categories=("image", "image-to-image"),
    ),
)


def _kind(block: str) -> str:
    if "def test_" in block:
        return "pytest"
    if "web.run_app" in block:
        return "server"
    return "script"


def _name(index: int, block: str) -> str:
    return f"block{index}-{_kind(block)}"


@pytest.fixture
def readme_env(sim: Simulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Simulator:
    """Export what ``runcomfy simulator`` prints, nothing else, and run in a scratch folder."""
    monkeypatch.delenv(TOKEN_FILE_ENV, raising=False)
    monkeypatch.setenv(TOKEN_ENV, sim.token)
    monkeypatch.setenv(BASE_URL_ENV, sim.url)
    for spec in README_MODELS:
        sim.register_model(spec)
    monkeypatch.chdir(tmp_path)
    return sim


def _exec(block: str, name: str, module_name: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": module_name}
    exec(compile(block, f"README.md:{name}", "exec"), namespace)
    return namespace


def test_readme_has_snippets_of_every_kind() -> None:
    """The README shows a script, a web server and a pytest test."""
    assert {_kind(block) for block in BLOCKS} == {"script", "server", "pytest"}
    assert len(BLOCKS) >= 8


def test_install_commands_are_the_ones_ci_runs() -> None:
    """The demo command is verbatim, and the test command is exactly .ci/run's."""
    commands = [line.strip() for block in SHELL for line in block.splitlines()]
    assert DEMO_COMMAND in commands
    venv = "python3 -m venv .venv && . .venv/bin/activate && "
    assert venv + TEST_COMMAND in commands
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert TEST_COMMAND in [line.strip() for line in ci]


def test_exit_code_table_matches_the_command() -> None:
    """Every exit code of the CLI is in the README's table, and no other."""
    table = {int(code) for code in re.findall(r"^\| (\d+) \|", README, re.M)}
    assert table == {int(code) for code in ExitCode}


@pytest.mark.anyio
@pytest.mark.parametrize(
    "block",
    [pytest.param(b, id=_name(i, b)) for i, b in enumerate(BLOCKS, 1) if _kind(b) == "script"],
)
async def test_script_block_runs(
    readme_env: Simulator, block: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A script block runs to the end; a journaled one submits nothing when rerun."""
    for optional in ("opentelemetry.sdk", "fastapi"):  # dev extras: skip when absent
        if f"from {optional}" in block:
            pytest.importorskip(optional)
    sim = readme_env
    await anyio.to_thread.run_sync(_exec, block, "script", "__main__")
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    if "list_models" in block:  # the any-model block: found by search, checked, downloaded
        assert "blackforestlabs/flux-1-kontext/pro/edit 0.04 output" in captured.out
        assert f"{sim.storage_url}/" in captured.out and "'images'" in captured.out
        assert [p.name async for p in anyio.Path("edits").iterdir()] == ["edit.png"]
        assert sim.count("model") == 1 and sim.count("submit") == 1
    if "journal=" in block:
        submits = sim.count("submit")
        assert submits > 0
        await anyio.to_thread.run_sync(_exec, block, "script", "__main__")
        assert sim.count("submit") == submits


@pytest.mark.anyio
@pytest.mark.usefixtures("readme_env")
async def test_server_block_serves_jobs() -> None:
    """The aiohttp block accepts a job and reports its state until it has output URLs."""
    (block,) = [b for b in BLOCKS if _kind(b) == "server"]
    app = _exec(block, "server", "readme_server")["make_app"]()
    async with TestClient(TestServer(app)) as http:
        created = await http.post(
            "/videos", json={"prompt": "a fox", "img_url": "https://example.com/fox.png"}
        )
        assert created.status == 202
        video_id = (await created.json())["id"]
        body: dict[str, Any] = {}
        for _ in range(20):  # the scripted clock moves one step per status poll
            body = await (await http.get(f"/videos/{video_id}")).json()
            if "urls" in body:
                break
        assert body["state"] == "succeeded" and body["urls"]


@pytest.mark.anyio
async def test_pytest_block_passes(tmp_path: Path) -> None:
    """The testing example passes under pytest with the installed runcomfy_sim fixture."""
    (block,) = [b for b in BLOCKS if _kind(b) == "pytest"]
    test_file = tmp_path / "test_from_readme.py"
    test_file.write_text(block, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = await anyio.run_process(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test_file)],
        cwd=tmp_path,
        env=env,
        check=False,
    )
    output = result.stdout.decode() + result.stderr.decode()
    assert result.returncode == 0, output
    assert "1 passed" in output

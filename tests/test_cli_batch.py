"""``runcomfy batch`` checks every line before the first submit, and sums up what it did.

Every bad line is reported (line number, field, what is wrong) and nothing is sent; a
model without built-in rules is checked against its catalog schema, fetched once.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pytest

from runcomfy_async.cli import ExitCode
from runcomfy_async.testing import JobScript, ModelSpec, Simulator

from ._cli_support import cli, json_lines, one_error_line, point_at
from .conftest import GOOD_INPUTS, WAN25

pytestmark = pytest.mark.anyio

DONE_AT_ONCE = JobScript(queue_polls=0, run_polls=0)
FLUX = "acme/flux-lite/text-to-image"


@pytest.fixture
def env(sim: Simulator, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Point the command at the simulator through the environment."""
    return point_at(sim, monkeypatch)


def write_lines(path: Path, lines: list[str]) -> str:
    """Write a JSONL file and return its path as the CLI takes it."""
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


@pytest.mark.usefixtures("env")
async def test_every_bad_line_is_reported_and_nothing_sent(
    sim: Simulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Bad JSON, 4K, 900 characters and a reused key: all four named, exit 2, no request."""
    source = write_lines(
        tmp_path / "in.jsonl",
        [
            json.dumps(GOOD_INPUTS),
            "{not json",
            json.dumps({**GOOD_INPUTS, "resolution": "4K"}),
            json.dumps({"key": "a", "inputs": GOOD_INPUTS}),
            json.dumps({"key": "a", "inputs": GOOD_INPUTS}),
            json.dumps({**GOOD_INPUTS, "prompt": "x" * 900}),
        ],
    )
    assert await cli("batch", WAN25, source) == ExitCode.USAGE
    err = capsys.readouterr().err
    error = one_error_line(err)
    assert "4 of 6 lines" in error and "lines 2, 3, 5, 6" in error and "nothing was sent" in error
    assert "--no-check" in error
    details = [line.strip() for line in err.splitlines() if line.startswith("  ")]
    assert len(details) == 4
    assert details[0].startswith(f"{source} line 2: not valid JSON")
    assert details[1].startswith(f"{source} line 3: input 'resolution' = '4K'")
    assert "already used on line 4" in details[2]
    assert details[3].startswith(f"{source} line 6: input 'prompt'") and "800" in details[3]
    assert sim.log == []


@pytest.mark.usefixtures("env")
async def test_bad_lines_as_json(
    sim: Simulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """With --json each bad line is also one JSON object naming its line, key and field."""
    source = write_lines(
        tmp_path / "in.jsonl",
        [json.dumps({**GOOD_INPUTS, "duration": 7}), json.dumps(GOOD_INPUTS)],
    )
    assert await cli("--json", "batch", WAN25, source) == ExitCode.USAGE
    (line,) = json_lines(capsys.readouterr().out)
    assert line["line"] == 1 and line["key"] == "line-1" and line["field"] == "duration"
    assert line["ok"] is False and line["error_type"] == "InputValidationError"
    assert sim.log == []


@pytest.mark.usefixtures("env")
async def test_other_models_are_checked_by_their_catalog_schema_once(
    sim: Simulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A catalog model's lines are checked by its schema, fetched once; no job is created."""
    lines = [json.dumps({"prompt": f"cat {n}", "num_images": 1}) for n in range(5)]
    lines[1] = json.dumps({"prompt": "cat", "num_images": 9})
    lines[3] = json.dumps({"prompt": "cat", "aspect_ratio": "4:3"})
    source = write_lines(tmp_path / "in.jsonl", lines)
    assert await cli("batch", FLUX, source) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert "lines 2, 4" in one_error_line(err)
    assert "'num_images' = 9" in err and "'aspect_ratio' = '4:3'" in err
    assert [rec.route for rec in sim.log] == ["model"]
    assert sim.stats.jobs_created == 0


@pytest.mark.usefixtures("env")
async def test_registered_model_lines_checked_then_run(
    sim: Simulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Good lines of a registered model run after one catalog look-up; cost is summed."""
    sim.register_model(
        ModelSpec(
            model_id="acme/echo/text-to-text",
            input_schema={"type": "object", "required": ["text"], "properties": {}},
            duration_input=None,
            default_seconds=1.0,
            base_price_usd=0.5,
        )
    )
    for _ in range(3):
        sim.script_next(DONE_AT_ONCE)
    source = write_lines(tmp_path / "in.jsonl", [json.dumps({"text": str(n)}) for n in range(3)])
    assert await cli("batch", "acme/echo/text-to-text", source) == 0
    captured = capsys.readouterr()
    assert sim.count("model") == 1 and sim.count("submit") == 3
    assert "3 items: 3 succeeded, 0 did not; total cost $1.50" in captured.err
    assert {line["status"] for line in json_lines(captured.out)} == {"succeeded"}


@pytest.mark.usefixtures("env")
async def test_no_check_skips_input_checks_not_the_json_parse(
    sim: Simulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """--no-check sends a 4K line (the server's 422 is its result) but still refuses bad JSON."""
    bad_json = write_lines(tmp_path / "a.jsonl", [json.dumps(GOOD_INPUTS), "[1]"])
    assert await cli("batch", WAN25, bad_json, "--no-check") == ExitCode.USAGE
    assert "line 2: expected a JSON object" in one_error_line(capsys.readouterr().err)
    assert sim.log == []
    sim.script_next(DONE_AT_ONCE)
    four_k = write_lines(
        tmp_path / "b.jsonl",
        [json.dumps(GOOD_INPUTS), json.dumps({**GOOD_INPUTS, "resolution": "4K"})],
    )
    assert await cli("batch", WAN25, four_k, "--no-check") == ExitCode.API_ERROR
    lines = {line["key"]: line for line in json_lines(capsys.readouterr().out)}
    assert lines["line-1"]["ok"] is True and lines["line-2"]["error_type"] == "InvalidInputError"
    assert sim.count("submit") == 2 and sim.stats.jobs_created == 1


@pytest.mark.usefixtures("env")
async def test_inline_image_lines_are_checked(
    sim: Simulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A line carrying a 32-px PNG as a data: URI is refused by its pixel rule; nothing sent."""
    image = pytest.importorskip("PIL.Image")
    buffer = io.BytesIO()
    image.new("RGB", (32, 32)).save(buffer, format="PNG")
    tiny = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    source = write_lines(
        tmp_path / "in.jsonl",
        [json.dumps(GOOD_INPUTS), json.dumps({"prompt": "p", "img_url": tiny})],
    )
    assert await cli("batch", WAN25, source) == ExitCode.USAGE
    error = one_error_line(capsys.readouterr().err)
    assert "line 2: input 'img_url'" in error and "360" in error
    assert sim.log == []

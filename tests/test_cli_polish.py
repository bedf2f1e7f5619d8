"""The CLI as a new user meets it: the --out folder checked before paying, one status
vocabulary in text and JSON, a cancel that did not cancel, error lines that say what to
do, no token in any output, and a Ctrl-C'd batch that says how to resume.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import anyio
import pytest

from runcomfy_async import TOKEN_ENV
from runcomfy_async.cli import ExitCode
from runcomfy_async.cli._args import BASE_URL_ENV
from runcomfy_async.testing import Fault, FaultKind, JobScript, Simulator

from ._cli_support import cli, json_lines, one_error_line, point_at
from .conftest import GOOD_INPUTS, WAN25

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[1]
INPUT_ARGS = ["-i", f"prompt={GOOD_INPUTS['prompt']}", "-i", f"img_url={GOOD_INPUTS['img_url']}"]
DONE_AT_ONCE = JobScript(queue_polls=0, run_polls=0)
WORDS = {"queued", "running", "succeeded", "failed", "cancelled"}


@pytest.fixture
def env(sim: Simulator, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Point the command at the simulator through the environment."""
    return point_at(sim, monkeypatch)


# --- run --out: checked before the submit ---------------------------------------------------


@pytest.mark.usefixtures("env")
async def test_out_that_cannot_take_files_is_refused_before_submit(
    sim: Simulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """--out naming a file, or a folder under a file: exit 2, no request at all."""
    a_file = tmp_path / "taken"
    a_file.write_text("x")
    for out, words in [(a_file, "is a file, not a folder"), (a_file / "sub", "is a file")]:
        assert await cli("run", WAN25, *INPUT_ARGS, "--out", str(out)) == ExitCode.USAGE
        assert words in one_error_line(capsys.readouterr().err)
    assert sim.log == []


@pytest.mark.skipif(sys.platform == "win32" or os.geteuid() == 0, reason="root writes anywhere")
@pytest.mark.usefixtures("env")
async def test_read_only_out_is_refused_before_submit(
    sim: Simulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A folder we cannot write in, or cannot create a folder in: exit 2, nothing sent."""
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    for out in (locked, locked / "new"):
        assert await cli("run", WAN25, *INPUT_ARGS, "--out", str(out)) == ExitCode.USAGE
        assert "nothing was sent" in one_error_line(capsys.readouterr().err)
    assert sim.log == []


@pytest.mark.usefixtures("env")
async def test_run_out_creates_the_folder_and_keeps_both_on_a_taken_name(
    sim: Simulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A missing folder is created; a second run keeps the first file, --overwrite replaces."""
    out = tmp_path / "new" / "videos"
    sim.script_next(DONE_AT_ONCE, count=3)
    assert await cli("run", WAN25, *INPUT_ARGS, "--out", str(out)) == 0
    first = out / "output.mp4"
    assert capsys.readouterr().out.split() == [str(first)]
    first.write_bytes(b"the first run's video")
    assert await cli("run", WAN25, *INPUT_ARGS, "--out", str(out)) == 0
    captured = capsys.readouterr()
    assert captured.out.split() == [str(out / "output-2.mp4")]
    assert "output.mp4 exists; kept it" in captured.err
    assert first.read_bytes() == b"the first run's video"
    assert await cli("run", WAN25, *INPUT_ARGS, "--out", str(out), "--overwrite") == 0
    assert capsys.readouterr().out.split() == [str(first)]
    assert first.read_bytes() != b"the first run's video"
    assert sorted(p.name for p in out.iterdir()) == ["output-2.mp4", "output.mp4"]


# --- one status vocabulary ------------------------------------------------------------------


@pytest.mark.usefixtures("env")
async def test_run_json_events_speak_the_vocabulary(
    sim: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    """run --json: queued, running, succeeded, each as event and status, result status too."""
    sim.script_next(JobScript(queue_polls=1, run_polls=1))
    assert await cli("--json", "run", WAN25, *INPUT_ARGS) == 0
    lines = json_lines(capsys.readouterr().out)[1:]
    assert [line["event"] for line in lines] == ["queued", "running", "succeeded"]
    assert [line["status"] for line in lines] == ["queued", "running", "succeeded"]
    result = lines[-1]["result"]
    assert isinstance(result, dict) and result["status"] == "succeeded"


@pytest.mark.usefixtures("env")
@pytest.mark.parametrize(
    ("script", "word"),
    [
        (JobScript(queue_polls=10**6), "queued"),
        (JobScript(queue_polls=0, run_polls=10**6), "running"),
        (JobScript(queue_polls=0, run_polls=0), "succeeded"),
        (JobScript(queue_polls=0, run_polls=0, outcome="failed"), "failed"),
    ],
)
async def test_status_and_result_speak_the_vocabulary(
    sim: Simulator, capsys: pytest.CaptureFixture[str], script: JobScript, word: str
) -> None:
    """status and result print the same word in text and JSON, a finished job's outcome too."""
    sim.script_next(script)
    assert await cli("submit", WAN25, *INPUT_ARGS) == 0
    request_id = capsys.readouterr().out.strip()
    sim.advance(request_id, 2)
    assert await cli("status", request_id) == 0
    assert capsys.readouterr().out.split()[0] == word
    assert await cli("status", request_id, "--json") == 0
    (status,) = json_lines(capsys.readouterr().out)
    assert status["status"] == word and "server_status" in status
    await cli("result", request_id, "--json")
    (result,) = json_lines(capsys.readouterr().out)
    assert result["status"] == word
    await cli("result", request_id)
    assert f"request {request_id}: {word}" in capsys.readouterr().err


# --- cancel ---------------------------------------------------------------------------------


@pytest.mark.usefixtures("env")
@pytest.mark.parametrize(
    ("script", "sentence"),
    [
        (JobScript(queue_polls=0, run_polls=10**6), "already running"),
        (JobScript(queue_polls=0, run_polls=0), "already finished (succeeded)"),
    ],
)
async def test_cancel_that_did_not_cancel_exits_1(
    sim: Simulator, capsys: pytest.CaptureFixture[str], script: JobScript, sentence: str
) -> None:
    """A running or finished job is not cancelled: exit 1 and a sentence saying so."""
    sim.script_next(script)
    assert await cli("submit", WAN25, *INPUT_ARGS) == 0
    request_id = capsys.readouterr().out.strip()
    sim.advance(request_id, 2)
    assert await cli("cancel", request_id) == ExitCode.JOB_FAILED
    assert sentence in one_error_line(capsys.readouterr().err)
    assert await cli("cancel", request_id, "--json") == ExitCode.JOB_FAILED
    (answer,) = json_lines(capsys.readouterr().out)
    assert answer["cancelled"] is False and sentence in str(answer["message"])
    assert answer["status"] in WORDS


@pytest.mark.usefixtures("env")
async def test_cancel_of_a_queued_job_exits_0(
    sim: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    """A queued job is cancelled: exit 0, and the job is cancelled on the server."""
    sim.script_next(JobScript(queue_polls=10**6))
    assert await cli("submit", WAN25, *INPUT_ARGS) == 0
    request_id = capsys.readouterr().out.strip()
    assert await cli("cancel", request_id) == 0
    assert "cancelled" in capsys.readouterr().out
    assert sim.job(request_id).state == "cancelled"


# --- error lines ----------------------------------------------------------------------------


async def test_refused_token_says_where_to_get_one(
    sim: Simulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 401 line: what happened, where to get a token and what to set, then the route."""
    monkeypatch.setenv(TOKEN_ENV, "wrong-secret-token")
    monkeypatch.setenv(BASE_URL_ENV, sim.url)
    assert await cli("submit", WAN25, *INPUT_ARGS) == ExitCode.API_ERROR
    captured = capsys.readouterr()
    line = one_error_line(captured.err)
    what = line.index("the API token was refused (HTTP 401")
    todo = line.index("https://www.runcomfy.com/profile")
    env_var = line.index(TOKEN_ENV)
    route = line.index("— POST /v1/models/{model_id}")
    assert what < todo < env_var < route
    assert "wrong-secret-token" not in captured.err + captured.out


async def test_echoed_token_is_redacted(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server error quoting the Authorization header never shows the token."""
    token = "sekrit-token-123"
    async with Simulator(token=token, faults=[Fault(FaultKind.ECHO_TOKEN, "submit")]) as sim:
        point_at(sim, monkeypatch)
        assert await cli("run", WAN25, *INPUT_ARGS) == ExitCode.API_ERROR
        captured = capsys.readouterr()
        assert token not in captured.err + captured.out
        assert "[redacted]" in one_error_line(captured.err)
        assert await cli("--json", "submit", WAN25, *INPUT_ARGS) == 0  # the fault was one-shot
        assert token not in capsys.readouterr().out


@pytest.mark.usefixtures("env")
async def test_error_lines_lead_with_what_to_do(
    sim: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    """Unknown request, unknown model, refused inputs: a sentence and a next step, route last."""
    assert await cli("status", "no-such-request") == ExitCode.API_ERROR
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith("error: the API does not know this request")
    assert line.endswith("— GET /v1/requests/{id}/status (request no-such-request)")
    assert await cli("run", "acme/nope/x", "-i", "prompt=p") == ExitCode.USAGE
    line = one_error_line(capsys.readouterr().err)
    assert "does not know this model id" in line and "runcomfy models --search" in line
    code = await cli("submit", WAN25, *INPUT_ARGS, "-i", "resolution=4K", "--no-check")
    assert code == ExitCode.API_ERROR
    line = one_error_line(capsys.readouterr().err)
    assert "refused the inputs (HTTP 422" in line and "--schema" in line


@pytest.mark.usefixtures("env")
async def test_missing_token_line_says_where_to_get_one(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No token at all: exit 2, naming the variable and the page that gives one."""
    monkeypatch.delenv(TOKEN_ENV)
    assert await cli("status", "abc") == ExitCode.USAGE
    line = one_error_line(capsys.readouterr().err)
    assert TOKEN_ENV in line and "https://www.runcomfy.com/profile" in line


# --- a Ctrl-C'd batch says how to resume ----------------------------------------------------


@pytest.mark.parametrize("journaled", [True, False])
async def test_interrupted_batch_prints_the_command_to_resume(
    sim: Simulator, tmp_path: Path, journaled: bool
) -> None:
    """SIGINT mid-batch exits 130 and prints the exact command line that resumes it."""
    sim.script_next(JobScript(queue_polls=10**6), count=2)
    source = tmp_path / "in.jsonl"
    source.write_text(f"{json.dumps(GOOD_INPUTS)}\n{json.dumps(GOOD_INPUTS)}\n")
    journal = ["--journal", str(tmp_path / "j.db")] if journaled else []
    argv = ["batch", WAN25, str(source), *journal]
    env = {**os.environ, TOKEN_ENV: sim.token, BASE_URL_ENV: sim.url}
    command = [sys.executable, "-m", "runcomfy_async", *argv]
    async with await anyio.open_process(command, env=env, cwd=ROOT) as process:
        with anyio.fail_after(30):
            await sim.wait_for(route="status", count=2)
        process.send_signal(signal.SIGINT)
        with anyio.fail_after(30):
            code = await process.wait()
        assert process.stderr is not None
        err = b"".join([chunk async for chunk in process.stderr]).decode()
    assert code == ExitCode.INTERRUPTED, err
    assert "interrupted after 0 of 2 items" in err
    rerun = f"runcomfy batch {WAN25} {source}"
    if journaled:
        assert (
            f"to resume, run the same command again: {rerun} --journal {tmp_path / 'j.db'}" in err
        )
    else:
        assert "without --journal a rerun submits every line again" in err
        assert f"{rerun} --journal runcomfy-batch.db" in err


# --- models --search / --category -----------------------------------------------------------


@pytest.mark.usefixtures("env")
async def test_models_search_pages_through_the_catalog(
    sim: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    """--search lists every match across pages, in text and JSON; no match says so."""
    for n in range(60):  # more than one page of 50
        sim.register_model(f"acme/probe-{n:02d}/text-to-image")
    assert await cli("models", "--search", "PROBE", "--json") == 0
    found = json_lines(capsys.readouterr().out)
    assert [line["model_id"] for line in found] == [
        f"acme/probe-{n:02d}/text-to-image" for n in range(60)
    ]
    assert sim.count("models") == 2 and "input_schema" not in found[0]
    assert await cli("models", "--search", "wan 2.5") == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{WAN25}  Wan 2.5 Image to Video  ($0.05 per second)  [video,")
    assert await cli("models", "--search", "no-such-thing") == 0
    captured = capsys.readouterr()
    assert (
        captured.out == "" and "no catalog entry matches --search 'no-such-thing'" in captured.err
    )


@pytest.mark.usefixtures("env")
async def test_models_category_with_schema(
    sim: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    """--category audio lists the audio model; --schema fetches its schema and shows inputs."""
    assert await cli("models", "--category", "audio", "--schema") == 0
    out = capsys.readouterr().out
    assert out.startswith("acme/tone-voice/text-to-audio  Tone Voice Text to Audio")
    assert "inputs: prompt*, duration, voice" in out and '"enum"' in out
    assert sim.count("model") == 1
    assert await cli("models", WAN25, "--search", "x") == ExitCode.USAGE
    assert "not both" in one_error_line(capsys.readouterr().err)

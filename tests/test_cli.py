"""The ``runcomfy`` command against the simulator: in-process and as a real process.

In-process tests call ``main()`` in a worker thread (it runs its own ``asyncio.run``)
while the simulator serves on the test's event loop. Process tests start
``python -m runcomfy_async`` for what only a real process shows: the console entry
point, signals (Ctrl-C) and the demo end to end.
"""

from __future__ import annotations

import io
import json
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import anyio
import pytest

from runcomfy_async import TOKEN_ENV
from runcomfy_async.cli import ExitCode, _demo_summary, _demo_view, _download, _render
from runcomfy_async.cli._args import BASE_URL_ENV, UsageError, parse_inputs
from runcomfy_async.cli._batch import read_items
from runcomfy_async.testing import Fault, FaultKind, JobScript, Simulator

from ._cli_support import cli, json_lines, one_error_line, point_at
from .conftest import GOOD_INPUTS, WAN25

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[1]
INPUT_ARGS = ["-i", f"prompt={GOOD_INPUTS['prompt']}", "-i", f"img_url={GOOD_INPUTS['img_url']}"]
DONE_AT_ONCE = JobScript(queue_polls=0, run_polls=0)


@pytest.fixture
def env(sim: Simulator, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Point the command at the simulator through the environment, as a user would."""
    return point_at(sim, monkeypatch)


# --- arguments and usage -------------------------------------------------------------------


async def test_help_documents_every_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    """--help exits 0 and lists every exit code in its epilog."""
    assert await cli("--help") == 0
    out = capsys.readouterr().out
    for code in ("0 ", "1 ", "2 ", "3 ", "4 ", "124", "130"):
        assert f"\n  {code}" in out
    assert TOKEN_ENV in out and "--token-file" in out


async def test_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    """An argparse mistake and a malformed --input pair both exit 2."""
    assert await cli("run") == ExitCode.USAGE
    assert await cli("status", "x", "--timeout", "-1") == ExitCode.USAGE
    capsys.readouterr()
    assert await cli("submit", WAN25, "-i", "no-equals-sign") == ExitCode.USAGE
    assert "key=value" in one_error_line(capsys.readouterr().err)


async def test_missing_token_exits_2_naming_the_variable(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without RUNCOMFY_API_TOKEN the command says how to set it, in one line."""
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    assert await cli("status", "abc") == ExitCode.USAGE
    assert TOKEN_ENV in one_error_line(capsys.readouterr().err)


async def test_token_file_is_read(
    sim: Simulator,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """--token-file supplies the token; a trailing newline is ignored."""
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    token = tmp_path / "token"
    token.write_text(sim.token + "\n")
    code = await cli("--base-url", sim.url, "--token-file", str(token), "models", "--json")
    assert code == 0
    first, *_ = json_lines(capsys.readouterr().out)
    assert first["model_id"] == WAN25


def test_input_pairs_are_typed() -> None:
    """key=value reads JSON scalars, key:=JSON any JSON, key=@path a Path; pairs override."""
    inputs = parse_inputs(
        ["prompt=a fox", "duration=10", "seed:=42", "tags:=[1]", "flag=true", "img=@x.png"],
        None,
    )
    assert inputs == {
        "prompt": "a fox",
        "duration": 10,
        "seed": 42,
        "tags": [1],
        "flag": True,
        "img": Path("x.png"),
    }
    assert parse_inputs(["prompt=NaN"], None) == {"prompt": "NaN"}
    with pytest.raises(UsageError):
        parse_inputs([], None)
    with pytest.raises(UsageError):
        parse_inputs(["seed:=not json"], None)


# --- run, and one exit code per outcome ----------------------------------------------------


@pytest.mark.usefixtures("env")
async def test_run_prints_output_urls(sim: Simulator, capsys: pytest.CaptureFixture[str]) -> None:
    """run exits 0, prints the output URL on stdout and the transitions on stderr."""
    sim.script_next(DONE_AT_ONCE)
    assert await cli("run", WAN25, *INPUT_ARGS) == 0
    captured = capsys.readouterr()
    assert captured.out.strip().startswith(sim.storage_url)
    assert "succeeded" in captured.err and "submitted" in captured.err


@pytest.mark.usefixtures("env")
async def test_run_json_is_one_object_per_line(
    sim: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    """run --json prints only JSON lines: submitted first, the succeeded result last."""
    sim.script_next(DONE_AT_ONCE)
    assert await cli("--json", "run", WAN25, *INPUT_ARGS) == 0
    lines = json_lines(capsys.readouterr().out)
    assert lines[0]["event"] == "submitted"
    assert lines[-1]["event"] == "succeeded"
    result = lines[-1]["result"]
    assert isinstance(result, dict) and result["status"] == "succeeded"
    assert result["cost"] == pytest.approx(0.25) and result["urls"]


@pytest.mark.usefixtures("env")
@pytest.mark.parametrize("outcome", ["failed", "cancelled"])
async def test_failed_or_cancelled_job_exits_1(
    sim: Simulator, capsys: pytest.CaptureFixture[str], outcome: str
) -> None:
    """A job that fails or is cancelled by the server makes run and watch exit 1."""
    sim.script_next(JobScript(queue_polls=0, run_polls=0, outcome=outcome))  # type: ignore[arg-type]
    assert await cli("run", WAN25, *INPUT_ARGS) == ExitCode.JOB_FAILED
    assert outcome in capsys.readouterr().err
    request_id = sim.log[0].request_id
    assert request_id is not None
    assert await cli("watch", request_id) == ExitCode.JOB_FAILED
    assert await cli("result", request_id) == ExitCode.JOB_FAILED


@pytest.mark.usefixtures("env")
async def test_api_error_exits_3_with_one_line(
    sim: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    """An error answer (404 for an unknown id) is one 'error:' line and exit 3."""
    assert await cli("status", "no-such-request") == ExitCode.API_ERROR
    line = one_error_line(capsys.readouterr().err)
    assert "no-such-request" in line and "404" in line


async def test_bad_token_exits_3(
    sim: Simulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refused token is an API error (exit 3), and the token is not printed."""
    monkeypatch.setenv(TOKEN_ENV, "wrong-secret-token")
    monkeypatch.setenv(BASE_URL_ENV, sim.url)
    assert await cli("submit", WAN25, *INPUT_ARGS) == ExitCode.API_ERROR
    captured = capsys.readouterr()
    assert "wrong-secret-token" not in captured.err + captured.out
    one_error_line(captured.err)


@pytest.mark.usefixtures("env")
async def test_uncertain_submit_exits_4(sim: Simulator, capsys: pytest.CaptureFixture[str]) -> None:
    """A submit reset after the job was created exits 4 and is not retried."""
    sim.add_fault(Fault(FaultKind.RESET_AFTER, "submit"))
    assert await cli("run", WAN25, *INPUT_ARGS) == ExitCode.SUBMIT_UNCERTAIN
    assert "not retried" in one_error_line(capsys.readouterr().err)
    assert sim.count("submit") == 1


@pytest.mark.usefixtures("env")
async def test_input_refused_locally_exits_2(
    sim: Simulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A local file that is not an image is refused before any request (exit 2)."""
    bogus = tmp_path / "fox.png"
    bogus.write_bytes(b"not a png")
    code = await cli("run", WAN25, "-i", "prompt=a fox", "-i", f"img_url=@{bogus}")
    assert code == ExitCode.USAGE
    one_error_line(capsys.readouterr().err)
    assert sim.count("submit") == 0


@pytest.mark.usefixtures("env")
async def test_timeout_exits_124_and_cancels_the_queued_job(
    sim: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    """--timeout on a job that stays queued exits 124 after one remote cancel."""
    sim.script_next(JobScript(queue_polls=10**6))
    assert await cli("run", WAN25, *INPUT_ARGS, "--timeout", "0.2") == ExitCode.WAIT_TIMEOUT
    assert "did not finish" in one_error_line(capsys.readouterr().err)
    request_id = sim.log[0].request_id
    assert request_id is not None
    assert sim.count("cancel", method="POST") == 1
    assert sim.job(request_id).state == "cancelled"


@pytest.mark.usefixtures("env")
async def test_timeout_with_no_cancel_leaves_the_job(sim: Simulator) -> None:
    """--no-cancel keeps a timed-out job in the queue."""
    sim.script_next(JobScript(queue_polls=10**6))
    assert await cli("run", WAN25, *INPUT_ARGS, "--timeout", "0.2", "--no-cancel") == 124
    assert sim.count("cancel") == 0


# --- the one-call commands -----------------------------------------------------------------


@pytest.mark.usefixtures("env")
async def test_submit_status_result_cancel_json(
    sim: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    """submit, status, result and cancel each print one JSON object with --json."""
    sim.script_next(JobScript(queue_polls=5))
    assert await cli("submit", WAN25, *INPUT_ARGS, "--json") == 0
    (submitted,) = json_lines(capsys.readouterr().out)
    request_id = str(submitted["request_id"])
    assert await cli("status", request_id, "--json") == 0
    (status,) = json_lines(capsys.readouterr().out)
    assert status["status"] == "queued" and status["queue_position"] == 5
    assert await cli("result", request_id, "--json") == 0
    (result,) = json_lines(capsys.readouterr().out)
    assert result["status"] == "queued" and result["urls"] == []
    assert await cli("cancel", request_id, "--json") == 0
    (answer,) = json_lines(capsys.readouterr().out)
    assert answer["cancelled"] is True
    assert sim.count("submit") == 1 and sim.count("cancel") == 1


@pytest.mark.usefixtures("env")
async def test_submit_prints_a_bare_id_for_shell_capture(
    sim: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    """Plain submit prints only the request id on stdout, so $(runcomfy submit ...) works."""
    assert await cli("submit", WAN25, *INPUT_ARGS) == 0
    assert capsys.readouterr().out.strip() == sim.log[0].request_id


@pytest.mark.usefixtures("env")
async def test_download_writes_files_and_refuses_to_clobber(
    sim: Simulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """run --out downloads; download again exits 3 on an existing file, 0 with --overwrite."""
    sim.script_next(DONE_AT_ONCE)
    assert await cli("run", WAN25, *INPUT_ARGS, "--out", str(tmp_path)) == 0
    (path,) = capsys.readouterr().out.split()
    assert Path(path).parent == tmp_path and (await anyio.Path(path).stat()).st_size > 0
    request_id = sim.log[0].request_id
    assert request_id is not None
    assert await cli("download", request_id, "-o", str(tmp_path)) == ExitCode.API_ERROR
    assert "exists" in one_error_line(capsys.readouterr().err)
    assert await cli("download", request_id, "-o", str(tmp_path), "--overwrite", "--json") == 0
    (line,) = json_lines(capsys.readouterr().out)
    assert line["files"] == [path]
    assert all(rec.authorization is None for rec in sim.storage_log)


@pytest.mark.usefixtures("env")
async def test_models_lists_the_catalog(capsys: pytest.CaptureFixture[str]) -> None:
    """models shows the known models with their prices; --schema adds the input schema."""
    assert await cli("models") == 0
    out = capsys.readouterr().out
    assert WAN25 in out and "prompt*" in out and "$0.05 per second" in out
    assert await cli("models", WAN25, "--schema", "--json") == 0
    (info,) = json_lines(capsys.readouterr().out)
    schema = info["input_schema"]
    assert isinstance(schema, dict) and "img_url" in schema["properties"]


# --- batch ---------------------------------------------------------------------------------


def test_batch_lines_are_checked_up_front() -> None:
    """Bare inputs get line keys; envelopes keep their key; mistakes name their line."""
    text = '{"prompt": "a"}\n\n{"key": "owl", "inputs": {"prompt": "b"}}\n'
    items = read_items(text, "in.jsonl")
    assert [(i.line, i.key) for i in items] == [(1, "line-1"), (3, "owl")]
    for bad, message in [
        ("[1, 2]", "line 1: expected a JSON object"),
        ("{nope", "line 1: not valid JSON"),
        ('{"key": "a", "inputs": {"p": 1}}\n{"key": "a", "inputs": {"p": 2}}', "already used"),
        ('{"key": "a", "inputs": {"p": 1}, "extra": 1}', "unexpected fields"),
    ]:
        with pytest.raises(UsageError, match=message):
            read_items(bad, "in.jsonl")


@pytest.mark.usefixtures("env")
async def test_batch_writes_results_and_resumes_from_the_journal(
    sim: Simulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A batch writes one line per item; a rerun with its journal submits nothing again."""
    sim.script_next(DONE_AT_ONCE)
    sim.script_next(JobScript(queue_polls=0, run_polls=0, outcome="failed"))
    sim.script_next(DONE_AT_ONCE)
    inputs = tmp_path / "in.jsonl"
    inputs.write_text(
        "\n".join(
            [
                json.dumps(GOOD_INPUTS),
                json.dumps({"key": "fails", "inputs": GOOD_INPUTS}),
                json.dumps({"key": "fox/2", "inputs": GOOD_INPUTS}),
            ]
        )
    )
    journal, out, files = tmp_path / "j.db", tmp_path / "out.jsonl", tmp_path / "files"
    argv = ["batch", WAN25, str(inputs), "--journal", str(journal), "--concurrency", "1"]
    code = await cli(*argv, "-o", str(out), "--download", str(files))
    assert code == ExitCode.JOB_FAILED
    lines = {line["key"]: line for line in json_lines(out.read_text())}
    assert set(lines) == {"line-1", "fails", "fox/2"}
    assert lines["fails"]["ok"] is False and lines["fails"]["error_type"] == "JobFailedError"
    assert lines["fails"]["status"] == "failed" and lines["line-1"]["status"] == "succeeded"
    assert lines["line-1"]["ok"] is True and lines["line-1"]["cost"] == pytest.approx(0.25)
    assert lines["fox/2"]["files"] == [str(files / "fox_2-3" / "output.mp4")]
    assert sim.count("submit") == 3
    capsys.readouterr()

    assert await cli(*argv) == ExitCode.JOB_FAILED
    again = json_lines(capsys.readouterr().out)
    assert {line["key"] for line in again} == set(lines)
    assert {line["key"] for line in again if not line["ok"]} == {"fails"}
    assert sim.count("submit") == 3  # finished and failed keys are kept: nothing paid twice


@pytest.mark.usefixtures("env")
async def test_batch_with_a_bad_line_submits_nothing(
    sim: Simulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A malformed line anywhere stops the batch before the first submit (exit 2)."""
    inputs = tmp_path / "in.jsonl"
    inputs.write_text(json.dumps(GOOD_INPUTS) + "\nnot json\n")
    assert await cli("batch", WAN25, str(inputs)) == ExitCode.USAGE
    assert "line 2" in one_error_line(capsys.readouterr().err)
    assert sim.count("submit") == 0


# --- rendering without rich, and the live board ---------------------------------------------


def test_live_board_renders(monkeypatch: pytest.MonkeyPatch) -> None:
    """The rich board draws every job with its state, queue position and elapsed time."""
    from rich.console import Console

    from runcomfy_async.models import Wan25ImageToVideo

    jobs = [Wan25ImageToVideo(f"job {n}", "https://example.com/a.png") for n in range(4)]
    board = _demo_view.Board(jobs, speed=20, workers=2, out=Path("out"), fail_at=2, cancel_at=4)
    board.submitted(board.rows[0], "aaaaaaaa-1")
    board.update(board.rows[0], "running")
    board.submitted(board.rows[1], "bbbbbbbb-2")
    board.update(board.rows[1], "queued", position=3)
    view = _demo_view._LiveView(board)
    console = Console(file=io.StringIO(), width=100)
    console.print(view.render(board))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "running" in text and "#3" in text and "job 02 is scripted to fail" in text


async def test_plain_output_without_rich(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Without rich the demo still runs, prints plain lines and says how to get bars."""
    for module in (_render, _demo_view, _demo_summary, _download):
        monkeypatch.setattr(module, "has_rich", lambda: False)
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    out = tmp_path / "demo"
    assert await cli("demo", "--jobs", "6", "--speed", "2", "--out", str(out)) == 0
    stdout = capsys.readouterr().out
    assert _render.RICH_HINT in stdout
    assert "6 jobs: 4 succeeded, 1 failed, 1 cancelled" in stdout
    assert len(list(out.glob("job-*/output.mp4"))) == 4


# --- the real console entry point ----------------------------------------------------------


async def run_process(argv: Sequence[str], env: dict[str, str]) -> tuple[int, str, str]:
    """Run ``python -m runcomfy_async ARGV`` to the end; return code, stdout, stderr."""
    result = await anyio.run_process(
        [sys.executable, "-m", "runcomfy_async", *argv], env=env, cwd=ROOT, check=False
    )
    return result.returncode, result.stdout.decode(), result.stderr.decode()


async def test_entry_point_runs_a_job(sim: Simulator, env: dict[str, str]) -> None:
    """python -m runcomfy_async run works end to end against the simulator."""
    sim.script_next(DONE_AT_ONCE)
    code, out, err = await run_process(["run", WAN25, *INPUT_ARGS], env)
    assert code == 0, err
    assert out.strip().startswith(sim.storage_url)


async def test_entry_point_error_is_one_line(sim: Simulator, env: dict[str, str]) -> None:
    """A RunComfyError in a real process is one stderr line, exit 3, no traceback."""
    code, out, err = await run_process(["result", "no-such-request"], env)
    assert code == ExitCode.API_ERROR and out == ""
    assert err.count("\n") == 1 and err.startswith("error: ")


async def _interrupt_run(sim: Simulator, env: dict[str, str], wait_for: str) -> tuple[int, str]:
    """Start ``runcomfy run``, send SIGINT once ``wait_for`` reached the simulator."""
    argv = [sys.executable, "-m", "runcomfy_async", "run", WAN25, *INPUT_ARGS]
    async with await anyio.open_process(argv, env=env, cwd=ROOT) as process:
        with anyio.fail_after(30):
            # The simulator's log has no change notification to wait on: poll it.
            while sim.count(wait_for) == 0:  # noqa: ASYNC110
                await anyio.sleep(0.005)
        process.send_signal(signal.SIGINT)
        with anyio.fail_after(30):
            code = await process.wait()
        assert process.stderr is not None
        err = b"".join([chunk async for chunk in process.stderr]).decode()
    return code, err


@pytest.mark.parametrize("wait_for", ["submit", "status"])
async def test_ctrl_c_cancels_a_queued_job_and_exits_130(
    sim: Simulator, env: dict[str, str], wait_for: str
) -> None:
    """SIGINT during run — even mid-submit — sends exactly one cancel, then exits 130."""
    sim.script_next(JobScript(queue_polls=10**6))
    code, err = await _interrupt_run(sim, env, wait_for)
    assert code == ExitCode.INTERRUPTED, err
    assert "Traceback" not in err and "interrupted" in err
    (request_id,) = [rec.request_id for rec in sim.log if rec.route == "submit"]
    assert request_id is not None
    assert sim.count("cancel", method="POST") == 1
    assert sim.job(request_id).state == "cancelled"


async def test_ctrl_c_leaves_a_running_job_alone(sim: Simulator, env: dict[str, str]) -> None:
    """SIGINT while the job runs sends no cancel (the API cannot) and names the id."""
    sim.script_next(JobScript(queue_polls=0, run_polls=10**6))
    code, err = await _interrupt_run(sim, env, "status")
    assert code == ExitCode.INTERRUPTED
    assert sim.count("cancel") == 0 and "still running" in err


async def test_demo_smoke(tmp_path: Path) -> None:
    """A reduced demo needs no token, queues, fails one job, cancels one, downloads the rest."""
    env = {k: v for k, v in os.environ.items() if k not in (TOKEN_ENV, BASE_URL_ENV)}
    out = tmp_path / "out"
    argv = ["demo", "--jobs", "6", "--speed", "2", "--out", str(out)]
    with anyio.fail_after(45):
        code, stdout, err = await run_process(argv, env)
    assert code == 0, err
    assert "6 jobs: 4 succeeded, 1 failed, 1 cancelled" in stdout
    assert "queued (position" in stdout and "cancel requested while queued" in stdout
    assert "Traceback" not in err
    assert sorted(p.parent.name for p in out.glob("*/output.mp4")) == [
        "job-01",
        "job-02",
        "job-04",
        "job-05",
    ]


async def test_simulator_command_serves_until_ctrl_c() -> None:
    """runcomfy simulator prints where it listens, serves the CLI, and exits 0 on Ctrl-C."""
    argv = [sys.executable, "-m", "runcomfy_async", "simulator", "--json", "--clock", "scripted"]
    async with await anyio.open_process(argv, cwd=ROOT) as process:
        assert process.stdout is not None
        first = b""
        with anyio.fail_after(30):
            while b"\n" not in first:
                first += await process.stdout.receive()
        info = json.loads(first.split(b"\n")[0])
        env = {**os.environ, TOKEN_ENV: info["token"], BASE_URL_ENV: info["url"]}
        code, out, err = await run_process(["submit", WAN25, *INPUT_ARGS], env)
        assert code == 0, err
        assert out.strip()
        process.send_signal(signal.SIGINT)
        with anyio.fail_after(30):
            assert await process.wait() == 0


# --- bad inputs a new user tried: exit 2, nothing sent ---------------------------------------


@pytest.mark.usefixtures("env")
@pytest.mark.parametrize(
    "bad", [["-i", "resolution=4K"], ["-i", "prompt=" + "x" * 900]], ids=["4K", "900-chars"]
)
@pytest.mark.parametrize("command", ["run", "submit"])
async def test_bad_seed_inputs_exit_2_with_nothing_sent(
    sim: Simulator, capsys: pytest.CaptureFixture[str], command: str, bad: list[str]
) -> None:
    """resolution=4K or a 900-character prompt: exit 2, zero requests in the log."""
    assert await cli(command, WAN25, *INPUT_ARGS, *bad) == ExitCode.USAGE
    one_error_line(capsys.readouterr().err)
    assert sim.log == []


@pytest.mark.usefixtures("env")
async def test_tiny_png_exits_2_with_nothing_sent(
    sim: Simulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A 32-px PNG is refused locally (Wan needs 360 px): exit 2, zero requests."""
    image = pytest.importorskip("PIL.Image")
    path = tmp_path / "tiny.png"
    image.new("RGB", (32, 32)).save(path)
    code = await cli("run", WAN25, "-i", "prompt=a fox", "-i", f"img_url=@{path}")
    assert code == ExitCode.USAGE
    assert "360" in one_error_line(capsys.readouterr().err)
    assert sim.log == []


@pytest.mark.usefixtures("env")
async def test_malformed_batch_line_exits_2_with_nothing_sent(
    sim: Simulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A batch with one malformed line sends nothing, not even the good lines."""
    lines = tmp_path / "in.jsonl"
    lines.write_text(json.dumps(GOOD_INPUTS) + "\n{not json\n")
    assert await cli("batch", WAN25, str(lines)) == ExitCode.USAGE
    assert "line 2" in one_error_line(capsys.readouterr().err)
    assert sim.log == []


@pytest.mark.usefixtures("env")
async def test_unknown_model_exits_2_with_no_job(
    sim: Simulator, capsys: pytest.CaptureFixture[str]
) -> None:
    """A typo'd model id exits 2 (the catalog refuses it, 400001) and creates no job."""
    assert await cli("run", "wan-ai/wan-2-6/image-to-vidoe", "-i", "prompt=p") == ExitCode.USAGE
    one_error_line(capsys.readouterr().err)
    assert sim.count("submit") == 0 and sim.stats.jobs_created == 0


@pytest.mark.usefixtures("env")
async def test_no_check_sends_unchecked(sim: Simulator) -> None:
    """--no-check sends the dict; the server's 422 is then an API error (exit 3)."""
    code = await cli("submit", WAN25, *INPUT_ARGS, "-i", "resolution=4K", "--no-check")
    assert code == ExitCode.API_ERROR
    assert sim.count("submit") == 1 and sim.stats.jobs_created == 0

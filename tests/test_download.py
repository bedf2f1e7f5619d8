"""Output downloads over real HTTP against the simulator's storage origin."""

from __future__ import annotations

import functools
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from runcomfy_async import (
    Client,
    DownloadTooLargeError,
    JobState,
    NetworkError,
    NotFoundError,
    Output,
    Result,
    RetryPolicy,
    ServerError,
    TransportError,
)
from runcomfy_async._download import _copy_body, _Options, _Transfer
from runcomfy_async.testing import Fault, FaultKind, JobScript, Simulator
from runcomfy_async.testing._assets import content_for

from .conftest import FAST_RETRY, GOOD_INPUTS, WAN25

pytestmark = pytest.mark.anyio

NO_RETRY = RetryPolicy(attempts=1)


async def finished(client: Client, sim: Simulator, **script: object) -> Result:
    """Submit a job the simulator finishes at once, and return its succeeded result."""
    sim.script_next(JobScript(queue_polls=0, run_polls=0, **script))  # type: ignore[arg-type]
    result = await (await client.submit(WAN25, GOOD_INPUTS)).result()
    assert result.status is JobState.SUCCEEDED
    return result


def served(name: str) -> bytes:
    """The bytes the storage origin serves for a file name."""
    return content_for(name)[0]


def listing(directory: Path) -> list[str]:
    """Every entry of a directory, hidden ones included, sorted."""
    return sorted(os.listdir(directory))


# --- the happy path ----------------------------------------------------------------------


async def test_png_and_mp4_arrive_byte_exact(
    client: Client, sim: Simulator, tmp_path: Path
) -> None:
    """Both outputs are written with the served bytes, in output order, and nothing else."""
    result = await finished(client, sim, output_files=("frame.png", "clip.mp4"))
    dest = tmp_path / "out" / "nested"
    paths = await client.download(result, dest)
    assert [p.name for p in paths] == ["frame.png", "clip.mp4"]
    assert all(p.is_absolute() and p.parent == dest.resolve() for p in paths)
    assert paths[0].read_bytes() == served("frame.png")
    assert paths[0].read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert paths[1].read_bytes() == served("clip.mp4")
    assert paths[1].read_bytes()[4:8] == b"ftyp"
    assert listing(dest) == ["clip.mp4", "frame.png"]


async def test_token_never_reaches_storage(client: Client, sim: Simulator, tmp_path: Path) -> None:
    """No storage request carries Authorization, retried ones included; the API got it."""
    result = await finished(client, sim, output_files=("a.png", "b.mp4"))
    sim.add_fault(Fault(FaultKind.SERVER_ERROR, "storage"))
    await client.download(result, tmp_path)
    assert len(sim.storage_log) == 3
    assert all(record.authorization is None for record in sim.storage_log)
    assert all("authorization" not in {k.lower() for k in r.headers} for r in sim.storage_log)
    assert all(record.authorization == f"Bearer {sim.token}" for record in sim.log)


async def test_output_and_url_list_are_accepted(
    client: Client, sim: Simulator, tmp_path: Path
) -> None:
    """An Output, one URL and a list of URLs work like a Result; an empty list does nothing."""
    result = await finished(client, sim, output_files=("a.png",))
    assert result.output is not None
    url = result.output.urls[0]
    assert [p.name for p in await client.download(result.output, tmp_path / "o")] == ["a.png"]
    assert [p.name for p in await client.download(url, tmp_path / "u")] == ["a.png"]
    assert len(await client.download([url, url], tmp_path / "l")) == 2
    assert await client.download([], tmp_path / "e") == []


# --- names -------------------------------------------------------------------------------


async def test_traversal_name_is_made_safe(client: Client, sim: Simulator, tmp_path: Path) -> None:
    """A ``..%2F..%2F`` name lands inside dest as a plain file name; nothing escapes."""
    dest = tmp_path / "a" / "b" / "dest"
    output = {"video": "{storage}/files/{request_id}/..%2F..%2Fevil.mp4"}
    result = await finished(client, sim, output=output)
    [path] = await client.download(result, dest)
    assert path == dest.resolve() / "evil.mp4"
    assert path.read_bytes() == served("evil.mp4")
    assert listing(tmp_path) == ["a"]
    assert listing(tmp_path / "a") == ["b"]
    assert listing(tmp_path / "a" / "b") == ["dest"]
    assert listing(dest) == ["evil.mp4"]


async def test_duplicate_names_are_disambiguated(
    client: Client, sim: Simulator, tmp_path: Path
) -> None:
    """Two outputs with the same file name get ``name`` and ``name-2``."""
    first = await finished(client, sim, output_files=("output.mp4",))
    second = await finished(client, sim, output_files=("output.mp4",))
    assert first.output is not None
    assert second.output is not None
    urls = [*first.output.urls, *second.output.urls]
    paths = await client.download(urls, tmp_path)
    assert [p.name for p in paths] == ["output.mp4", "output-2.mp4"]


async def test_missing_extension_comes_from_content_type(
    client: Client, sim: Simulator, tmp_path: Path
) -> None:
    """A name without an extension gets one from the Content-Type (video/mp4 → .mp4)."""
    result = await finished(client, sim, output="{storage}/files/{request_id}/clip")
    [path] = await client.download(result, tmp_path)
    assert path.name == "clip.mp4"
    assert path.read_bytes() == served("clip")


async def test_existing_file_is_not_overwritten(
    client: Client, sim: Simulator, tmp_path: Path
) -> None:
    """By default an existing file is an error before any request; overwrite=True replaces it."""
    result = await finished(client, sim, output_files=("a.png",))
    (tmp_path / "a.png").write_bytes(b"mine")
    with pytest.raises(FileExistsError):
        await client.download(result, tmp_path)
    assert (tmp_path / "a.png").read_bytes() == b"mine"
    assert sim.storage_log == []
    [path] = await client.download(result, tmp_path, overwrite=True)
    assert path.read_bytes() == served("a.png")
    assert listing(tmp_path) == ["a.png"]


# --- failures leave nothing --------------------------------------------------------------


async def test_interrupted_download_leaves_no_partial_file(sim: Simulator, tmp_path: Path) -> None:
    """A body cut mid-way with retries off raises NetworkError and leaves dest empty."""
    async with Client(token=sim.token, base_url=sim.url, retry=NO_RETRY) as client:
        result = await finished(client, sim, output_files=("a.png", "b.mp4"))
        sim.add_fault(Fault(FaultKind.TRUNCATE, "storage"))
        with pytest.raises(NetworkError):
            await client.download(result, tmp_path, concurrency=1)
    assert sim.storage_log[0].fault == "truncate"
    assert listing(tmp_path) == []


async def test_truncated_download_resumes_with_range(
    client: Client, sim: Simulator, tmp_path: Path
) -> None:
    """With retries on, a cut body is resumed with ``Range: bytes=N-`` and ends byte exact."""
    result = await finished(client, sim, output_files=("clip.mp4",))
    sim.add_fault(Fault(FaultKind.TRUNCATE, "storage"))
    [path] = await client.download(result, tmp_path)
    first, second = sim.storage_log
    assert first.fault == "truncate"
    assert "Range" not in first.headers
    half = len(served("clip.mp4")) // 2
    assert second.headers["Range"] == f"bytes={half}-"
    assert second.status == 206
    assert path.read_bytes() == served("clip.mp4")
    assert listing(tmp_path) == ["clip.mp4"]


async def test_size_cap_refuses_early(client: Client, sim: Simulator, tmp_path: Path) -> None:
    """A file over max_bytes is refused from its Content-Length, once, and nothing is kept."""
    result = await finished(client, sim, output_files=("clip.mp4",))
    size = len(served("clip.mp4"))
    with pytest.raises(DownloadTooLargeError) as caught:
        await client.download(result, tmp_path, max_bytes=size - 1)
    assert caught.value.size == size
    assert caught.value.max_bytes == size - 1
    assert len(sim.storage_log) == 1
    assert listing(tmp_path) == []
    [path] = await client.download(result, tmp_path, max_bytes=size)
    assert path.stat().st_size == size


class _EndlessBody:
    """A body with no Content-Length that never ends: the seam for the mid-stream cap."""

    async def chunks(self, size: int) -> AsyncIterator[bytes]:
        while True:
            yield b"x" * 100


async def test_size_cap_stops_mid_stream(tmp_path: Path) -> None:
    """Without a Content-Length the cap still holds: streaming stops just past it."""
    opts = _Options(max_bytes=250, progress=None, retry=NO_RETRY)
    async with await anyio.open_file(tmp_path / "part", "xb") as file:
        transfer = _Transfer("https://s/files/r/a.mp4?sig=1", file)
        with pytest.raises(DownloadTooLargeError) as caught:
            await _copy_body(_EndlessBody(), transfer, opts, None)  # type: ignore[arg-type]
    assert caught.value.size is None
    assert caught.value.url == "https://s/files/r/a.mp4"
    assert transfer.done == 300


async def test_one_failure_fails_the_call_and_keeps_nothing(
    client: Client, sim: Simulator, tmp_path: Path
) -> None:
    """When one file fails the others are not kept either: all files, or none."""
    good = await finished(client, sim, output_files=("a.png",))
    assert good.output is not None
    missing = f"{sim.storage_url}/files/no-such-job/b.mp4"
    with pytest.raises(NotFoundError):
        await client.download([*good.output.urls, missing], tmp_path)
    assert listing(tmp_path) == []


async def test_storage_404_is_not_found(client: Client, sim: Simulator, tmp_path: Path) -> None:
    """A 404 from storage is a NotFoundError, not retried; the signed query is not shown."""
    url = f"{sim.storage_url}/files/no-such-job/b.mp4?signature=s3cr3t"
    with pytest.raises(NotFoundError) as caught:
        await client.download(url, tmp_path)
    assert caught.value.status == 404
    assert "/files/no-such-job/b.mp4" in str(caught.value)
    assert "s3cr3t" not in str(caught.value)
    assert len(sim.storage_log) == 1


async def test_storage_5xx_is_retried_then_typed(
    client: Client, sim: Simulator, tmp_path: Path
) -> None:
    """Storage 5xx is retried per the policy, then raised as ServerError."""
    result = await finished(client, sim, output_files=("a.png",))
    sim.add_fault(Fault(FaultKind.SERVER_ERROR, "storage", times=None))
    with pytest.raises(ServerError):
        await client.download(result, tmp_path)
    assert len(sim.storage_log) == FAST_RETRY.attempts
    assert listing(tmp_path) == []


# --- concurrency, progress, cancellation -------------------------------------------------


async def test_concurrency_bound_and_cancellation_cleanup(
    client: Client, sim: Simulator, tmp_path: Path
) -> None:
    """At most ``concurrency`` files are fetched at once; cancelling removes every temp file."""
    result = await finished(client, sim, output_files=tuple(f"f{i}.mp4" for i in range(5)))
    sim.add_fault(Fault(FaultKind.HANG, "storage", times=None))
    async with anyio.create_task_group() as tg:
        tg.start_soon(functools.partial(client.download, result, tmp_path, concurrency=2))
        with anyio.fail_after(10):
            # Until both first requests arrived and every task (server ones included) waits.
            while len(sim.storage_log) < 2:
                await anyio.wait_all_tasks_blocked()
            await anyio.wait_all_tasks_blocked()
        assert len(sim.storage_log) == 2
        assert all(re.fullmatch(r"\.f\d\.mp4\.part-[0-9a-f]{8}", n) for n in listing(tmp_path))
        assert len(listing(tmp_path)) == 2  # a temporary per file under way, no more
        tg.cancel_scope.cancel()
    assert listing(tmp_path) == []


async def test_progress_reports_every_file(client: Client, sim: Simulator, tmp_path: Path) -> None:
    """Progress starts at 0 with the total, never goes back, ends at the total, file by file."""
    result = await finished(client, sim, output_files=("a.png", "b.mp4"))
    calls: list[tuple[str, int, int | None]] = []
    await client.download(
        result, tmp_path, concurrency=1, progress=lambda u, d, t: calls.append((u, d, t))
    )
    assert result.output is not None
    urls = list(result.output.urls)
    assert [u for u, _, _ in calls] == sorted((u for u, _, _ in calls), key=urls.index)
    for url in urls:
        size = len(served(url.rsplit("/", 1)[-1]))
        seen = [(d, t) for u, d, t in calls if u == url]
        assert seen[0] == (0, size)
        assert seen[-1] == (size, size)
        assert [d for d, _ in seen] == sorted(d for d, _ in seen)


# --- refusals before any request ---------------------------------------------------------


async def test_unsucceeded_result_is_refused(
    client: Client, sim: Simulator, tmp_path: Path
) -> None:
    """A failed result, or one without output files, is a ValueError; nothing is fetched."""
    failed = Result(request_id="r1", status=JobState.FAILED, raw_status="failed", error="boom")
    with pytest.raises(ValueError, match="r1"):
        await client.download(failed, tmp_path)
    empty = Result(request_id="r2", status=JobState.SUCCEEDED, raw_status="succeeded")
    with pytest.raises(ValueError, match="r2"):
        await client.download(empty, tmp_path)
    with pytest.raises(ValueError, match="no file"):
        await client.download(Output(), tmp_path)
    assert sim.storage_log == []


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/a.png",
        "ftp://127.0.0.1/a.png",
        "file:///etc/passwd",
        "https:///no-host.png",
        "/relative/a.png",
    ],
)
async def test_unsafe_urls_are_refused(client: Client, tmp_path: Path, url: str) -> None:
    """Only https, or plain http to loopback, is fetched."""
    with pytest.raises(ValueError, match="http"):
        await client.download(url, tmp_path)
    assert listing(tmp_path) == []


@pytest.mark.parametrize(
    ("option", "value"), [("concurrency", 0), ("max_bytes", 0), ("max_bytes", -5)]
)
async def test_bad_options_are_refused(
    client: Client, tmp_path: Path, option: str, value: int
) -> None:
    """A non-positive concurrency or cap is a ValueError."""
    with pytest.raises(ValueError, match=option):
        await client.download([], tmp_path, **{option: value})  # type: ignore[arg-type]


async def test_transport_error_type_for_refused_connection(client: Client, tmp_path: Path) -> None:
    """A storage host that refuses connections raises a TransportError after retries."""
    with anyio.fail_after(10):
        with pytest.raises(TransportError):
            await client.download("http://127.0.0.1:9/a.png", tmp_path)
    assert listing(tmp_path) == []

"""Downloads against a hostile storage: private redirects, redirect chains, drips, leftovers."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from runcomfy_async import (
    Client,
    DownloadRefusedError,
    ReadTimeoutError,
    Result,
    RetryPolicy,
    RunComfyError,
    Timeouts,
)
from runcomfy_async._partfiles import STALE_PART_AGE
from runcomfy_async.testing import Fault, FaultKind, JobScript, Simulator
from runcomfy_async.testing._assets import MP4_BYTES

from .conftest import FAST_RETRY, GOOD_INPUTS, WAN25

pytestmark = pytest.mark.anyio

SECRET = "rc-download-SECRET-0b1c2d3e4f"
NO_RETRY = RetryPolicy(attempts=1)
#: A floor a 200 B/s drip is far under, measured over a short window so the test is quick.
TIGHT = Timeouts(download_min_rate=2000.0, download_rate_window=0.3)


@pytest.fixture
async def sim(anyio_backend: str) -> AsyncIterator[Simulator]:
    """A scripted simulator accepting only SECRET."""
    async with Simulator(token=SECRET) as simulator:
        yield simulator


def _client(sim: Simulator, **options: object) -> Client:
    return Client(token=SECRET, base_url=sim.url, **{"retry": FAST_RETRY, **options})  # type: ignore[arg-type]


async def finished(client: Client, sim: Simulator) -> Result:
    """A job the simulator finishes at once, with one mp4 output."""
    sim.script_next(JobScript(queue_polls=0, run_polls=0, output_files=("clip.mp4",)))
    return await (await client.submit(WAN25, GOOD_INPUTS)).result()


# --- redirects -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "host"),
    [
        (Fault(FaultKind.REDIRECT_PRIVATE, "storage"), "169.254.169.254"),
        (Fault(FaultKind.REDIRECT_PRIVATE, "storage", variant="private_ip"), "10.0.0.1"),
        (
            Fault(
                FaultKind.REDIRECT_PRIVATE,
                "storage",
                location="https://169.254.169.254/latest/meta-data?X-Amz-Signature=sig-SECRET",
            ),
            "169.254.169.254",
        ),
        (Fault(FaultKind.REDIRECT, "storage", location="https://[fd00::1]/x"), "fd00::1"),
        (Fault(FaultKind.REDIRECT, "storage", location="https://[fe80::1]/x"), "fe80::1"),
        (Fault(FaultKind.REDIRECT, "storage", location="https://192.168.0.7/x"), "192.168.0.7"),
        (Fault(FaultKind.REDIRECT, "storage", location="https://0.0.0.0/x"), "0.0.0.0"),
        (Fault(FaultKind.REDIRECT, "storage", location="https://224.0.0.1/x"), "224.0.0.1"),
        (Fault(FaultKind.REDIRECT, "storage", location="https://2852039166/x"), "2852039166"),
        (Fault(FaultKind.REDIRECT, "storage", location="http://cdn.example/x"), "cdn.example"),
        (Fault(FaultKind.REDIRECT, "storage", location="ftp://cdn.example/x"), "cdn.example"),
    ],
)
async def test_redirect_to_a_refused_host_is_never_connected_to(
    sim: Simulator, tmp_path: Path, fault: Fault, host: str
) -> None:
    """Each hop is vetted before connecting: a private, link-local or http target is refused."""
    async with _client(sim) as c:
        result = await finished(c, sim)
        sim.add_fault(fault)
        with anyio.fail_after(5), pytest.raises(DownloadRefusedError) as caught:
            await c.download(result, tmp_path)
    error = caught.value
    assert isinstance(error, RunComfyError) and isinstance(error, ValueError)
    assert error.host == host
    assert host in str(error)
    assert "sig-SECRET" not in str(error) + repr(vars(error))
    assert sim.stats.storage_requests == 1  # the redirect itself; never retried
    assert os.listdir(tmp_path) == []


async def test_redirect_hop_on_loopback_is_followed_without_the_token(
    sim: Simulator, tmp_path: Path
) -> None:
    """A 302 to another storage path is followed, hop by hop, with no token on any hop."""
    async with _client(sim) as c:
        result = await finished(c, sim)
        sim.add_fault(Fault(FaultKind.REDIRECT_HOP, "storage"))
        [path] = await c.download(result, tmp_path)
    assert path.read_bytes() == MP4_BYTES
    assert [r.path.split("/")[1] for r in sim.storage_log] == ["files", "moved"]
    assert [r.authorization for r in sim.storage_log] == [None, None]


@pytest.mark.parametrize(("hops", "ok"), [(5, True), (6, False)])
async def test_at_most_five_redirects_are_followed(
    sim: Simulator, tmp_path: Path, hops: int, ok: bool
) -> None:
    """Five hops are followed; a sixth is refused, naming the host."""
    async with _client(sim) as c:
        result = await finished(c, sim)
        sim.add_fault(Fault(FaultKind.REDIRECT, "storage", times=hops))
        if ok:
            [path] = await c.download(result, tmp_path)
            assert path.read_bytes() == MP4_BYTES
        else:
            with pytest.raises(DownloadRefusedError, match="more than 5 redirects"):
                await c.download(result, tmp_path)
    assert sim.stats.storage_requests == 6


async def test_output_url_on_a_private_address_is_refused_before_any_request(
    sim: Simulator, tmp_path: Path
) -> None:
    """A server-supplied https output URL on a metadata address is refused up front."""
    async with _client(sim) as c:
        sim.script_next(
            JobScript(queue_polls=0, run_polls=0, output={"video": "https://169.254.169.254/v"})
        )
        result = await (await c.submit(WAN25, GOOD_INPUTS)).result()
        with pytest.raises(DownloadRefusedError, match=r"169\.254\.169\.254 refused"):
            await c.download(result, tmp_path)
    assert sim.storage_log == []


# --- drips and deadlines ---------------------------------------------------------------------


async def test_a_dripping_body_is_cut_under_the_floor_rate(sim: Simulator, tmp_path: Path) -> None:
    """A body at 200 B/s under a 2000 B/s floor is cut after the window, naming the host."""
    async with _client(sim, timeouts=TIGHT, retry=NO_RETRY) as c:
        result = await finished(c, sim)
        sim.add_fault(Fault(FaultKind.DRIP, "storage", rate=200.0, delay=20.0))
        started = time.monotonic()
        with anyio.fail_after(5), pytest.raises(ReadTimeoutError, match="floor") as caught:
            await c.download(result, tmp_path)
        elapsed = time.monotonic() - started
    assert "127.0.0.1" in str(caught.value)
    assert 0.3 <= elapsed < 3.0
    assert os.listdir(tmp_path) == []


async def test_a_cut_drip_is_resumed_and_completes(sim: Simulator, tmp_path: Path) -> None:
    """The cut is a broken transfer: retried with Range, the file arrives whole."""
    async with _client(sim, timeouts=TIGHT) as c:
        result = await finished(c, sim)
        sim.add_fault(Fault(FaultKind.DRIP, "storage", rate=200.0, delay=20.0))
        with anyio.fail_after(5):
            [path] = await c.download(result, tmp_path)
    assert path.read_bytes() == MP4_BYTES
    first, second = sim.storage_log
    assert first.fault == "drip"
    assert second.headers.get("Range", "").startswith("bytes=")
    assert second.headers["Range"] != "bytes=0-"


async def test_the_per_file_deadline_ends_a_slow_download(sim: Simulator, tmp_path: Path) -> None:
    """With no floor rate, download_deadline still bounds one file, retries included."""
    timeouts = Timeouts(download_min_rate=None, download_deadline=0.3)
    async with _client(sim, timeouts=timeouts) as c:
        result = await finished(c, sim)
        sim.add_fault(Fault(FaultKind.DRIP, "storage", rate=200.0, delay=20.0))
        with anyio.fail_after(5), pytest.raises(ReadTimeoutError, match=r"within 0\.3 s") as caught:
            await c.download(result, tmp_path)
    assert "127.0.0.1" in str(caught.value)
    assert os.listdir(tmp_path) == []


def test_download_timeouts_defaults_and_validation() -> None:
    """The floor is on by default (1 KiB/s over 10 s), the deadline off; bad values refused."""
    default = Timeouts()
    assert (default.download_min_rate, default.download_rate_window) == (1024.0, 10.0)
    assert default.download_deadline is None
    for bad in ({"download_min_rate": 0}, {"download_rate_window": 0}, {"download_deadline": -1}):
        with pytest.raises(ValueError, match="download_"):
            Timeouts(**bad)  # type: ignore[arg-type]


# --- leftovers of a killed run ---------------------------------------------------------------


async def test_stale_temporary_files_of_a_killed_run_are_removed(
    sim: Simulator, tmp_path: Path
) -> None:
    """Old `.name.part-xxxxxxxx` files go before a new download; fresh and foreign files stay."""
    old = time.time() - STALE_PART_AGE - 60
    stale = tmp_path / ".clip.mp4.part-0123abcd"
    fresh = tmp_path / ".other.mp4.part-89abcdef"
    foreign = [tmp_path / ".notes.part-xyz", tmp_path / "mine.part-0123abcd", tmp_path / "keep.txt"]
    for path in [stale, fresh, *foreign]:
        path.write_bytes(b"x")
        if path is not fresh:
            os.utime(path, (old, old))
    (tmp_path / ".dir.part-00000000").mkdir()
    os.utime(tmp_path / ".dir.part-00000000", (old, old))
    async with _client(sim) as c:
        result = await finished(c, sim)
        [path] = await c.download(result, tmp_path)
    assert path.read_bytes() == MP4_BYTES
    left = sorted(os.listdir(tmp_path))
    assert stale.name not in left
    assert {fresh.name, ".dir.part-00000000", path.name} <= set(left)
    assert {p.name for p in foreign} <= set(left)


@pytest.mark.parametrize("kind", ["asyncio.timeout", "Task.cancel", "wait_for", "anyio"])
async def test_cancelling_a_dripping_download_leaves_nothing(
    sim: Simulator, tmp_path: Path, kind: str
) -> None:
    """However a caller cancels a download mid-drip, control returns and no file is left."""
    async with _client(sim) as c:
        result = await finished(c, sim)
        sim.add_fault(Fault(FaultKind.DRIP, "storage", rate=100.0, delay=20.0))
        started = time.monotonic()
        if kind == "asyncio.timeout":
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.2):
                    await c.download(result, tmp_path)
        elif kind == "wait_for":
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(c.download(result, tmp_path), 0.2)
        elif kind == "Task.cancel":
            task = asyncio.create_task(c.download(result, tmp_path))
            await sim.wait_for(storage=True)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        else:
            with anyio.move_on_after(0.2):
                await c.download(result, tmp_path)
        assert time.monotonic() - started < 2.0
    assert os.listdir(tmp_path) == []

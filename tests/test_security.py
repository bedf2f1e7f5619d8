"""Security checks: the token stays put, URLs and file names cannot be turned against us.

Every check runs over real HTTP against the simulator (or a tiny aiohttp.web server of our
own where the simulator cannot misbehave in the needed way), with a distinctive token that
is then searched for everywhere it must not be.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import anyio
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runcomfy_async import (
    AuthenticationError,
    Client,
    DownloadTooLargeError,
    JobFailedError,
    NotFoundError,
    PollPolicy,
    ReadTimeoutError,
    RequestHandle,
    Result,
    RetryPolicy,
    RunComfyError,
    SubmitUncertainError,
    Timeouts,
    UnexpectedResponseError,
)
from runcomfy_async._wire import check_model_id, check_request_id
from runcomfy_async.testing import Fault, FaultKind, JobScript, Simulator
from runcomfy_async.testing._assets import content_for

from .conftest import FAST_RETRY, GOOD_INPUTS, WAN25

pytestmark = pytest.mark.anyio

#: Polls at once, so scripted jobs finish without waiting.
FAST_POLL = PollPolicy(first_interval=0.0, max_interval=0.0, requests_per_second=1e4, burst=100)
SECRET = "rc-SECRET-7f3a9c1e5b2d4086a1c3e5f7b9d1f3a5"
LOGGERS: tuple[str, ...] = ("", "aiohttp", "aiohttp.client", "aiohttp.server")
LOGGERS += ("aiohttp.access", "aiohttp.internal", "aiohttp.web", "asyncio", "runcomfy_async")
EVIL_REQUEST_IDS: list[object] = [
    "",
    " ",
    "a b",
    "a/b",
    "../x",
    "..",
    ".",
    "a\x00b",
    "a\nb",
    "a\r\nX-Injected: 1",
    "a\tb",
    "a%2Fb",
    "a?x=1",
    "a#b",
    "a.b",
    "é",
    "\u202eabc",
    "x" * 129,
    None,
    42,
    b"abc",
]
EVIL_MODEL_IDS: list[object] = [
    "",
    "/wan-ai/x",
    "wan-ai/x/",
    "a//b",
    "../x",
    "a/../b",
    "a/./b",
    "..",
    "a b",
    "a?x=1",
    "a#b",
    "a%2F..%2Fb",
    "a\nb",
    "a\x00b",
    "a\\b",
    "-leading-dash",
    "x" * 257,
    None,
    7,
]
EVIL_NAMES = [
    "..%2F..%2Fx",
    "%2e%2e/%2e%2e/x",
    "%2e%2e%2f%2e%2e%2fx.png",
    "..",
    "%2e%2e",
    "...",
    "%2Fetc%2Fpasswd",
    "/etc/passwd",
    "C:%5Cwindows%5Cx.png",
    "a%5C..%5C..%5Cb.png",
    "%00evil.png",
    "ev%01il%7f.png",
    "CON",
    "nul.txt",
    "COM1.mp4",
    ".bashrc",
    "%E2%80%AEgnp.exe",
    "%20%20.png%20",
    "x" * 300 + ".png",
    "a:b*c?.png",
]


# --- helpers -------------------------------------------------------------------------------


@pytest.fixture
async def secret_sim(anyio_backend: str) -> AsyncIterator[Simulator]:
    """A scripted simulator accepting only the distinctive SECRET token."""
    async with Simulator(token=SECRET) as simulator:
        yield simulator


def chain(exc: BaseException) -> Iterator[BaseException]:
    """Every exception reachable from ``exc``: causes, contexts and group members."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo += [e for e in (current.__cause__, current.__context__) if e is not None]
        if isinstance(current, BaseExceptionGroup):
            todo += list(current.exceptions)


def exposures(exc: BaseException) -> list[str]:
    """Every text an exception can show: str, repr, attributes, tracebacks, its pickle."""
    texts = ["".join(traceback.format_exception(exc))]
    for link in chain(exc):
        texts += [str(link), repr(link), repr(link.args)]
        texts += [repr(value) for value in vars(link).values()]
        if isinstance(link, RunComfyError):
            texts.append(pickle.dumps(link).decode("latin-1"))
    return texts


def log_texts(records: list[logging.LogRecord]) -> list[str]:
    """Every text a log record carries, formatted with its traceback."""
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    return [formatter.format(r) + repr(vars(r)) for r in records]


def listing(root: Path) -> list[str]:
    """Every path under ``root``, hidden ones included, relative and sorted."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


async def finished(client: Client, sim: Simulator, **script: object) -> Result:
    """Submit a job the simulator finishes at once; return its result."""
    sim.script_next(JobScript(queue_polls=0, run_polls=0, **script))  # type: ignore[arg-type]
    return await (await client.submit(WAN25, GOOD_INPUTS)).result()


# --- the token -----------------------------------------------------------------------------


async def test_token_absent_from_debug_logs_reprs_errors_and_tracebacks(
    secret_sim: Simulator, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """A full job with faults, retries, failures and a download never shows the token."""
    sim = secret_sim
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    loop = asyncio.get_running_loop()
    was_debug = loop.get_debug()
    loop.set_debug(True)  # asyncio's own debug logging (slow callbacks, handle reprs)
    texts: list[str] = []
    errors: list[BaseException] = []
    sim.add_fault(Fault(FaultKind.RATE_LIMIT, "submit", retry_after=0))
    sim.add_fault(Fault(FaultKind.SERVER_ERROR, "status", times=2))
    sim.add_fault(Fault(FaultKind.RESET_AFTER, "result"))
    sim.add_fault(Fault(FaultKind.HANG, "cancel"))
    sim.add_fault(Fault(FaultKind.TRUNCATE, "storage"))
    timeouts = Timeouts(read=0.2)
    try:
        async with Client(
            token=SECRET, base_url=sim.url, retry=FAST_RETRY, polling=FAST_POLL, timeouts=timeouts
        ) as c:
            result = await c.run(WAN25, GOOD_INPUTS)
            handle = c.handle(result.request_id, model_id=WAN25)
            events = [event async for event in c.watch(result.request_id)]
            paths = await c.download(result, tmp_path / "out")
            cancelled = await handle.cancel()  # hangs once: a read timeout, then retried
            texts += [repr(x) for x in (c, c._s.transport, handle, result, cancelled, *events)]
            texts += [str(x) for x in (c, handle, result, *paths)]
            sim.add_fault(Fault(FaultKind.RESET_AFTER, "submit"))
            with pytest.raises(SubmitUncertainError) as uncertain:
                await c.run(WAN25, GOOD_INPUTS)
            sim.script_next(JobScript(queue_polls=0, run_polls=0, outcome="failed"))
            with pytest.raises(JobFailedError) as failed:
                await c.run(WAN25, GOOD_INPUTS)
            sim.add_fault(Fault(FaultKind.HANG, "status", times=FAST_RETRY.attempts))
            with pytest.raises(ReadTimeoutError) as timed_out:
                await c.status(result.request_id)
            with pytest.raises(NotFoundError) as not_found:
                await c.status("no-such-request")
            errors += [uncertain.value, failed.value, timed_out.value, not_found.value]
    finally:
        loop.set_debug(was_debug)
    for error in errors:
        texts += exposures(error)
    texts += log_texts(caplog.records)
    assert sum(1 for r in sim.log if r.fault) >= 8
    assert {r.name.split(".")[0] for r in caplog.records} >= {"asyncio", "runcomfy_async"}
    assert [t for t in texts if SECRET in t] == []


async def test_token_travels_only_in_the_authorization_header_to_the_api(
    secret_sim: Simulator, tmp_path: Path
) -> None:
    """API requests carry the token in Authorization only; storage requests never see it."""
    sim = secret_sim
    async with Client(token=SECRET, base_url=sim.url, retry=FAST_RETRY, polling=FAST_POLL) as c:
        result = await c.run(WAN25, GOOD_INPUTS)
        await c.cancel(result.request_id)
        await c.download(result, tmp_path)
    assert sim.log and sim.storage_log
    for record in sim.log:
        assert record.authorization == f"Bearer {SECRET}"
        others = [v for k, v in record.headers.items() if k.lower() != "authorization"]
        assert SECRET not in record.path + repr(record.query) + repr(others)
        assert SECRET.encode() not in (record.body or b"")
    for record in sim.storage_log:
        assert record.authorization is None
        assert SECRET not in repr(record)


@pytest.mark.parametrize("route", ["submit", "status", "result", "cancel"])
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_redirect_from_the_api_is_never_followed(
    secret_sim: Simulator, route: str, host: str
) -> None:
    """A 30x from the API to another origin is a typed error; nothing reaches that origin."""
    sim = secret_sim
    port = sim.storage_url.rsplit(":", 1)[1]
    location = f"http://{host}:{port}/files/steal/token.png"
    async with Client(token=SECRET, base_url=sim.url, retry=FAST_RETRY) as c:
        handle = await c.submit(WAN25, GOOD_INPUTS)
        sim.add_fault(Fault(FaultKind.REDIRECT, route, location=location))
        calls = {
            "submit": lambda: c.submit(WAN25, GOOD_INPUTS),
            "status": handle.status,
            "result": handle.result,
            "cancel": handle.cancel,
        }
        with pytest.raises((UnexpectedResponseError, SubmitUncertainError)) as caught:
            await calls[route]()
    assert "not followed" in "".join(exposures(caught.value))
    assert sim.stats.faults_injected == {"redirect": 1}
    assert sim.storage_log == []


async def test_run_through_redirected_polls_never_leaves_the_api(secret_sim: Simulator) -> None:
    """A watcher that meets redirects keeps polling the API and never follows them."""
    sim = secret_sim
    location = f"{sim.storage_url}/files/steal/token.png"
    sim.add_fault(Fault(FaultKind.REDIRECT, "status", times=3, location=location))
    async with Client(token=SECRET, base_url=sim.url, retry=FAST_RETRY, polling=FAST_POLL) as c:
        result = await c.run(WAN25, GOOD_INPUTS)
    assert result.output is not None
    assert sim.stats.faults_injected == {"redirect": 3}
    assert sim.storage_log == []


async def test_storage_redirect_to_the_api_host_carries_no_token(
    secret_sim: Simulator, tmp_path: Path
) -> None:
    """A download redirected by storage onto the API's own host still sends no token."""
    sim = secret_sim
    async with Client(token=SECRET, base_url=sim.url, retry=FAST_RETRY) as c:
        result = await finished(c, sim, output_files=("clip.mp4",))
        before = len(sim.log)
        target = f"{sim.url}/v1/requests/{result.request_id}/status"
        sim.add_fault(Fault(FaultKind.REDIRECT, "storage", location=target))
        with pytest.raises(AuthenticationError):  # the API refuses a request with no token
            await c.download(result, tmp_path)
    [followed] = sim.log[before:]
    assert followed.route == "status"
    assert followed.authorization is None


async def test_output_url_on_the_api_host_gets_no_token(
    secret_sim: Simulator, tmp_path: Path
) -> None:
    """A server-supplied output URL pointing at the API itself is fetched without the token."""
    sim = secret_sim
    async with Client(token=SECRET, base_url=sim.url, retry=FAST_RETRY) as c:
        first = await finished(c, sim)
        before = len(sim.log)
        url = f"{sim.url}/v1/requests/{first.request_id}/result"
        second = await finished(c, sim, output={"video": url})
        with pytest.raises(AuthenticationError):  # the API refuses a request with no token
            await c.download(second, tmp_path)
    fetched = [r for r in sim.log[before:] if r.request_id == first.request_id]
    assert [r.authorization for r in fetched] == [None]


# --- plain http ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://api.example.com",
        "HTTP://API.EXAMPLE.COM",
        "http://10.0.0.1:8080",
        "http://0.0.0.0:8080",
        "http://127.0.0.1.nip.io",
        "http://localhost.evil.example",
        "http://2130706433",
        "http://[::ffff:7f00:1]",
        "http://user@evil.example",
        "ws://127.0.0.1:9",
        "file:///etc/passwd",
        "//evil.example",
    ],
)
def test_plain_http_refused_for_non_loopback_hosts(url: str) -> None:
    """The token would cross the network in clear: the client refuses to be built."""
    with pytest.raises(ValueError, match="base_url"):
        Client(token=SECRET, base_url=url)


@pytest.mark.parametrize(
    "url",
    ["http://evil.example/a.png", "http://10.1.2.3/a.mp4", "HTTP://evil.example/a.png"],
)
async def test_plain_http_outputs_refused_before_any_request(
    client: Client, sim: Simulator, tmp_path: Path, url: str
) -> None:
    """An output URL over plain http to another host is refused and nothing is fetched."""
    result = await finished(client, sim, output={"video": url})
    with pytest.raises(ValueError, match="http"):
        await client.download(result, tmp_path)
    assert sim.storage_log == []
    assert listing(tmp_path) == []


# --- downloads -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", EVIL_NAMES)
async def test_download_names_cannot_escape_dest(
    client: Client, sim: Simulator, tmp_path: Path, name: str
) -> None:
    """A hostile output file name lands, made safe, directly inside dest or nowhere."""
    result = await finished(
        client, sim, output={"video": f"{{storage}}/files/{{request_id}}/{name}"}
    )
    dest = tmp_path / "a" / "dest"
    paths = await client.download(result, dest)
    [path] = paths
    assert path.parent == dest.resolve()
    assert not path.name.startswith(".")
    assert all(c.isprintable() and c not in '/\\:*?"<>|' for c in path.name)
    assert len(path.name.encode()) <= 255
    assert path.stem.split(".")[0].upper() not in {"CON", "NUL", "AUX", "PRN", "COM1"}
    assert listing(tmp_path) == ["a", "a/dest", f"a/dest/{path.name}"]


async def test_several_hostile_names_stay_distinct_inside_dest(
    client: Client, sim: Simulator, tmp_path: Path
) -> None:
    """Many hostile names in one result give distinct files, all directly inside dest."""
    urls = [f"{{storage}}/files/{{request_id}}/{name}" for name in EVIL_NAMES]
    result = await finished(client, sim, output={"images": urls})
    paths = await client.download(result, tmp_path / "dest")
    assert len(paths) == len({p.name.casefold() for p in paths}) == len(EVIL_NAMES)
    assert all(p.parent == (tmp_path / "dest").resolve() for p in paths)
    assert len(listing(tmp_path)) == len(EVIL_NAMES) + 1


async def test_symlink_in_dest_is_never_written_through(
    client: Client, sim: Simulator, tmp_path: Path
) -> None:
    """A symlink planted at the target name is refused, or replaced — never followed."""
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"precious")
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "clip.mp4").symlink_to(outside)
    result = await finished(client, sim, output_files=("clip.mp4",))
    with pytest.raises(FileExistsError):
        await client.download(result, dest)
    [path] = await client.download(result, dest, overwrite=True)
    assert not path.is_symlink()
    assert path.read_bytes() == content_for("clip.mp4")[0]
    assert outside.read_bytes() == b"precious"


async def test_size_cap_refuses_and_keeps_nothing(
    client: Client, sim: Simulator, tmp_path: Path
) -> None:
    """One file over max_bytes fails the call; no file, partial or hidden, is left."""
    result = await finished(client, sim, output_files=("a.png", "clip.mp4"))
    small = len(content_for("a.png")[0])
    with pytest.raises(DownloadTooLargeError) as caught:
        await client.download(result, tmp_path, max_bytes=small)
    assert caught.value.max_bytes == small
    assert os.listdir(tmp_path) == []


async def test_size_cap_holds_without_content_length(tmp_path: Path) -> None:
    """An endless chunked body with no Content-Length is cut just past the cap."""
    sent = [0]

    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "video/mp4"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            while sent[0] < 64 * 1024 * 1024:
                await response.write(b"\0" * 65536)
                sent[0] += 65536
        except (ConnectionError, RuntimeError):
            pass
        return response

    app = web.Application()
    app.router.add_get("/files/{name}", endless)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/files/big.mp4"
    try:
        async with Client(token=SECRET, base_url="http://127.0.0.1:9") as c:
            with pytest.raises(DownloadTooLargeError) as caught:
                await c.download(url, tmp_path, max_bytes=1_000_000)
    finally:
        await runner.cleanup()
    assert caught.value.size is None
    assert sent[0] < 16 * 1024 * 1024
    assert os.listdir(tmp_path) == []


# --- ids -----------------------------------------------------------------------------------


@pytest.mark.parametrize("request_id", EVIL_REQUEST_IDS)
async def test_bad_request_ids_refused_before_any_request(
    client: Client, sim: Simulator, request_id: object
) -> None:
    """Control characters, /, .., spaces and over-long ids never reach the network."""
    rid: str = request_id  # type: ignore[assignment]
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: client.status(rid),
        lambda: client.result(rid),
        lambda: client.cancel(rid),
        lambda: client.wait(rid),
        lambda: RequestHandle(client, rid).status(),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="request id"):
            await call()
    with pytest.raises(ValueError, match="request id"):
        client.handle(rid)
    with pytest.raises(ValueError, match="request id"):
        client.watch(rid)
    assert sim.log == []


@pytest.mark.parametrize("model_id", EVIL_MODEL_IDS)
async def test_bad_model_ids_refused_before_any_request(
    client: Client, sim: Simulator, model_id: object
) -> None:
    """Malformed model ids are refused by submit, run, map and model_info, with no request."""
    mid: str = model_id  # type: ignore[assignment]
    # A non-string is taken for a typed input, which then has the wrong shape: TypeError.
    refused = (ValueError,) if isinstance(model_id, str) else (ValueError, TypeError)
    for call in (
        lambda: client.submit(mid, GOOD_INPUTS),
        lambda: client.run(mid, GOOD_INPUTS),
        lambda: client.model_info(mid),
    ):
        with pytest.raises(refused):
            await call()
    with pytest.raises(refused):
        client.map(mid, [GOOD_INPUTS])
    assert sim.log == []


ID_CASES = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@ID_CASES
@given(text=st.text(max_size=140) | st.from_regex(r"[A-Za-z0-9_.%/\- -]{0,140}", fullmatch=True))
async def test_any_request_id_is_refused_or_used_verbatim(
    client: Client, sim: Simulator, text: str
) -> None:
    """An id is refused locally, or it is the exact path segment the server receives."""
    before = len(sim.log)
    try:
        rid = check_request_id(text)
    except ValueError:
        with pytest.raises(ValueError, match="request id"):
            await client.status(text)
        assert len(sim.log) == before
        return
    assert rid == text and 1 <= len(rid) <= 128
    with pytest.raises(NotFoundError):
        await client.status(rid)
    assert sim.log[before:][0].path == f"/v1/requests/{rid}/status"


@ID_CASES
@given(
    text=st.text(max_size=80) | st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._%/ -]{0,60}", fullmatch=True)
)
async def test_any_model_id_is_refused_or_used_verbatim(
    client: Client, sim: Simulator, text: str
) -> None:
    """A model id is refused locally, or it is exactly the path the server receives."""
    before = len(sim.log)
    try:
        mid = check_model_id(text)
    except ValueError:
        with pytest.raises(ValueError, match="model id"):
            await client.submit(text, GOOD_INPUTS)
        assert len(sim.log) == before
        return
    assert ".." not in mid.split("/") and "//" not in mid and not mid.startswith("/")
    sim.register_model(mid)  # the simulator, like RunComfy, refuses models it does not list
    await client.submit(mid, {"prompt": "x"})
    assert sim.log[before:][0].path == f"/v1/models/{mid}"


async def test_hung_api_is_bounded_by_the_read_timeout(secret_sim: Simulator) -> None:
    """An API that never answers is cut by the read timeout, typed, with no token in it."""
    sim = secret_sim
    sim.add_fault(Fault(FaultKind.HANG, "status", times=None))
    async with Client(
        token=SECRET, base_url=sim.url, timeouts=Timeouts(read=0.05), retry=RetryPolicy(attempts=1)
    ) as c:
        with anyio.fail_after(5):
            with pytest.raises(ReadTimeoutError) as caught:
                await c.status("some-request")
    assert [t for t in exposures(caught.value) if SECRET in t] == []

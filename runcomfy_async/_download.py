"""Output downloads: streamed, capped, retried, resumed, and committed all at once.

Each file is streamed into a hidden temporary file in ``dest`` (``.{name}.part-{random}``),
chunk writes run off the event loop, and nothing is renamed into place until *every* file
of the call has arrived whole and been fsync'd. Any failure or cancellation removes every
temporary file, so an interrupted call leaves nothing behind.

A transfer broken by a transient failure is retried with the client's policy, asking for
the rest with ``Range: bytes=N-`` (and ``If-Range``, so a changed file is not spliced);
a ``206`` that starts at ``N`` continues the file, and a ``200`` restarts it from byte 0.

Output URLs are public storage URLs: no ``Authorization`` header ever goes there (the
transport strips it), ``https`` is allowed to any public host and plain ``http`` only to
loopback; redirects are followed one hop at a time, each vetted before it is connected to
(see :mod:`._urls`). File names come from the URL but are made safe (see
:mod:`._filenames`), and every final path is checked to sit directly inside ``dest``.

A transfer slower than ``Timeouts.download_min_rate`` over ``download_rate_window`` is cut
(and retried, resuming, like a broken one), so a server dripping bytes cannot hold a call
forever; ``Timeouts.download_deadline`` bounds one file in all. Temporary files that a
killed earlier run left in ``dest`` (our own ``.{name}.part-{hex}`` names only, untouched
for :data:`~._partfiles.STALE_PART_AGE`) are removed before a new download into it.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import random
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final, Protocol
from urllib.parse import quote, urlsplit

import anyio
import msgspec

from ._config import DEFAULT_RETRY, RetryPolicy
from ._errors import (
    DownloadTooLargeError,
    NetworkError,
    ReadTimeoutError,
    RunComfyError,
    TransportError,
    UnexpectedResponseError,
)
from ._filenames import extension_for, inside, plan_names, safe_name, split_suffix
from ._output import Output
from ._partfiles import part_name, sweep_stale
from ._retry import backoff_delay, is_retryable_read, retry_after_of
from ._urls import check_download_url, public_url
from ._wire import JobState, Result

if TYPE_CHECKING:
    from typing import IO

    from ._transport import StreamResponse, Transport

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_CONCURRENCY",
    "DEFAULT_MAX_BYTES",
    "DownloadProgress",
    "download",
]

logger: Final = logging.getLogger("runcomfy_async")

DEFAULT_CHUNK_SIZE: Final = 256 * 1024
"""Bytes read per chunk and buffered per write: one size for both, to bound thread hops."""
DEFAULT_CONCURRENCY: Final = 4
DEFAULT_MAX_BYTES: Final = 2 * 1024**3
"""Per-file size cap: 2 GiB, well above any Wan video, well below a full disk."""

_CONTENT_RANGE: Final = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


class DownloadProgress(Protocol):
    """Told how a download advances; called on the event loop, so it must not block.

    ``done`` counts bytes of the file received so far; it falls back to 0 when a retry
    has to restart a file from scratch. ``total`` is ``None`` when the server did not
    say. An exception raised here aborts the whole call.
    """

    def __call__(self, url: str, done: int, total: int | None) -> None: ...


# --- inputs ------------------------------------------------------------------------------


def _name_sources(source: Result | Output | str | Sequence[str], urls: list[str]) -> list[str]:
    # A URL whose path names no file is named for the output key it came from
    # ("audio", "image_urls-2"), not "output-N"; the name still goes through safe_name.
    output = source.output if isinstance(source, Result) else source
    if not isinstance(output, Output):
        return urls
    keys = dict(zip(output.urls, output.url_keys, strict=True))
    return [
        f"https://key.invalid/{quote(keys[u], safe='')}"
        if keys.get(u) and safe_name(u, i) == f"output-{i}"
        else u
        for i, u in enumerate(urls, 1)
    ]


def _collect_urls(source: Result | Output | str | Sequence[str]) -> list[str]:
    if isinstance(source, Result):
        if source.status is not JobState.SUCCEEDED or source.output is None:
            raise ValueError(
                f"request {source.request_id} has no output to download "
                f"(status {source.raw_status!r})"
            )
        source = source.output
    if isinstance(source, Output):
        if not source.urls:
            raise ValueError("the output holds no file URLs")
        return list(source.urls)
    if isinstance(source, str):
        return [source]
    return list(source)


# --- one file ----------------------------------------------------------------------------


class _Transfer:
    """One file's state across attempts: its open temporary file and how far it got."""

    __slots__ = ("done", "file", "host", "route", "url", "validator")

    def __init__(self, url: str, file: anyio.AsyncFile[bytes]) -> None:
        self.url = url
        self.file = file
        self.route = f"GET {public_url(url)}"
        self.host = urlsplit(url).hostname or "?"
        self.done = 0
        self.validator: str | None = None  # ETag / Last-Modified, sent as If-Range

    async def restart(self) -> None:
        self.done = 0
        await anyio.to_thread.run_sync(_rewind, self.file.wrapped)


class _Options(msgspec.Struct, frozen=True):
    max_bytes: int | None
    progress: DownloadProgress | None
    retry: RetryPolicy
    min_rate: float | None = None
    window: float = 10.0
    deadline: float | None = None


class _RateFloor:
    """Cuts a body that arrives slower than ``rate`` bytes/s over a window of seconds.

    Checked as chunks arrive; a body that sends nothing at all is cut by the read timeout.
    """

    __slots__ = ("_bytes", "_rate", "_since", "_window")

    def __init__(self, rate: float | None, window: float) -> None:
        self._rate = rate
        self._window = window
        self._since = time.monotonic()
        self._bytes = 0

    def check(self, received: int, t: _Transfer) -> None:
        if self._rate is None:
            return
        self._bytes += received
        now = time.monotonic()
        elapsed = now - self._since
        if elapsed < self._window:
            return
        if self._bytes < self._rate * elapsed:
            raise ReadTimeoutError(
                f"download from {t.host} cut: {self._bytes} bytes in {elapsed:.1f} s, "
                f"under the {self._rate:g} bytes/s floor",
                route=t.route,
            )
        self._since, self._bytes = now, 0


def _rewind(file: IO[bytes]) -> None:
    file.seek(0)
    file.truncate()


def _sync(file: IO[bytes]) -> None:
    file.flush()
    os.fsync(file.fileno())


def _int(value: str | None) -> int | None:
    return int(value) if value is not None and value.isdigit() else None


async def _body_total(resp: StreamResponse, t: _Transfer) -> tuple[bool, int | None]:
    """Check the status; return whether to read this body, and the file's total size.

    ``(False, None)`` means the server did not resume where asked: the file has been
    rewound and the caller asks again from byte 0. A total of ``None`` is unknown.
    """
    length = _int(resp.headers.get("Content-Length"))
    if resp.headers.get("Content-Encoding", "identity").lower() != "identity":
        length = None  # decoded on the fly: the length no longer counts our bytes
    if resp.status == 200:
        if t.done:
            await t.restart()  # the server ignored Range: start over
        etag = resp.headers.get("ETag")
        strong = etag if etag and not etag.startswith("W/") else None
        t.validator = strong or resp.headers.get("Last-Modified")
        return True, length
    if resp.status in (206, 416):
        match = _CONTENT_RANGE.fullmatch(resp.headers.get("Content-Range", "").strip())
        if resp.status == 206 and match and int(match.group(1)) == t.done:
            total = _int(match.group(3))
            return True, total if total is not None else (t.done + length if length else None)
        if not t.done:
            raise UnexpectedResponseError(
                route=t.route, status=resp.status, error_message="a range we did not ask for"
            )
        await t.restart()
        return False, None
    raise resp.error()


def _check_size(t: _Transfer, opts: _Options, size: int | None, *, announced: bool) -> None:
    if opts.max_bytes is not None and size is not None and size > opts.max_bytes:
        raise DownloadTooLargeError(
            url=public_url(t.url), max_bytes=opts.max_bytes, size=size if announced else None
        )


async def _copy_body(resp: StreamResponse, t: _Transfer, opts: _Options, total: int | None) -> None:
    """Copy the body to the file, buffering writes; keep what arrived if the link breaks."""
    buffer = bytearray()
    floor = _RateFloor(opts.min_rate, opts.window)
    try:
        async for chunk in resp.chunks(DEFAULT_CHUNK_SIZE):
            t.done += len(chunk)
            _check_size(t, opts, t.done, announced=False)
            buffer += chunk
            floor.check(len(chunk), t)  # after the append: a cut keeps what arrived
            if len(buffer) >= DEFAULT_CHUNK_SIZE:
                await t.file.write(bytes(buffer))
                buffer.clear()
            if opts.progress is not None:
                opts.progress(t.url, t.done, total)
    except TransportError:
        # The bytes received before a break are good; on disk, they make a resume possible.
        await t.file.write(bytes(buffer))
        raise
    await t.file.write(bytes(buffer))
    if total is not None and t.done != total:
        raise NetworkError(f"body ended after {t.done} of {total} bytes", route=t.route)


async def _attempt(transport: Transport, t: _Transfer, opts: _Options) -> str | None:
    """One GET (resuming with Range when part of the file is here); the Content-Type."""
    # identity: byte offsets for Range must be offsets in the stored file.
    headers = {"Accept-Encoding": "identity"}
    if t.done:
        headers["Range"] = f"bytes={t.done}-"
        if t.validator:
            headers["If-Range"] = t.validator
    async with transport.stream(t.url, headers=headers, route=t.route) as resp:
        usable, total = await _body_total(resp, t)
        if usable:
            _check_size(t, opts, total, announced=True)
            if opts.progress is not None:
                opts.progress(t.url, t.done, total)
            await _copy_body(resp, t, opts, total)
            return resp.headers.get("Content-Type")
    return await _attempt(transport, t, opts)  # resume refused: once more, from byte 0


async def _fetch(transport: Transport, t: _Transfer, opts: _Options) -> str | None:
    """Retry one file on transient failures (transport errors, 408, 429, 5xx).

    The policy's wall-clock ``budget`` is not applied: a long transfer is not a sign of
    trouble; the read timeout and the floor rate bound a stalled or dripping one, and
    ``download_deadline`` (around this call) the whole file.
    """
    retry = 0
    while True:
        try:
            return await _attempt(transport, t, opts)
        except RunComfyError as exc:
            retry += 1
            if not is_retryable_read(exc) or retry >= opts.retry.attempts:
                raise
            delay = backoff_delay(
                opts.retry, retry, retry_after=retry_after_of(exc), rand=random.random()
            )
            logger.info("retrying %s in %.2f s (retry %d): %s", t.route, delay, retry, exc)
            await anyio.sleep(delay)


# --- the call ----------------------------------------------------------------------------


class _Staged:
    __slots__ = ("name", "tmp")

    def __init__(self, tmp: Path, name: str) -> None:
        self.tmp = tmp
        self.name = name


async def _download_one(
    transport: Transport, url: str, staged: _Staged, directory: Path, opts: _Options
) -> None:
    async with await anyio.open_file(staged.tmp, "xb") as file:
        transfer = _Transfer(url, file)
        content_type: str | None = None
        with anyio.move_on_after(opts.deadline) as scope:
            content_type = await _fetch(transport, transfer, opts)
        if scope.cancelled_caught:
            raise ReadTimeoutError(
                f"download from {transfer.host} did not finish within {opts.deadline:g} s",
                route=transfer.route,
            )
        await anyio.to_thread.run_sync(_sync, file.wrapped)
    if not split_suffix(staged.name)[1]:
        # The URL's own extension wins when it has one: storage often answers a generic
        # application/octet-stream, so the Content-Type only fills a missing extension.
        staged.name = inside(directory, staged.name + extension_for(content_type)).name


def _link_no_clobber(tmp: Path, final: Path) -> None:
    try:
        os.link(tmp, final)
    except FileExistsError:
        raise
    except OSError:
        # No hard links on this file system (FAT, some network mounts): check, then rename.
        if os.path.lexists(final):
            raise FileExistsError(errno.EEXIST, "file exists", str(final)) from None
        os.replace(tmp, final)
    else:
        os.unlink(tmp)


def _commit(staged: list[_Staged], directory: Path, overwrite: bool) -> list[Path]:
    finals = [inside(directory, s.name) for s in staged]
    if not overwrite:
        for final in finals:
            if os.path.lexists(final):
                raise FileExistsError(errno.EEXIST, "file exists", str(final))
    for item, final in zip(staged, finals, strict=True):
        if overwrite:
            os.replace(item.tmp, final)
        else:
            _link_no_clobber(item.tmp, final)
    if os.name == "posix":
        # Make the renames themselves durable; some file systems refuse, which is harmless.
        with contextlib.suppress(OSError):
            fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    return finals


def _remove(paths: list[Path]) -> None:
    for path in paths:
        with contextlib.suppress(OSError):
            path.unlink()


async def _fetch_all(
    transport: Transport,
    jobs: list[tuple[str, _Staged]],
    directory: Path,
    opts: _Options,
    concurrency: int,
) -> None:
    limiter = anyio.CapacityLimiter(concurrency)
    failures: list[Exception] = []

    async def guarded(url: str, staged: _Staged) -> None:
        async with limiter:
            try:
                await _download_one(transport, url, staged, directory, opts)
            except Exception as exc:  # noqa: BLE001 -- re-raised below, plain, not as a group
                failures.append(exc)
                tg.cancel_scope.cancel()

    async with anyio.create_task_group() as tg:
        for url, staged in jobs:
            tg.start_soon(guarded, url, staged)
    if failures:
        raise failures[0]


async def download(
    transport: Transport,
    source: Result | Output | str | Sequence[str],
    dest: str | os.PathLike[str],
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    max_bytes: int | None = DEFAULT_MAX_BYTES,
    overwrite: bool = False,
    progress: DownloadProgress | None = None,
    retry: RetryPolicy = DEFAULT_RETRY,
) -> list[Path]:
    """Download output files into the directory ``dest``; all of them, or none.

    Every file streams to a hidden temporary file in ``dest``; only when all have arrived
    whole are they renamed into place. On any failure or cancellation the other files
    are cancelled, every temporary file is removed, and the first failure is raised
    (the only case that can leave some files renamed is a rename itself failing).

    Args:
        transport: The session's transport (it never sends ``Authorization`` here).
        source: A succeeded :class:`Result` (all of ``output.urls``, in order), an
            :class:`Output`, one URL, or a sequence of URLs (an empty one returns ``[]``).
        dest: The directory to write into; created, with its parents, when missing.
        concurrency: Files downloaded at once.
        max_bytes: Per-file cap, checked against Content-Length and while streaming;
            ``None`` for no cap.
        overwrite: Replace existing files; when False an existing name is an error.
        progress: Called as ``progress(url, done, total)`` as bytes arrive.
        retry: Attempts and backoff for transient failures (transport errors, 408,
            429, 5xx). A broken transfer resumes with ``Range`` where the server allows.

    Returns:
        The written paths, absolute, in the order of the URLs.

    Raises:
        ValueError: A Result that did not succeed or has no output, or a bad argument.
        DownloadRefusedError: A URL, or a redirect hop, that is not https to a public
            host or plain http to loopback, or more than 5 redirects (also a ValueError).
        DownloadTooLargeError: A file is over ``max_bytes``.
        NotFoundError: The storage answered 404 (an expired link, say).
        APIStatusError: Another error answer from storage (after retries for 408, 429
            and 5xx: ``RequestTimeoutError``, ``RateLimitError``, ``ServerError``).
        TransportError: The connection failed, broke or timed out, after retries.
        ReadTimeoutError: A transfer stayed under the floor rate (after retries), or a
            file passed ``download_deadline``.
        FileExistsError: A target file exists and ``overwrite`` is False.
        OSError: The directory or a file could not be written.
    """
    if not isinstance(concurrency, int) or concurrency < 1:
        raise ValueError(f"concurrency must be a positive integer, got {concurrency!r}")
    if max_bytes is not None and (not isinstance(max_bytes, int) or max_bytes < 1):
        raise ValueError(f"max_bytes must be a positive integer or None, got {max_bytes!r}")
    urls = _collect_urls(source)
    for url in urls:
        check_download_url(url)
    if not urls:
        return []
    directory = Path(await anyio.Path(dest).resolve())
    await anyio.Path(directory).mkdir(parents=True, exist_ok=True)
    await anyio.to_thread.run_sync(sweep_stale, directory, time.time())
    names = plan_names(_name_sources(source, urls))
    if not overwrite:
        for name in names:
            if split_suffix(name)[1] and await anyio.Path(inside(directory, name)).exists():
                raise FileExistsError(errno.EEXIST, "file exists", str(directory / name))
    staged = [_Staged(inside(directory, part_name(name)), name) for name in names]
    limits = transport.timeouts
    opts = _Options(
        max_bytes,
        progress,
        retry,
        min_rate=limits.download_min_rate,
        window=limits.download_rate_window,
        deadline=limits.download_deadline,
    )
    try:
        await _fetch_all(
            transport, list(zip(urls, staged, strict=True)), directory, opts, concurrency
        )
        return await anyio.to_thread.run_sync(_commit, staged, directory, overwrite)
    finally:
        # After a commit only the temporaries of a failed rename remain; otherwise all.
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(_remove, [s.tmp for s in staged])

"""The one place aiohttp is used at run time: the session, auth, and error mapping.

Every aiohttp exception is translated here into the :mod:`._errors` tree and nowhere
else (httpcore's ``map_exceptions`` pattern), with the question that matters for money
answered by the class: did the request possibly reach the server? The token is attached
per request, and only to URLs built from ``base_url``; the session has no default
``Authorization`` header, so downloads and any server-supplied URL on another host never
see it. Redirects are never followed on API calls, for the same reason.

The header value is an :class:`AuthHeader`, a ``str`` whose ``repr`` is ``'Bearer [redacted]'``,
so tracebacks rendered with frame locals (rich, ``pytest -l``) never show it; and a token the
server echoes is replaced by ``[redacted]`` in every answer body, error message, ``detail`` and
redirect ``Location`` here, before any of it becomes a struct, an exception or a log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from functools import lru_cache
from typing import Final

import aiohttp
import msgspec
from yarl import URL

from ._config import Limits, Timeouts
from ._deadlines import Deadlines
from ._errors import (
    APIStatusError,
    ConnectError,
    ConnectTimeoutError,
    DownloadRefusedError,
    NetworkError,
    ReadTimeoutError,
    TransportError,
    UnexpectedResponseError,
)
from ._redact import REDACTED, AuthHeader, redact
from ._status_errors import parse_retry_after, status_error
from ._urls import check_base_url, check_download_url, public_url
from ._version import __version__
from ._wire import decode_error_envelope

__all__ = [
    "Response",
    "StreamResponse",
    "Transport",
    "env_proxy",
    "parse_retry_after",
    "status_error",
]

USER_AGENT: Final = f"runcomfy-async/{__version__}"

_ERROR_CODE_MARK: Final = b'"error_code"'
#: No API answer is anywhere near this; a larger one is broken or hostile, not read whole.
MAX_ANSWER_BYTES: Final = 8 * 1024 * 1024
#: Redirect hops a download follows; storage uses one or two (a CDN, a signed link).
MAX_DOWNLOAD_REDIRECTS: Final = 5
_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})


@lru_cache(maxsize=64)
def env_proxy(scheme: str, host: str) -> URL | None:
    """The proxy ``HTTP(S)_PROXY`` names for this scheme and host, honouring ``NO_PROXY``.

    Resolved once per origin and cached: aiohttp's own ``trust_env`` re-reads the
    environment and ``~/.netrc`` in a thread on every request (3× the CPU of a bare
    loop), and a netrc entry for the API host would clash with our Authorization header.
    """
    proxy = urllib.request.getproxies().get(scheme)
    if not proxy or urllib.request.proxy_bypass(host):
        return None
    return URL(proxy)


class Response(msgspec.Struct, frozen=True):
    """A successful (2xx) API answer, read in full."""

    status: int
    body: bytes


class StreamResponse:
    """An open download: status, headers, and the body as chunks."""

    def __init__(self, response: aiohttp.ClientResponse, route: str) -> None:
        self._response = response
        self._route = route
        self.status: int = response.status
        self.headers: Mapping[str, str] = response.headers
        self.url: str = str(response.url)

    def error(self) -> APIStatusError:
        """The typed error for this answer (not a 2xx), by its status alone."""
        # A storage body is not a RunComfy envelope, and an error_code in it would lie.
        return status_error(
            status=self.status,
            envelope=None,
            route=self._route,
            request_id=None,
            retry_after=parse_retry_after(self.headers.get("Retry-After")),
        )

    async def chunks(self, size: int = 1 << 16) -> AsyncIterator[bytes]:
        """Yield the body in chunks of at most ``size`` bytes.

        Raises:
            NetworkError: The connection broke mid-body.
            ReadTimeoutError: No bytes arrived within the download read timeout.
        """
        with _mapped(self._route, None):
            async for chunk in self._response.content.iter_chunked(size):
                yield chunk


_FAILURES: Final = (aiohttp.ClientError, OSError, TimeoutError)


def _translated(exc: BaseException, route: str, request_id: str | None) -> TransportError:
    """Our error for an aiohttp failure, socket error or timeout (``_FAILURES``)."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return ConnectTimeoutError(
            f"connection timed out ({exc.__class__.__name__})", route=route, request_id=request_id
        )
    if isinstance(exc, aiohttp.ClientConnectorError):
        return ConnectError(
            f"could not connect to {exc.host}:{exc.port} ({exc.os_error.__class__.__name__})",
            route=route,
            request_id=request_id,
        )
    if isinstance(exc, aiohttp.SocketTimeoutError | aiohttp.ServerTimeoutError | TimeoutError):
        return ReadTimeoutError(
            "no answer within the read timeout", route=route, request_id=request_id
        )
    return NetworkError(
        f"connection broke ({exc.__class__.__name__})", route=route, request_id=request_id
    )


@contextlib.contextmanager
def _mapped(route: str, request_id: str | None) -> Iterator[None]:
    """Translate aiohttp's exceptions into ours, at exactly this boundary."""
    try:
        yield
    except _FAILURES as exc:
        raise _translated(exc, route, request_id) from exc


async def _read_capped(resp: aiohttp.ClientResponse, route: str, request_id: str | None) -> bytes:
    """Read an API answer whole, refusing one larger than any real answer could be."""
    declared = resp.content_length
    if declared is not None:
        if declared > MAX_ANSWER_BYTES:
            raise _too_large(resp.status, route, request_id)
        if "Content-Encoding" not in resp.headers:
            # Not compressed: aiohttp stops at the declared length, so one read is safe.
            return await resp.read()
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_any():
        size += len(chunk)
        if size > MAX_ANSWER_BYTES:
            raise _too_large(resp.status, route, request_id)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(status: int, route: str, request_id: str | None) -> UnexpectedResponseError:
    return UnexpectedResponseError(
        route=route,
        status=status,
        request_id=request_id,
        error_message=f"answer larger than {MAX_ANSWER_BYTES} bytes refused",
    )


class Transport:
    """Sends one HTTP attempt and returns a 2xx body or raises a typed error.

    It knows nothing of retries, statuses or payload shapes. The aiohttp session is made
    on first use, inside the running loop, and bounded by ``limits``.
    """

    def __init__(
        self,
        *,
        token: str,
        base_url: str,
        timeouts: Timeouts,
        limits: Limits,
        trust_env: bool = True,
    ) -> None:
        self._base = check_base_url(base_url)
        self._prefix = self._base.path.rstrip("/")
        self._set_auth(token)
        self._limits = limits
        self._trust_env = trust_env
        self._api_proxy = env_proxy(self._base.scheme, self._base.host or "") if trust_env else None
        self._session: aiohttp.ClientSession | None = None
        self._closed = False
        self._owner: Transport | None = None  # set on a view: the pool is the owner's
        #: Told of every API answer's route and status (0: none arrived); telemetry.
        self.on_response: Callable[[str, int], None] | None = None
        self._set_timeouts(timeouts)

    def _set_auth(self, token: str) -> None:
        # Built once: every API request sends one of these two (aiohttp copies them).
        self._auth = AuthHeader(f"Bearer {token}")
        self._headers = {"Authorization": self._auth}
        self._body_headers = {**self._headers, "Content-Type": "application/json"}
        secret = self._auth.secret
        self._secret = secret
        self._secret_bytes = secret.encode() if secret is not None else None

    def _set_timeouts(self, timeouts: Timeouts) -> None:
        # aiohttp's 300 s total default must never apply: total=None. ``connect`` is left
        # unset because it also counts waiting for a pooled connection, which is bounded
        # elsewhere (submit limiter, poll budget); sock_connect bounds the TCP connect.
        self._api_timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=timeouts.connect, sock_read=timeouts.read
        )
        # Polls (every GET of the API) are bounded by a Deadlines line instead (._deadlines).
        self._poll_timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeouts.connect)
        self._deadlines = Deadlines(timeouts.read)
        self._download_timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=timeouts.connect, sock_read=timeouts.download_read
        )
        self.timeouts = timeouts  # the download floor rate and deadline are read from here

    @property
    def base_url(self) -> str:
        """The API origin and path prefix every API call is built on."""
        return str(self._base)

    def __repr__(self) -> str:
        return f"<Transport base_url={self.base_url!r}>"

    def derive(self, *, token: str | None, timeouts: Timeouts | None) -> Transport:
        """A view on the same connection pool, with its own token and/or timeouts.

        The token is attached per request, so a view's requests carry only its own;
        closing a view closes nothing (the owner's ``aclose`` closes the pool).
        """
        view = copy.copy(self)
        view._owner = self._owner or self
        view._session = None
        if token is not None:
            view._set_auth(token)
        if timeouts is not None:
            view._set_timeouts(timeouts)
        return view

    def _get_session(self) -> aiohttp.ClientSession:
        if self._owner is not None:
            if self._closed:
                raise RuntimeError("the client view is closed")
            return self._owner._get_session()
        if self._closed:
            raise RuntimeError("the client is closed")
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self._limits.max_connections,
                limit_per_host=self._limits.max_connections_per_host,
                keepalive_timeout=self._limits.keepalive,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._api_timeout,
                headers={"User-Agent": USER_AGENT},
                trust_env=False,  # proxies come from env_proxy(), resolved once
                auto_decompress=True,
            )
        return self._session

    async def request(
        self,
        method: str,
        path: str,
        *,
        route: str,
        request_id: str | None = None,
        body: bytes | None = None,
        params: Mapping[str, str] | None = None,
        accept_2xx: bool = False,
    ) -> Response:
        """Send one attempt to ``base_url + path``; return the 2xx answer.

        With ``accept_2xx``, every 2xx answer is returned as is, even one carrying an
        ``error_code``: the caller decides (a submit's 2xx with a usable id is a job).

        Raises:
            TransportError: No answer (see the subclasses for whether it was sent).
            APIStatusError: An error answer, including a 200 carrying an ``error_code``,
                and a redirect (never followed: it could carry the token elsewhere).
        """
        session = self._get_session()
        url = self._base.with_path(self._prefix + path, encoded=False)
        deadline = self._deadlines.arm() if method == "GET" else None
        try:
            async with session.request(
                method,
                url,
                data=body,
                params=params,
                headers=self._headers if body is None else self._body_headers,
                allow_redirects=False,
                proxy=self._api_proxy,
                # A view's own, on the shared session.
                timeout=self._api_timeout if deadline is None else self._poll_timeout,
            ) as resp:
                payload = await _read_capped(resp, route, request_id)
                status = resp.status
                headers = resp.headers  # read below only for an error answer
        except asyncio.CancelledError as exc:
            if deadline is None or not deadline.expired():
                raise
            if self.on_response is not None:
                self.on_response(route, 0)
            raise _translated(TimeoutError(), route, request_id) from exc
        except _FAILURES as exc:
            error = _translated(exc, route, request_id)
            if self.on_response is not None:
                self.on_response(route, 0)
            raise error from exc
        finally:
            if deadline is not None:
                deadline.close()
        if self.on_response is not None:
            self.on_response(route, status)
        secret = self._secret
        if self._secret_bytes is not None and self._secret_bytes in payload:
            # The server echoed the token: keep it out of every struct, message and log.
            payload = payload.replace(self._secret_bytes, REDACTED.encode())
        if 200 <= status < 300:
            if accept_2xx:
                return Response(status=status, body=payload)
            # The substring test keeps the common success path free of a second decode.
            if _ERROR_CODE_MARK not in payload:
                return Response(status=status, body=payload)
            envelope = decode_error_envelope(payload)
            if envelope is None or envelope.error_code is None:
                return Response(status=status, body=payload)
        elif 300 <= status < 400:
            location = redact(headers.get("Location"), secret)
            raise UnexpectedResponseError(
                route=route,
                status=status,
                request_id=request_id,
                error_message=f"redirect to {location!r} not followed",
            )
        else:
            envelope = decode_error_envelope(payload)
        raise status_error(
            status=status,
            envelope=envelope,
            route=route,
            request_id=request_id,
            retry_after=parse_retry_after(headers.get("Retry-After")),
            secret=secret,
        )

    @contextlib.asynccontextmanager
    async def stream(
        self, url: str, *, headers: Mapping[str, str] | None = None, route: str = "GET output"
    ) -> AsyncIterator[StreamResponse]:
        """Open a GET to an output file URL, with no ``Authorization`` header.

        Output files live on RunComfy storage and are public; the token must never go
        there, whatever host it is. Redirects are followed one hop at a time, at most
        :data:`MAX_DOWNLOAD_REDIRECTS`, each ``Location`` vetted by
        :func:`~._urls.check_download_url` before anything connects to it.

        Raises:
            TransportError: The connection failed or broke.
            DownloadRefusedError: A redirect to a refused URL, or too many redirects.
        """
        session = self._get_session()
        sent = {k: v for k, v in (headers or {}).items() if k.lower() != "authorization"}
        target = URL(url, encoded=True)
        for hop in range(MAX_DOWNLOAD_REDIRECTS + 1):
            proxy = env_proxy(target.scheme, target.host or "") if self._trust_env else None
            with _mapped(route, None):
                resp = await session.get(
                    target,
                    headers=sent,
                    timeout=self._download_timeout,
                    proxy=proxy,
                    allow_redirects=False,  # each hop is vetted below, before connecting
                )
            location = resp.headers.get("Location") if resp.status in _REDIRECTS else None
            if location is None:
                break
            resp.close()
            try:
                target = target.join(URL(location))
            except ValueError as exc:
                raise DownloadRefusedError(
                    url=public_url(str(target)), host=target.host or "", reason="a bad redirect"
                ) from exc
            check_download_url(str(target))
            if hop == MAX_DOWNLOAD_REDIRECTS:
                raise DownloadRefusedError(
                    url=public_url(str(target)),
                    host=target.host or "",
                    reason=f"more than {MAX_DOWNLOAD_REDIRECTS} redirects",
                )
        # Only opening is mapped here: errors raised by the caller's own code (say, a full
        # disk) must pass through untranslated.
        try:
            yield StreamResponse(resp, route)
        finally:
            resp.close()

    async def aclose(self) -> None:
        """Close the pool (a view's: nothing shared); idempotent."""
        self._closed = True
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()
            # Let SSL transports finish closing (aiohttp's documented graceful shutdown).
            await asyncio.sleep(0)

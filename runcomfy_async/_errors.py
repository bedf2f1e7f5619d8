"""Every error the client raises, rooted at :class:`RunComfyError`.

The tree, by what the caller can do about it::

    RunComfyError
    ├── TransportError                 no HTTP answer arrived
    │   ├── ConnectError               never reached the server (also ConnectionError)
    │   ├── ConnectTimeoutError        connect took too long: nothing was sent (also TimeoutError)
    │   ├── NetworkError               the connection broke mid-exchange (also ConnectionError)
    │   └── ReadTimeoutError           sent, but no answer in time (also TimeoutError)
    ├── APIStatusError                 the server answered with an error
    │   ├── BadRequestError            400 / 400001 (unknown model, malformed body)
    │   ├── AuthenticationError        401 / 400004
    │   ├── InsufficientBalanceError   402 / 400002
    │   ├── PermissionDeniedError      403 / 403001
    │   ├── NotFoundError              404 / 404001 (unknown or expired request)
    │   ├── RequestTimeoutError        408 (the server gave up waiting; retry later)
    │   ├── InvalidInputError          422 (inputs do not match the model's schema)
    │   ├── RateLimitError             429
    │   ├── ServerError                5xx
    │   └── UnexpectedResponseError    a 2xx we cannot read (bad JSON, missing fields)
    ├── JobError                       the job itself did not give a result
    │   ├── JobFailedError
    │   ├── JobCancelledError
    │   └── WaitTimeoutError           the overall deadline passed (also TimeoutError)
    ├── SubmitUncertainError           a submit may or may not have created a billed job
    │   ├── UncertainKeyError          ... for a journaled key, which is not resubmitted
    │   └── SubmitTimeoutError         ... the deadline passed mid-POST (also TimeoutError)
    ├── InputValidationError           inputs refused locally, before any request (also ValueError)
    ├── KeyConflictError               a journal key reused for other inputs (ValueError too)
    ├── JournalError                   the journal could not be read or written
    ├── SpendLimitError                a submit would pass spend_limit_usd; nothing was sent
    ├── DownloadTooLargeError          an output file is over the download size cap
    └── DownloadRefusedError           a download URL or redirect hop refused (also ValueError)

Every message is a sentence naming the route, the request id and the status; the
structured facts are attributes. No message ever contains the API token. All
exceptions pickle, so they cross process pools intact.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ._wire import Result

__all__ = [
    "APIStatusError",
    "AuthenticationError",
    "BadRequestError",
    "ConnectError",
    "ConnectTimeoutError",
    "DownloadRefusedError",
    "DownloadTooLargeError",
    "InputValidationError",
    "InsufficientBalanceError",
    "InvalidInputError",
    "JobCancelledError",
    "JobError",
    "JobFailedError",
    "JournalError",
    "KeyConflictError",
    "NetworkError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "ReadTimeoutError",
    "RequestTimeoutError",
    "RunComfyError",
    "ServerError",
    "SubmitTimeoutError",
    "SubmitUncertainError",
    "TransportError",
    "UncertainKeyError",
    "UnexpectedResponseError",
    "WaitTimeoutError",
]


class RunComfyError(Exception):
    """The root of every error this package raises on purpose."""

    def __reduce__(self) -> tuple[Any, ...]:
        # Subclasses take keyword-only facts; rebuild from the message plus __dict__
        # so that pickling never depends on each constructor's signature.
        return (_rebuild, (type(self), self.args, self.__dict__))


def _rebuild(cls: type[RunComfyError], args: tuple[Any, ...], state: dict[str, Any]) -> Any:
    exc = cls.__new__(cls)
    Exception.__init__(exc, *args)
    exc.__dict__.update(state)
    return exc


def _where(route: str, request_id: str | None) -> str:
    return f"{route} (request {request_id})" if request_id else route


# --- no response -------------------------------------------------------------------------


class TransportError(RunComfyError):
    """No HTTP answer arrived: the connection failed, broke or timed out.

    Attributes:
        route: The API route, e.g. ``"GET /v1/requests/{id}/status"``.
        request_id: The job the call was about, when there is one.
    """

    def __init__(self, message: str, *, route: str, request_id: str | None = None) -> None:
        super().__init__(f"{_where(route, request_id)}: {message}")
        self.route = route
        self.request_id = request_id


class ConnectError(TransportError, ConnectionError):
    """The connection could not be opened, so the request never reached the server."""


class ConnectTimeoutError(TransportError, TimeoutError):
    """Opening the connection took too long; nothing was sent."""


class NetworkError(TransportError, ConnectionError):
    """The connection broke after the request may have been sent."""


class ReadTimeoutError(TransportError, TimeoutError):
    """The request was sent but no answer came within the read timeout."""


# --- error response ----------------------------------------------------------------------


class APIStatusError(RunComfyError):
    """The server answered, and the answer is an error.

    Attributes:
        route: The API route that answered.
        request_id: The job the call was about, when there is one.
        status: The HTTP status (200 for a 200 that carries an ``error_code``).
        error_code: RunComfy's six-digit code, when the body had one.
        error_message: The server's own message, when it gave one.
        detail: The server's ``detail`` field, verbatim.
    """

    def __init__(
        self,
        *,
        route: str,
        status: int,
        request_id: str | None = None,
        error_code: int | None = None,
        error_message: str | None = None,
        detail: object = None,
    ) -> None:
        parts = [f"{_where(route, request_id)} answered HTTP {status}"]
        if error_code is not None:
            parts.append(f"error_code {error_code}")
        text = ", ".join(parts)
        if error_message:
            text = f"{text}: {error_message}"
        super().__init__(text)
        self.route = route
        self.status = status
        self.request_id = request_id
        self.error_code = error_code
        self.error_message = error_message
        self.detail = detail


class BadRequestError(APIStatusError):
    """The request was malformed, or the model id is unknown (400 / 400001)."""


class AuthenticationError(APIStatusError):
    """The token is missing, wrong, or its account has a problem (401 / 400004)."""


class InsufficientBalanceError(APIStatusError):
    """The account has no balance left for this job (402 / 400002)."""


class PermissionDeniedError(APIStatusError):
    """The request belongs to someone else (403 / 403001)."""


class NotFoundError(APIStatusError):
    """The request id is unknown or has expired (404 / 404001)."""


class RequestTimeoutError(APIStatusError):
    """The server timed out waiting for the request (408); safe to retry a read."""


class InvalidInputError(APIStatusError):
    """The inputs do not match the model's schema (422)."""


class RateLimitError(APIStatusError):
    """Too many requests (429).

    Attributes:
        retry_after: Seconds the server asked us to wait, when it said.
    """

    def __init__(self, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.retry_after = retry_after


class ServerError(APIStatusError):
    """The server failed (5xx)."""


class UnexpectedResponseError(APIStatusError):
    """A success status whose body we cannot read: bad JSON or a missing field."""


# --- job outcome -------------------------------------------------------------------------


class JobError(RunComfyError):
    """The job finished without a usable result, or did not finish in time.

    Attributes:
        request_id: The job's id; it is never lost, so the job can be looked up later.
    """

    def __init__(self, message: str, *, request_id: str) -> None:
        super().__init__(message)
        self.request_id = request_id


class JobFailedError(JobError):
    """The job ran and failed.

    Attributes:
        result: The full typed result, ``error`` included.
        error: The server's error, in whatever shape it sent (string, object, list).
    """

    def __init__(self, result: Result) -> None:
        super().__init__(
            f"request {result.request_id} failed: {result.error_text or 'no error given'}",
            request_id=result.request_id,
        )
        self.result = result
        self.error = result.error


class JobCancelledError(JobError):
    """The job was cancelled before it produced a result."""

    def __init__(self, request_id: str) -> None:
        super().__init__(f"request {request_id} was cancelled", request_id=request_id)


class WaitTimeoutError(JobError, TimeoutError):
    """The overall deadline passed before the job finished.

    The job itself may still be running: nothing was cancelled remotely unless the call
    says so. Attributes:
        timeout: The deadline, in seconds.
        last_status: The last status seen, as the server spelled it, if any.
    """

    def __init__(self, request_id: str, *, timeout: float, last_status: str | None) -> None:
        seen = f"; last status {last_status!r}" if last_status else ""
        super().__init__(
            f"request {request_id} did not finish within {timeout:g} s{seen}",
            request_id=request_id,
        )
        self.timeout = timeout
        self.last_status = last_status


# --- money and inputs --------------------------------------------------------------------


class SubmitUncertainError(RunComfyError):
    """A submit failed in a way that may or may not have created a billed job.

    The client never retries such a submit on its own: doing so could pay twice. The
    inputs are kept here so the caller can decide (check the dashboard, resubmit, or
    give up). The original failure is ``__cause__``.

    Attributes:
        model_id: The model the submit was for.
        inputs: The exact inputs that were sent.
        request_id: Set when the server answered 2xx but the answer was unusable and
            still named an id; usually None.
        reason: A short description of what went wrong.
    """

    def __init__(
        self,
        *,
        model_id: str,
        inputs: Mapping[str, object],
        reason: str,
        request_id: str | None = None,
    ) -> None:
        super().__init__(
            f"submit to {model_id} may or may not have created a job ({reason}); "
            "it was not retried, to avoid paying twice"
        )
        self.model_id = model_id
        self.inputs = dict(inputs)
        self.reason = reason
        self.request_id = request_id


class InputValidationError(RunComfyError, ValueError):
    """Inputs were refused locally, before any request was sent or money spent.

    Attributes:
        field: The input field at fault.
        value: The offending value (a short description for large values such as files).
        rule: The rule it broke, in words.
    """

    def __init__(self, *, field: str, value: object, rule: str) -> None:
        shown = repr(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        super().__init__(f"input {field!r} = {shown}: {rule}")
        self.field = field
        self.value = value
        self.rule = rule


# --- downloads ---------------------------------------------------------------------------


class DownloadTooLargeError(RunComfyError):
    """An output file is larger than the ``max_bytes`` cap; nothing was kept.

    Attributes:
        url: The file's URL, without its query string (which may hold a signature).
        max_bytes: The cap in force.
        size: The size the server announced, or ``None`` when the cap was crossed
            mid-stream without an announced size.
    """

    def __init__(self, *, url: str, max_bytes: int, size: int | None) -> None:
        told = f"is {size} bytes" if size is not None else "sent more bytes"
        super().__init__(f"download of {url} refused: it {told}, over the {max_bytes}-byte cap")
        self.url = url
        self.max_bytes = max_bytes
        self.size = size


class DownloadRefusedError(RunComfyError, ValueError):
    """A download URL, or a redirect hop of one, was refused before connecting to it.

    Allowed: https to a public host, plain http to loopback only. Refused: another
    scheme, plain http elsewhere, an IP literal in a link-local, private, unspecified or
    multicast range (a cloud metadata endpoint, an internal service), too many redirects.
    Nothing was sent to the refused host; nothing was kept.

    Attributes:
        url: The refused URL without its query (which may hold a signature).
        host: Its host.
        reason: Why it was refused, in words.
    """

    def __init__(self, *, url: str, host: str, reason: str) -> None:
        where = f" from {host}" if host else ""
        super().__init__(f"download{where} refused: {reason}")
        self.url = url
        self.host = host
        self.reason = reason


class KeyConflictError(RunComfyError, ValueError):
    """A key already in the journal was run with a different model or different inputs.

    Attributes:
        key: The key.
        model_id: The model this call asked for.
        journaled_model_id: The model stored for the key.
    """

    def __init__(self, *, key: str, model_id: str, journaled_model_id: str) -> None:
        what = "model" if model_id != journaled_model_id else "inputs"
        super().__init__(
            f"key {key!r} is already journaled with a different {what}; use a new key for new work"
        )
        self.key = key
        self.model_id = model_id
        self.journaled_model_id = journaled_model_id


class UncertainKeyError(SubmitUncertainError):
    """A key's submit may or may not have created a job, so it is not repeated.

    Raised by a keyed ``run`` when its own POST failed ambiguously, and by a rerun when
    the journal holds the key as ``intent`` (the process stopped between recording the
    intent and recording the request id) or ``uncertain``. Check the account's
    dashboard, then rerun with ``on_uncertain="resubmit"``, or use a new key.

    Attributes:
        key: The key.
        state: ``"intent"`` or ``"uncertain"``.
    """

    def __init__(
        self,
        *,
        key: str,
        state: str,
        model_id: str,
        inputs: Mapping[str, object],
        reason: str,
    ) -> None:
        super().__init__(model_id=model_id, inputs=inputs, reason=f"key {key!r}: {reason}")
        self.key = key
        self.state = state


class JournalError(RunComfyError):
    """The journal could not be read or written.

    Attributes:
        path: The journal file.
        key: The key concerned, when there is one.
        request_id: A job id that could not be recorded, so that it is not lost.
    """

    def __init__(
        self, message: str, *, path: str, key: str | None = None, request_id: str | None = None
    ) -> None:
        super().__init__(f"journal {path}: {message}")
        self.path = path
        self.key = key
        self.request_id = request_id


class SpendLimitError(RunComfyError):
    """A submit was refused locally because of ``Client(spend_limit_usd=...)``; nothing was sent.

    Either the job's estimated price would take the session's spend (reported costs
    plus reservations of jobs not yet settled) past the limit, or the price could not
    be estimated at all (then ``estimate_usd`` is None and the message says how to pass
    one).

    Attributes:
        model_id: The model the submit was for.
        limit_usd: The session's limit.
        spent_usd: Spent plus reserved when the submit was refused.
        estimate_usd: The job's estimated price, or None when it could not be estimated.
    """

    def __init__(
        self,
        message: str,
        *,
        model_id: str,
        limit_usd: float,
        spent_usd: float,
        estimate_usd: float | None,
    ) -> None:
        super().__init__(message)
        self.model_id = model_id
        self.limit_usd = limit_usd
        self.spent_usd = spent_usd
        self.estimate_usd = estimate_usd


class SubmitTimeoutError(SubmitUncertainError, TimeoutError):
    """A run's deadline passed while its submit POST was on the wire.

    The caller got control back at the deadline; the POST was left to finish in the
    session's cleanup (awaited by ``Client.aclose()``), which logs the id of any job it
    created, records it in the journal for a keyed run, and cancels it remotely.
    """

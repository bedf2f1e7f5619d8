"""Error lines for people: what happened, what to do first, and the route last.

The library's messages lead with the route (``POST /v1/models/{model_id} answered HTTP
401 …``), which suits a log; a person at a shell needs the sentence first. Each line
here reads ``what happened. What to do — ROUTE (request ID)``, built from the error's
attributes, never from guesses; an error this module does not know keeps its own text.
"""

from __future__ import annotations

from .._config import BASE_URL_ENV, TOKEN_ENV, TOKEN_HELP
from .._errors import (
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    ConnectError,
    ConnectTimeoutError,
    DownloadTooLargeError,
    InputValidationError,
    InsufficientBalanceError,
    InvalidInputError,
    JobCancelledError,
    JobFailedError,
    JournalError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ReadTimeoutError,
    RequestTimeoutError,
    RunComfyError,
    ServerError,
    SubmitUncertainError,
    TransportError,
    UnexpectedResponseError,
    WaitTimeoutError,
)

__all__ = ["explain"]

_UNKNOWN_MODEL = 400001


def _where(route: str, request_id: str | None) -> str:
    return f"{route} (request {request_id})" if request_id else route


def _http(exc: APIStatusError) -> str:
    code = f", error_code {exc.error_code}" if exc.error_code is not None else ""
    return f"HTTP {exc.status}{code}"


def _server_says(exc: APIStatusError) -> str:
    return f": {exc.error_message}" if exc.error_message else ""


def _status_line(exc: APIStatusError) -> tuple[str, str]:
    """What happened and what to do, for an error answer."""
    http, says = _http(exc), _server_says(exc)
    if isinstance(exc, AuthenticationError):
        return (
            f"the API token was refused ({http}){says}",
            f"To get a token, {TOKEN_HELP}; then set {TOKEN_ENV} (or pass --token-file PATH)",
        )
    if isinstance(exc, InsufficientBalanceError):
        return (
            f"the account has no balance left for this job ({http}){says}",
            "Add credit to your RunComfy account, then submit again (nothing was charged)",
        )
    if isinstance(exc, PermissionDeniedError):
        return (
            f"this request belongs to another account ({http}){says}",
            f"Check the request id, and that {TOKEN_ENV} is the token that submitted it",
        )
    if isinstance(exc, NotFoundError):
        return (
            f"the API does not know this request, or it has expired ({http}){says}",
            "Check the request id (copy it from the submit's output)",
        )
    if isinstance(exc, BadRequestError) and exc.error_code == _UNKNOWN_MODEL:
        return (
            f"the API does not know this model id ({http}){says}",
            "Check the spelling; `runcomfy models --search WORD` lists the catalog",
        )
    if isinstance(exc, InvalidInputError):
        return (
            f"the API refused the inputs ({http}){says}",
            "Fix the inputs; `runcomfy models MODEL --schema` shows what the model takes",
        )
    if isinstance(exc, RateLimitError):
        wait = f" ({exc.retry_after:g} s, the server says)" if exc.retry_after else ""
        return (
            f"too many requests ({http}){says}",
            f"Wait a little{wait} and try again, or lower batch --concurrency",
        )
    if isinstance(exc, RequestTimeoutError | ServerError):
        return (
            f"RunComfy's server failed ({http}){says}",
            "Try again in a minute; the client already retried what was safe to retry",
        )
    if isinstance(exc, UnexpectedResponseError):
        return (
            f"the API sent an answer that cannot be read ({http}){says}",
            "Try again; if it keeps happening, report it with the route below",
        )
    return f"the API refused the request ({http}){says}", "Check the command's arguments"


def _transport_line(exc: TransportError) -> tuple[str, str]:
    prefix = f"{_where(exc.route, exc.request_id)}: "
    text = str(exc)
    detail = text[len(prefix) :] if text.startswith(prefix) else text
    if isinstance(exc, ConnectError | ConnectTimeoutError):
        return (
            f"could not reach the API ({detail})",
            f"Check your network, and --base-url / {BASE_URL_ENV} if you set one",
        )
    if isinstance(exc, ReadTimeoutError):
        return (
            f"the API did not answer in time ({detail})",
            "Try again; a read that timed out was already retried where safe",
        )
    return f"the connection to the API broke ({detail})", "Try again"


def _job_line(exc: RunComfyError) -> str | None:
    """Errors that already read as a sentence, with the next step added."""
    if isinstance(exc, WaitTimeoutError):
        rid = exc.request_id
        return (
            f"{_sentence(str(exc))} It may still be running: `runcomfy watch {rid}` follows it, "
            f"`runcomfy result {rid}` fetches it"
        )
    if isinstance(exc, JobFailedError | JobCancelledError):
        return f"{_sentence(str(exc))} See it with `runcomfy result {exc.request_id}`"
    if isinstance(exc, SubmitUncertainError):
        return (
            f"{_sentence(str(exc))} Check your RunComfy dashboard for the job before you "
            "submit again" + (f" (request {exc.request_id})" if exc.request_id else "")
        )
    if isinstance(exc, InputValidationError):
        return (
            f"{_sentence(str(exc))} Nothing was sent; fix the input, or pass --no-check "
            "to let the server judge"
        )
    if isinstance(exc, DownloadTooLargeError | JournalError):
        return str(exc)
    return None


def explain(exc: RunComfyError) -> str:
    """The one error line's text (without ``error:``) for a library error.

    Args:
        exc: What a command raised.

    Returns:
        ``what happened. What to do — ROUTE (request ID)`` for API and network errors;
        the error's own sentence plus a next step for the others.
    """
    if isinstance(exc, APIStatusError):
        what, todo = _status_line(exc)
        return f"{_sentence(what)} {todo} — {_where(exc.route, exc.request_id)}"
    if isinstance(exc, TransportError):
        what, todo = _transport_line(exc)
        return f"{_sentence(what)} {todo} — {_where(exc.route, exc.request_id)}"
    return _job_line(exc) or str(exc)


def _sentence(text: str) -> str:
    """End ``text`` with exactly one full stop (a server's message may bring its own)."""
    return text.rstrip().rstrip(".") + "."

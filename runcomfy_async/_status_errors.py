"""An error answer → its typed error: by ``error_code`` first, then by HTTP status.

Shared by every route (:mod:`._transport` maps API answers here; the submit its 2xx that
carry an error code), so one table decides which exception a user catches.
"""

from __future__ import annotations

import email.utils
import time
from typing import Any, Final

from ._errors import (
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    InsufficientBalanceError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RequestTimeoutError,
    ServerError,
)
from ._redact import REDACTED, redact
from ._wire import ErrorEnvelope

__all__ = ["parse_retry_after", "status_error"]

_BY_CODE: Final[dict[int, type[APIStatusError]]] = {
    400001: BadRequestError,
    400002: InsufficientBalanceError,
    400004: AuthenticationError,
    403001: PermissionDeniedError,
    404001: NotFoundError,
}
_BY_STATUS: Final[dict[int, type[APIStatusError]]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: InsufficientBalanceError,
    403: PermissionDeniedError,
    404: NotFoundError,
    408: RequestTimeoutError,
    422: InvalidInputError,
    429: RateLimitError,
}


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def status_error(
    *,
    status: int,
    envelope: ErrorEnvelope | None,
    route: str,
    request_id: str | None,
    retry_after: float | None,
    secret: str | None = None,
) -> APIStatusError:
    """The typed error for an error answer, by its ``error_code`` first, then its status.

    ``secret`` (the token) is replaced by ``[redacted]`` in the server's message and ``detail``.
    """
    code = envelope.error_code if envelope else None
    cls = _BY_CODE.get(code) if code is not None else None
    effective = status
    if status < 300 and code is not None:
        # A 200 carrying an error_code: the code's first three digits are the status.
        effective = code // 1000 if 100 <= code // 1000 <= 599 else 500
    if cls is None:
        cls = _BY_STATUS.get(effective)
    if cls is None:
        cls = ServerError if effective >= 500 else APIStatusError
    message = envelope.text if envelope else None
    detail = envelope.detail if envelope else None
    if secret is not None:
        message = message.replace(secret, REDACTED) if message else message
        detail = redact(detail, secret)
    fields: dict[str, Any] = {
        "route": route,
        "status": status,
        "request_id": request_id,
        "error_code": code,
        "error_message": message,
        "detail": detail,
    }
    if cls is RateLimitError:
        return RateLimitError(retry_after=retry_after, **fields)
    return cls(**fields)

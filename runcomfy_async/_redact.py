"""Keeping the API token out of reprs and out of server text shown to the user.

A server may echo the ``Authorization`` header in an error message (RunComfy's own clients
test for it); a traceback rendered with frame locals shows every header dict on the way.
The transport sends an :class:`AuthHeader` and passes every answer through :func:`redact`.
"""

from __future__ import annotations

from typing import Final

__all__ = ["REDACTED", "AuthHeader", "redact"]

#: What a token is replaced by in server text shown to the user.
REDACTED: Final = "[redacted]"
#: Shorter "tokens" are not redacted: replacing a few common letters would garble every
#: message, and no real token is that short.
_MIN_REDACTED: Final = 6
#: Nesting walked when redacting a ``detail``; deeper parts are dropped, not searched.
_MAX_REDACT_DEPTH: Final = 32


class AuthHeader(str):
    """The ``Authorization`` value: real bytes on the wire, ``'Bearer [redacted]'`` in a repr.

    aiohttp serialises a ``str`` subclass by its ``str`` value, so the request is unchanged;
    but a traceback with frame locals, a debugger or a log of a headers dict shows only
    the redacted repr.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "'Bearer [redacted]'"

    @property
    def secret(self) -> str | None:
        """The token to redact from server text, or None when too short to redact."""
        token = str.__str__(self).removeprefix("Bearer ")
        return token if len(token) >= _MIN_REDACTED else None


def redact(value: object, secret: str | None, depth: int = 0) -> object:
    """``value`` with every occurrence of ``secret`` in its strings replaced by ``[redacted]``."""
    if secret is None:
        return value
    if isinstance(value, str):
        return value.replace(secret, REDACTED)
    if depth >= _MAX_REDACT_DEPTH:
        return "(nested too deeply to show)"
    if isinstance(value, dict):
        return {
            redact(k, secret, depth + 1): redact(v, secret, depth + 1) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(v, secret, depth + 1) for v in value]
    return value

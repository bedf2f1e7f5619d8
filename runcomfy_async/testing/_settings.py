"""Checks and mappings of :class:`~._simulator.Simulator` options, kept out of its face."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Literal, TypeAlias

__all__ = ["ResultStatus", "check_options", "result_words"]

ResultStatus: TypeAlias = Literal["doc", "seen"] | Mapping[str, str]
_SEEN_RESULT_WORDS: Final = {"in_queue": "pending", "in_progress": "processing"}


def result_words(choice: ResultStatus) -> dict[str, str]:
    """Map ``Simulator(result_status=...)`` to the words replacing unfinished states."""
    if choice == "doc":
        return {}
    if choice == "seen":
        return dict(_SEEN_RESULT_WORDS)
    if isinstance(choice, Mapping) and set(choice) <= set(_SEEN_RESULT_WORDS):
        return {str(k): str(v) for k, v in choice.items()}
    raise ValueError(
        f"result_status must be 'doc', 'seen' or a mapping of in_queue / in_progress, "
        f"not {choice!r}"
    )


def check_options(
    token: str,
    unknown_models: str,
    terminal_status: str,
    cancel_running: str,
    retention_seconds: float | None,
) -> None:
    """Reject invalid Simulator options early (the World checks its own)."""
    choices = (
        ("unknown_models", unknown_models, ("accept", "reject")),
        ("terminal_status", terminal_status, ("completed", "outcome")),
        ("cancel_running", cancel_running, ("not_cancellable", "cancellation_requested")),
    )
    for name, value, allowed in choices:
        if value not in allowed:
            raise ValueError(f"{name} must be one of {allowed}, not {value!r}")
    if not token:
        raise ValueError("token must not be empty")
    if retention_seconds is not None and retention_seconds < 0:
        raise ValueError("retention_seconds must be >= 0")

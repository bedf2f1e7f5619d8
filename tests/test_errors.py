"""The error tree: shape, messages, builtin bases, pickling."""

from __future__ import annotations

import pickle

import pytest

import runcomfy_async as rc
from runcomfy_async._wire import decode_result


@pytest.mark.parametrize(
    "exc",
    [
        rc.ConnectError("refused", route="GET /x", request_id="r1"),
        rc.ReadTimeoutError("slow", route="GET /x"),
        rc.RateLimitError(route="GET /x", status=429, retry_after=3.0, error_code=429001),
        rc.NotFoundError(route="GET /x", status=404, request_id="r1", error_message="gone"),
        rc.SubmitUncertainError(model_id="m/x", inputs={"prompt": "p"}, reason="reset"),
        rc.InputValidationError(field="prompt", value="x" * 900, rule="at most 800 characters"),
        rc.WaitTimeoutError("r1", timeout=5, last_status="in_queue"),
        rc.JobCancelledError("r1"),
        rc.JobFailedError(
            decode_result(b'{"request_id": "r1", "status": "failed", "error": "oom"}')
        ),
    ],
)
def test_errors_pickle_with_their_facts(exc: rc.RunComfyError) -> None:
    """Every error survives pickling with its message and attributes."""
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is type(exc)
    assert str(back) == str(exc)
    assert back.__dict__ == exc.__dict__


def test_builtin_bases() -> None:
    """Callers catching builtins catch ours where it makes sense."""
    assert issubclass(rc.WaitTimeoutError, TimeoutError)
    assert issubclass(rc.ReadTimeoutError, TimeoutError)
    assert issubclass(rc.ConnectError, ConnectionError)
    assert issubclass(rc.InputValidationError, ValueError)
    for cls in (rc.TransportError, rc.APIStatusError, rc.JobError, rc.SubmitUncertainError):
        assert issubclass(cls, rc.RunComfyError)


def test_status_error_message_names_everything() -> None:
    """str(exc) names the route, the request id, the status, the code and the message."""
    exc = rc.NotFoundError(
        route="GET /v1/requests/{id}/status",
        status=404,
        request_id="abc",
        error_code=404001,
        error_message="request not found",
    )
    text = str(exc)
    for part in ("GET /v1/requests/{id}/status", "abc", "404", "404001", "request not found"):
        assert part in text


def test_validation_error_truncates_huge_values() -> None:
    """A huge offending value is shortened in the message but kept whole as an attribute."""
    exc = rc.InputValidationError(field="prompt", value="x" * 900, rule="at most 800 characters")
    assert len(str(exc)) < 200
    assert exc.value == "x" * 900


def test_public_all_is_sorted_and_complete() -> None:
    """__all__ is sorted and every name in it exists."""
    assert rc.__all__ == sorted(rc.__all__)
    for name in rc.__all__:
        assert hasattr(rc, name)

"""The backoff maths and the retry loop, without waiting."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runcomfy_async import ConnectError, NetworkError, RateLimitError, RetryPolicy, ServerError
from runcomfy_async._retry import (
    Backpressure,
    backoff_delay,
    is_retryable_read,
    is_retryable_submit,
    retrying,
)
from runcomfy_async._transport import parse_retry_after


def test_backoff_grows_to_the_cap() -> None:
    """Without jitter the ceiling doubles from initial up to max_delay."""
    policy = RetryPolicy(initial=0.5, multiplier=2, max_delay=3, jitter=False)
    assert [backoff_delay(policy, n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


@given(
    retry=st.integers(1, 60),
    rand=st.floats(0, 1),
    initial=st.floats(0, 10),
    multiplier=st.floats(1, 5),
    cap=st.floats(0, 100),
)
def test_full_jitter_stays_within_bounds(
    retry: int, rand: float, initial: float, multiplier: float, cap: float
) -> None:
    """A jittered wait is never negative and never above the ceiling or the cap."""
    policy = RetryPolicy(initial=initial, multiplier=multiplier, max_delay=cap)
    delay = backoff_delay(policy, retry, rand=rand)
    assert 0 <= delay <= min(cap, initial * multiplier ** (retry - 1)) + 1e-9


def test_retry_after_is_honoured_and_capped() -> None:
    """Retry-After wins over the backoff, up to max_retry_after."""
    policy = RetryPolicy(max_retry_after=10)
    assert backoff_delay(policy, 1, retry_after=4) == 4
    assert backoff_delay(policy, 1, retry_after=400) == 10


def test_retry_after_header_forms() -> None:
    """Retry-After is read as seconds or as an HTTP-date; nonsense is ignored."""
    assert parse_retry_after("7") == 7
    assert parse_retry_after("0.25") == 0.25
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


@pytest.mark.parametrize("bad", [{"attempts": 0}, {"initial": -1}, {"multiplier": 0.5}])
def test_policy_rejects_nonsense(bad: dict[str, float]) -> None:
    """A policy that cannot work fails where it is written."""
    with pytest.raises(ValueError, match=next(iter(bad))):
        RetryPolicy(**bad)  # type: ignore[arg-type]


def _err(cls: type, **kw: object) -> object:
    if cls in (ConnectError, NetworkError):
        return cls("x", route="r")
    return cls(route="r", status=kw.pop("status", 500), **kw)


def test_classification_reads_and_submits() -> None:
    """Reads retry on anything transient; submits only when nothing can have been created."""
    connect, reset = _err(ConnectError), _err(NetworkError)
    limited, broken = _err(RateLimitError, status=429), _err(ServerError, status=503)
    assert all(is_retryable_read(e) for e in (connect, reset, limited, broken))  # type: ignore[arg-type]
    assert is_retryable_submit(connect) and is_retryable_submit(limited)  # type: ignore[arg-type]
    assert not is_retryable_submit(reset) and not is_retryable_submit(broken)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_retrying_counts_attempts_and_reports() -> None:
    """A call failing twice then succeeding is made three times, with two hook reports."""
    calls, events = [], []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise _err(ServerError, status=503)  # type: ignore[misc]
        return "ok"

    out = await retrying(
        flaky,
        policy=RetryPolicy(initial=0),
        retryable=is_retryable_read,
        backpressure=Backpressure(),
        route="r",
        hook=events.append,
    )
    assert out == "ok" and len(calls) == 3
    assert [e.retry for e in events] == [1, 2]


@pytest.mark.anyio
async def test_retrying_gives_up_after_attempts() -> None:
    """The last error is raised once the attempts are spent."""
    calls = []

    async def broken() -> None:
        calls.append(1)
        raise _err(ServerError, status=500)  # type: ignore[misc]

    with pytest.raises(ServerError):
        await retrying(
            broken,
            policy=RetryPolicy(attempts=3, initial=0),
            retryable=is_retryable_read,
            backpressure=Backpressure(),
            route="r",
        )
    assert len(calls) == 3


def test_backpressure_pause_never_shortens() -> None:
    """A shorter pause never cuts a longer one short."""
    now = [100.0]
    gate = Backpressure(clock=lambda: now[0])
    gate.pause(5)
    gate.pause(1)
    assert gate.remaining == 5
    now[0] += 5
    assert gate.remaining == 0

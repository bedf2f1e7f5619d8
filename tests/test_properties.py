"""Property tests: backoff maths, status normalisation, and decoders fed arbitrary bodies.

The end-to-end properties run a tiny aiohttp.web app of our own on 127.0.0.1:0 that answers
whatever body, status and headers hypothesis draws, and check that the public client turns
every one of them into a typed value or a :class:`RunComfyError` — never anything else.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import math
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from aiohttp import web
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from runcomfy_async import (
    CancelResult,
    Client,
    JobState,
    ModelInfo,
    PollPolicy,
    Result,
    RetryPolicy,
    RunComfyError,
    Status,
)
from runcomfy_async._poll_budget import TokenBucket
from runcomfy_async._poll_plan import backoff_interval, plan_next
from runcomfy_async._retry import backoff_delay
from runcomfy_async._run_times import RunEstimate, RunTimes
from runcomfy_async._transport import parse_retry_after
from runcomfy_async._wire import (
    decode_cancel,
    decode_error_envelope,
    decode_model_info,
    decode_result,
    decode_status,
    decode_submit,
)

from .conftest import WAN25

RID = "req-0123456789"
DECODE_ERRORS = (msgspec.MsgspecError, ValueError)
KNOWN_WORDS = [
    "in_queue",
    "queued",
    "in_progress",
    "running",
    "completed",
    "succeeded",
    "failed",
    "cancelled",
    "canceled",
]

# --- strategies ----------------------------------------------------------------------------

finite = st.floats(allow_nan=False, allow_infinity=False)
seconds = st.floats(0, 1e6, allow_nan=False)
unit = st.floats(0, 1)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | finite
    | st.text(max_size=20)
    | st.sampled_from([RID, "", "completed", "failed", "https://x.test/a.png", "2025-01-01"])
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=25,
)
FIELDS = [
    "request_id",
    "status",
    "queue_position",
    "output",
    "error",
    "error_code",
    "error_message",
    "message",
    "detail",
    "created_at",
    "finished_at",
    "cost",
    "model_id",
    "outcome",
    "status_url",
    "display_name",
    "base_price_usd",
    "input_schema",
    "image",
    "video",
    "images",
    "videos",
]
# Objects shaped like the API's answers, with every field of any JSON type: these reach far
# deeper into the decoders than random objects do.
shaped = st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=8)


def _nested(depth: int) -> bytes:
    """A body nested ``depth`` levels deep, inside a field every decoder reads."""
    inner = b"[" * depth + b'"x"' + b"]" * depth
    return (
        b'{"request_id":"r1","status":"failed","error_code":500001,'
        b'"error":' + inner + b',"detail":' + inner + b"}"
    )


json_bodies = (
    (json_values | shaped).map(lambda value: json.dumps(value).encode())
    | st.binary(max_size=200)
    | st.integers(1, 3000).map(_nested)
)


@st.composite
def retry_policies(draw: st.DrawFn) -> RetryPolicy:
    """Any valid retry policy, extreme values included."""
    return RetryPolicy(
        attempts=draw(st.integers(1, 10_000)),
        initial=draw(st.floats(0, 1e6)),
        multiplier=draw(st.floats(1, 1e6)),
        max_delay=draw(st.floats(0, 1e6)),
        max_retry_after=draw(st.floats(0, 1e6)),
        jitter=draw(st.booleans()),
    )


@st.composite
def poll_policies(draw: st.DrawFn) -> PollPolicy:
    """Any valid polling policy, extreme values included."""
    return PollPolicy(
        first_interval=draw(st.floats(0, 1e4)),
        growth=draw(st.floats(1, 1e9)),
        max_interval=draw(st.floats(0, 1e4)),
        jitter=draw(unit),
        max_retry_after=draw(st.floats(0, 1e4)),
        learn=draw(st.booleans()),
        finish_interval=draw(st.floats(0, 1e4)),
        max_learned_interval=draw(st.floats(0, 1e4)),
    )


def _ceiling(base: float, factor: float, exponent: int) -> float:
    """``base * factor ** exponent`` without overflowing (inf when it would)."""
    if base == 0:
        return 0.0
    log = math.log(base) + exponent * math.log(factor)
    return math.inf if log > 700 else math.exp(log)


# --- retry backoff -------------------------------------------------------------------------


@given(policy=retry_policies(), retry=st.integers(1, 100_000), rand=unit)
def test_backoff_delay_is_bounded_by_its_ceiling_and_cap(
    policy: RetryPolicy, retry: int, rand: float
) -> None:
    """Any retry number gives a finite wait within [0, min(cap, initial*mult^(n-1))]."""
    delay = backoff_delay(policy, retry, rand=rand)
    ceiling = min(policy.max_delay, _ceiling(policy.initial, policy.multiplier, retry - 1))
    assert math.isfinite(delay)
    assert 0 <= delay <= ceiling * (1 + 1e-9)
    if not policy.jitter:
        assert delay == pytest.approx(ceiling, rel=1e-9)


@given(policy=retry_policies(), retry=st.integers(1, 100_000))
def test_backoff_ceiling_never_shrinks(policy: RetryPolicy, retry: int) -> None:
    """At the same jitter draw, the next retry never waits less than this one."""
    assert backoff_delay(policy, retry, rand=0.7) <= backoff_delay(policy, retry + 1, rand=0.7)


@given(
    policy=retry_policies(),
    retry=st.integers(1, 100),
    retry_after=st.floats(allow_nan=False),
)
def test_retry_after_is_honoured_up_to_its_cap(
    policy: RetryPolicy, retry: int, retry_after: float
) -> None:
    """A Retry-After of any size (even negative or infinite) gives a wait in [0, cap]."""
    delay = backoff_delay(policy, retry, retry_after=retry_after, rand=0.5)
    assert delay == min(max(retry_after, 0.0), policy.max_retry_after)


@given(value=st.text(max_size=40) | st.from_regex(r"-?[0-9.e]{1,8}", fullmatch=True))
def test_retry_after_header_never_raises(value: str) -> None:
    """Any Retry-After header text parses to None or a non-negative, non-NaN number."""
    seconds_ = parse_retry_after(value)
    assert seconds_ is None or (seconds_ >= 0 and not math.isnan(seconds_))


@given(offset=st.integers(-(10**6), 10**6))
def test_retry_after_http_date_counts_from_now(offset: int) -> None:
    """An HTTP-date Retry-After gives the seconds until then (0 when in the past)."""
    when = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=offset)
    parsed = parse_retry_after(email.utils.format_datetime(when, usegmt=True))
    assert parsed is not None
    assert parsed == pytest.approx(max(0.0, when.timestamp() - time.time()), abs=2.0)


# --- polling plans -------------------------------------------------------------------------


@given(policy=poll_policies(), step=st.integers(-10, 10**6), rand=unit)
def test_poll_backoff_is_bounded_and_only_shortened_by_jitter(
    policy: PollPolicy, step: int, rand: float
) -> None:
    """A plain poll interval is within [(1-jitter)*ceiling, ceiling], ceiling capped."""
    wait = backoff_interval(policy, step, rand=rand)
    ceiling = min(policy.max_interval, _ceiling(policy.first_interval, policy.growth, max(step, 0)))
    assert math.isfinite(wait)
    assert ceiling * (1 - policy.jitter) * (1 - 1e-9) <= wait <= ceiling * (1 + 1e-9)


@given(policy=poll_policies(), step=st.integers(-10, 10**6), rand=unit)
def test_poll_backoff_never_shrinks(policy: PollPolicy, step: int, rand: float) -> None:
    """At the same jitter draw, one more poll without a transition never waits less."""
    assert backoff_interval(policy, step, rand=rand) <= backoff_interval(
        policy, step + 1, rand=rand
    )


@st.composite
def plans(draw: st.DrawFn) -> tuple[PollPolicy, float, dict[str, Any]]:
    """A policy, a time, and any combination of what the watcher may know of a job."""
    policy = draw(poll_policies())
    now = draw(st.floats(0, 1e7))
    start_lo = draw(st.floats(0, 1e7))
    started = (start_lo, start_lo + draw(seconds)) if draw(st.booleans()) else None
    low = draw(seconds)
    estimate = RunEstimate(low, low + draw(seconds), draw(st.integers(1, 32)))
    known = {
        "state": draw(st.none() | st.sampled_from(JobState)),
        "step": draw(st.integers(0, 10**6)),
        "failures": draw(st.integers(0, 100)),
        "retry_after": draw(st.none() | seconds),
        "started": started,
        "position": draw(st.none() | st.integers(-5, 10**6)),
        "estimate": draw(st.none() | st.just(estimate)),
        "drain": draw(st.none() | st.floats(0, 1e6)),
        "rand": draw(unit),
    }
    return policy, now, known


@given(case=plans())
def test_next_poll_is_never_in_the_past_nor_past_every_cap(
    case: tuple[PollPolicy, float, dict[str, Any]],
) -> None:
    """A plan is due at or after now, finite, and no later than the largest cap allows."""
    policy, now, known = case
    plan = plan_next(policy, now, **known)
    wait = plan.at - now
    hinted = known["retry_after"] if known["failures"] else None
    honoured = 0.0 if hinted is None else min(hinted, policy.max_retry_after)
    cap = max(
        policy.max_interval,
        policy.max_learned_interval,
        policy.finish_interval,
        honoured,
    )
    assert math.isfinite(plan.at) and math.isfinite(plan.key)
    assert -1e-6 <= wait <= cap + 1e-6 * max(1.0, now)
    if known["failures"]:
        assert wait >= honoured - 1e-6 * max(1.0, now)


@given(
    policy=poll_policies(),
    start=st.floats(0, 1e6),
    spread=seconds,
    low=seconds,
    width=seconds,
    where=unit,
    step=st.integers(0, 10**6),
    rand=unit,
)
def test_learned_plan_polls_densely_inside_the_finish_window(
    policy: PollPolicy,
    start: float,
    spread: float,
    low: float,
    width: float,
    where: float,
    step: int,
    rand: float,
) -> None:
    """While a running job is inside its expected finish window, polls come every interval."""
    assume(policy.learn)
    started, estimate = (start, start + spread), RunEstimate(low, low + width, 3)
    first, last = started[0] + estimate.low, started[1] + estimate.high
    now = min(last, first + where * (last - first))
    plan = plan_next(
        policy,
        now,
        state=JobState.IN_PROGRESS,
        step=step,
        started=started,
        estimate=estimate,
        rand=rand,
    )
    assert 0 <= plan.at - now <= policy.finish_interval + 1e-6 * max(1.0, now)


@given(
    runs=st.lists(st.tuples(st.floats(allow_nan=True), st.floats(allow_nan=True)), max_size=50),
    drains=st.lists(st.floats(allow_nan=True), max_size=20),
)
def test_learned_run_times_stay_sane(runs: list[tuple[float, float]], drains: list[float]) -> None:
    """Whatever samples arrive (NaN, negative, infinite), estimates are finite and ordered."""
    times = RunTimes()
    for shortest, longest in runs:
        times.record_run(WAN25, shortest, longest)
    for drain in drains:
        times.record_drain(WAN25, drain)
    estimate = times.estimate(WAN25)
    if estimate is not None:
        assert 0 <= estimate.low <= estimate.high < math.inf
        assert 1 <= estimate.samples <= 32
    learned = times.drain(WAN25)
    assert learned is None or 0 < learned < math.inf


@given(
    rate=st.floats(0.01, 1e4),
    burst=st.integers(1, 1000),
    steps=st.lists(st.floats(0, 10), max_size=200),
)
def test_token_bucket_never_grants_beyond_rate_and_burst(
    rate: float, burst: int, steps: list[float]
) -> None:
    """Over any span, grants are at most burst + rate * elapsed; waits are never negative."""
    now = 1000.0
    bucket = TokenBucket(rate, burst, now)
    granted = 0
    for step in steps:
        now += step
        granted += bucket.take(now)
        assert bucket.wait_time(now) >= 0
    assert granted <= burst + rate * (now - 1000.0) + 1e-6


# --- status normalisation ------------------------------------------------------------------


@given(word=st.text() | st.sampled_from(KNOWN_WORDS))
def test_any_status_word_normalises_to_a_state(word: str) -> None:
    """Any /status or /result word becomes a JobState; none raises."""
    status = Status(request_id=RID, status=word)
    assert isinstance(status.state, JobState)
    body = json.dumps({"request_id": RID, "status": word}).encode()
    assert isinstance(decode_status(body).state, JobState)
    result = decode_result(body)
    assert isinstance(result.status, JobState)
    assert result.raw_status == word


@given(word=st.sampled_from(KNOWN_WORDS), flips=st.lists(st.booleans(), min_size=12))
def test_known_words_normalise_whatever_their_case(word: str, flips: list[bool]) -> None:
    """Case does not change what a documented status word means."""
    mixed = "".join(c.upper() if flip else c for c, flip in zip(word, flips, strict=False))
    assert Status(request_id=RID, status=mixed).state is Status(request_id=RID, status=word).state
    assert Status(request_id=RID, status=word).state is not JobState.UNKNOWN


# --- decoders ------------------------------------------------------------------------------


@settings(max_examples=200)
@given(body=json_bodies)
def test_decoders_raise_only_decode_errors(body: bytes) -> None:
    """Any body makes each decoder return its type or raise a msgspec or ValueError only."""
    decoders: list[Callable[[bytes], object]] = [
        decode_submit,
        decode_status,
        decode_result,
        decode_model_info,
        lambda raw: decode_cancel(raw, RID),
    ]
    for decode in decoders:
        try:
            value = decode(body)
        except DECODE_ERRORS:
            continue
        if isinstance(value, Result):
            assert isinstance(value.status, JobState)
            assert value.error_text is None or isinstance(value.error_text, str)
            assert value.output is None or isinstance(value.output.urls, tuple)
    envelope = decode_error_envelope(body)
    assert envelope is None or envelope.text is None or isinstance(envelope.text, str)


# --- end to end: the whole client against arbitrary answers --------------------------------


class Answers:
    """What the test server answers next, per route: (HTTP status, body, headers)."""

    def __init__(self) -> None:
        self.by_route: dict[str, tuple[int, bytes, dict[str, str]]] = {}

    def set(self, route: str, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.by_route[route] = (status, body, headers)


def _app(answers: Answers) -> web.Application:
    def handler(route: str) -> Callable[[web.Request], Any]:
        async def answer(request: web.Request) -> web.Response:
            await request.read()
            status, body, headers = answers.by_route.get(route, (404, b"{}", {}))
            return web.Response(status=status, body=body, headers=headers)

        return answer

    app = web.Application()
    app.router.add_post("/v1/models/{model_id:.+}", handler("submit"))
    app.router.add_get("/v1/models/{model_id:.+}", handler("model"))
    app.router.add_get("/v1/requests/{rid}/status", handler("status"))
    app.router.add_get("/v1/requests/{rid}/result", handler("result"))
    app.router.add_post("/v1/requests/{rid}/cancel", handler("cancel"))
    return app


@pytest.fixture
async def wild(anyio_backend: str) -> AsyncIterator[tuple[Answers, Client]]:
    """A server of our own answering whatever the test sets, and a client pointed at it."""
    answers = Answers()
    runner = web.AppRunner(_app(answers), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    fast = RetryPolicy(attempts=2, initial=0.0, max_retry_after=0.0)
    polling = PollPolicy(
        first_interval=0.0,
        max_interval=0.0,
        requests_per_second=1e6,
        burst=1000,
        max_consecutive_failures=3,
        max_retry_after=0.0,
    )
    try:
        async with Client(token="wild-token", base_url=url, retry=fast, polling=polling) as c:
            yield answers, c
    finally:
        await runner.cleanup()


#: 200 thrice: most answers that reach the decoders are successes.
HTTP_STATUSES: tuple[int, ...] = (
    200,
    200,
    200,
    201,
    202,
    204,
    301,
    302,
    307,
    400,
    401,
    402,
    403,
    404,
)
HTTP_STATUSES += (408, 418, 422, 429, 500, 502, 503, 599)
http_statuses = st.sampled_from(HTTP_STATUSES)
header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30)
extra_headers = st.fixed_dictionaries(
    {},
    optional={
        "Retry-After": header_text,
        "Location": header_text,
        "Content-Type": st.sampled_from(["application/json", "text/html", "x/y"]),
        "Content-Encoding": st.sampled_from(["gzip", "br", "identity"]),
    },
)
answers_st = st.tuples(http_statuses, json_bodies, extra_headers)
WILD = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.mark.anyio
@WILD
@given(answer=answers_st)
async def test_any_answer_to_a_call_is_typed(
    wild: tuple[Answers, Client], answer: tuple[int, bytes, dict[str, str]]
) -> None:
    """Whatever a route answers, submit/status/result/cancel/model_info return or raise typed."""
    answers, client = wild
    calls: dict[str, tuple[Callable[[], Any], type]] = {
        "submit": (lambda: client.submit(WAN25, {"prompt": "p"}), object),
        "status": (lambda: client.status(RID), Status),
        "result": (lambda: client.result(RID), Result),
        "cancel": (lambda: client.cancel(RID), CancelResult),
        "model": (lambda: client.model_info(WAN25), ModelInfo),
    }
    for route, (call, kind) in calls.items():
        answers.set(route, *answer)
        try:
            value = await call()
        except RunComfyError:
            continue
        assert isinstance(value, kind)


@pytest.mark.anyio
@WILD
@given(result=answers_st, status_word=st.sampled_from(["completed", "failed", "succeeded"]))
async def test_any_result_after_a_finished_status_ends_a_wait_typed(
    wild: tuple[Answers, Client], result: tuple[int, bytes, dict[str, str]], status_word: str
) -> None:
    """A finished /status followed by any /result ends wait() in a Result or a RunComfyError."""
    answers, client = wild
    status_body = json.dumps({"request_id": RID, "status": status_word}).encode()
    answers.set("status", 200, status_body, {})
    answers.set("result", *result)
    try:
        value = await client.wait(RID)
    except RunComfyError:
        return
    assert value.status is JobState.SUCCEEDED


@pytest.mark.anyio
@WILD
@given(status=answers_st)
async def test_any_status_answer_ends_a_wait_typed(
    wild: tuple[Answers, Client], status: tuple[int, bytes, dict[str, str]]
) -> None:
    """Any /status answer ends a bounded wait in a Result or a RunComfyError."""
    answers, client = wild
    answers.set("status", *status)
    answers.set("result", 200, json.dumps({"request_id": RID, "status": "failed"}).encode(), {})
    with contextlib.suppress(RunComfyError):
        await client.wait(RID, timeout=0.05)

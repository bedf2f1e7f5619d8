"""Golden payloads, written from runcomfy-api.md by hand, decode into the typed structs."""

from __future__ import annotations

from datetime import timedelta

import msgspec
import pytest

from runcomfy_async import JobState, Output
from runcomfy_async._wire import (
    decode_cancel,
    decode_error_envelope,
    decode_result,
    decode_status,
    decode_submit,
)

SUBMIT = b"""{"request_id": "0f6e1c1e-7d2b-4c1a-9a57-3c9b2f1e8a11",
 "status_url": "https://model-api.runcomfy.net/v1/requests/0f6e/status",
 "result_url": "https://model-api.runcomfy.net/v1/requests/0f6e/result",
 "cancel_url": "https://model-api.runcomfy.net/v1/requests/0f6e/cancel"}"""


def test_submit_answer_decodes() -> None:
    """The documented submit answer gives the id and the three URLs."""
    answer = decode_submit(SUBMIT)
    assert answer.request_id == "0f6e1c1e-7d2b-4c1a-9a57-3c9b2f1e8a11"
    assert answer.cancel_url is not None and answer.cancel_url.endswith("/cancel")


@pytest.mark.parametrize(
    "body",
    [b'{"status_url": "x"}', b'{"request_id": ""}', b'{"request_id": "../x"}', b"[]", b"nope"],
)
def test_submit_without_usable_id_is_refused(body: bytes) -> None:
    """A 2xx without a usable request_id cannot be decoded as a submit answer."""
    with pytest.raises((msgspec.MsgspecError, ValueError)):
        decode_submit(body)


@pytest.mark.parametrize(
    ("word", "state"),
    [
        ("in_queue", JobState.IN_QUEUE),
        ("in_progress", JobState.IN_PROGRESS),
        ("completed", JobState.COMPLETED),
        ("cancelled", JobState.CANCELLED),
        ("canceled", JobState.CANCELLED),
        ("succeeded", JobState.SUCCEEDED),
        ("failed", JobState.FAILED),
        ("paused", JobState.UNKNOWN),
    ],
)
def test_status_vocabulary_is_normalised(word: str, state: JobState) -> None:
    """Every documented and liberal /status word maps to one JobState; others are UNKNOWN."""
    body = b'{"request_id": "r1", "status": "%s"}' % word.encode()
    assert decode_status(body).state is state


def test_status_queue_position_and_unknown_fields() -> None:
    """queue_position is read (even as a string) and unknown fields are ignored."""
    body = b'{"request_id": "r1", "status": "in_queue", "queue_position": "3", "eta": 12}'
    status = decode_status(body)
    assert status.queue_position == 3
    assert not status.state.is_terminal


def test_result_object_output() -> None:
    """The Wan output object fills image, video, images, videos and urls in order; raw is kept."""
    body = b"""{"request_id": "r1", "status": "succeeded",
      "output": {"image": "https://s/a.png", "videos": ["https://s/a.mp4", "https://s/b.mp4"]},
      "created_at": "2026-01-02T03:04:05+00:00", "finished_at": "2026-01-02T03:05:05Z",
      "cost": 0.25, "model_id": "wan-ai/wan-2-5/image-to-video", "extra": {"x": 1}}"""
    result = decode_result(body)
    assert result.status is JobState.SUCCEEDED
    assert result.output == Output(
        raw={"image": "https://s/a.png", "videos": ["https://s/a.mp4", "https://s/b.mp4"]},
        image="https://s/a.png",
        images=("https://s/a.png",),
        video="https://s/a.mp4",
        videos=("https://s/a.mp4", "https://s/b.mp4"),
    )
    assert result.output.urls == ("https://s/a.png", "https://s/a.mp4", "https://s/b.mp4")
    assert result.created_at is not None and result.finished_at is not None
    assert result.finished_at - result.created_at == timedelta(minutes=1)
    assert result.cost == 0.25


def test_result_bare_url_and_list_outputs() -> None:
    """A bare URL string and a list of URLs are accepted; shortcuts go by extension."""
    bare = decode_result(b'{"request_id": "r", "status": "succeeded", "output": "https://s/v.mp4"}')
    assert bare.output is not None and bare.output.video == "https://s/v.mp4"
    listed = decode_result(
        b'{"request_id": "r", "status": "succeeded", "output": ["https://s/i.png?x=1", "https://s/f.bin"]}'
    )
    assert listed.output is not None
    assert listed.output.image == "https://s/i.png?x=1"
    assert listed.output.urls == ("https://s/i.png?x=1", "https://s/f.bin")


@pytest.mark.parametrize(
    ("error", "text"),
    [
        (b'"out of memory"', "out of memory"),
        (b'{"code": 7, "message": "bad image"}', "bad image"),
        (b'[{"message": "a"}, "b"]', "a; b"),
        (b'{"code": 7}', '{"code":7}'),
    ],
)
def test_result_error_of_any_shape(error: bytes, text: str) -> None:
    """A failure's error is kept verbatim and readable as one line, whatever its shape."""
    result = decode_result(b'{"request_id": "r", "status": "failed", "error": %s}' % error)
    assert result.status is JobState.FAILED
    assert result.output is None
    assert result.error_text == text


def test_result_while_unfinished() -> None:
    """An unfinished job's result has its current status and no output."""
    result = decode_result(b'{"request_id": "r", "status": "in_progress"}')
    assert result.status is JobState.IN_PROGRESS and result.output is None


def test_result_odd_dates_and_cost_do_not_crash() -> None:
    """Unparseable timestamps and costs become None instead of an exception."""
    result = decode_result(
        b'{"request_id": "r", "status": "succeeded", "created_at": "yesterday", "cost": "n/a"}'
    )
    assert result.created_at is None and result.cost is None
    assert decode_result(b'{"request_id": "r", "status": "succeeded", "cost": "0.5"}').cost == 0.5


@pytest.mark.parametrize(
    "outcome", ["cancelled", "not_cancellable", "cancellation_requested", "weird"]
)
def test_cancel_outcomes_kept_verbatim(outcome: str) -> None:
    """Any cancel outcome string is kept as is; a ``cancelled`` status confirms the cancel."""
    body = b'{"request_id": "r", "status": "cancelled", "outcome": "%s"}' % outcome.encode()
    answer = decode_cancel(body, "r")
    assert answer.outcome == outcome
    assert answer.cancelled
    alone = decode_cancel(b'{"request_id": "r", "outcome": "%s"}' % outcome.encode(), "r")
    assert alone.outcome == outcome
    assert alone.cancelled is (outcome == "cancelled")


def test_cancel_documented_invalid_json_is_read() -> None:
    """The doc's cancel example is not valid JSON; its outcome is still read."""
    body = b'{"request_id": "r", "status": "cancelled", "outcome": "cancelled",}'
    assert decode_cancel(body, "r").outcome == "cancelled"


def test_error_envelope_message_precedence() -> None:
    """The message comes from error_message, then message, then error, then detail."""
    env = decode_error_envelope(b'{"error_code": "404001", "message": "m", "detail": "d"}')
    assert env is not None and env.error_code == 404001 and env.text == "m"
    env = decode_error_envelope(b'{"detail": {"message": "deep"}}')
    assert env is not None and env.text == "deep"
    assert decode_error_envelope(b"<html>") is None

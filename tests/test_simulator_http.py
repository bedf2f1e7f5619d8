"""The simulator over real HTTP: every route, error shape and fault kind, via plain aiohttp.

Expected bodies are written from ``runcomfy-api.md``, not from the client's structs.
"""

from __future__ import annotations

import asyncio
import base64
import re
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from runcomfy_async.testing import Fault, FaultKind, JobScript, Simulator
from runcomfy_async.testing._assets import MP4_BYTES, PNG_BYTES, make_png

pytestmark = pytest.mark.anyio

WAN25 = "wan-ai/wan-2-5/image-to-video"
WAN22 = "wan-ai/wan-2-2/image-to-video"
GOOD = {"prompt": "a red fox running through snow", "img_url": "https://example.com/fox.png"}


@pytest.fixture
async def http(anyio_backend: str) -> AsyncIterator[aiohttp.ClientSession]:
    """A plain aiohttp session with no connection reuse, so every request is seen afresh."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s:
        yield s


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.t = 50.0

    def __call__(self) -> float:
        return self.t


async def call(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    token: str | None = "test-token",
    **kwargs: Any,
) -> tuple[int, Any, Any]:
    headers = dict(kwargs.pop("headers", {}))
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with http.request(method, url, headers=headers, allow_redirects=False, **kwargs) as r:
        raw = await r.read()
        try:
            body: Any = await r.json(content_type=None) if raw else None
        except ValueError:
            body = raw
        return r.status, body, r.headers


async def submit(http: aiohttp.ClientSession, sim: Simulator, inputs: Any = None) -> str:
    status, body, _ = await call(http, "POST", f"{sim.url}/v1/models/{WAN25}", json=inputs or GOOD)
    assert status == 200, body
    return str(body["request_id"])


def req_url(sim: Simulator, rid: str, route: str) -> str:
    return f"{sim.url}/v1/requests/{rid}/{route}"


def assert_envelope(body: Any, code: int) -> None:
    assert set(body) == {"error_code", "error_message", "detail"}
    assert body["error_code"] == code
    assert isinstance(body["error_message"], str)
    assert body["error_message"]


# --- submit ---------------------------------------------------------------------------------


async def test_submit_answers_id_and_absolute_urls(
    runcomfy_sim: Simulator, http: aiohttp.ClientSession
) -> None:
    """Submit answers exactly request_id + three absolute URLs on the API origin."""
    sim = runcomfy_sim
    status, body, _ = await call(http, "POST", f"{sim.url}/v1/models/{WAN25}", json=GOOD)
    assert status == 200
    rid = body["request_id"]
    assert uuid.UUID(rid).version == 4
    assert body == {
        "request_id": rid,
        "status_url": f"{sim.url}/v1/requests/{rid}/status",
        "result_url": f"{sim.url}/v1/requests/{rid}/result",
        "cancel_url": f"{sim.url}/v1/requests/{rid}/cancel",
    }
    record = sim.log[-1]
    assert (record.route, record.method, record.request_id, record.model_id) == (
        "submit",
        "POST",
        rid,
        WAN25,
    )
    assert record.body is not None
    assert b"red fox" in record.body
    assert sim.job(rid).inputs == GOOD


async def test_unknown_models_are_opaque_or_rejected(http: aiohttp.ClientSession) -> None:
    """A multi-segment unknown model is accepted as is with unknown_models='accept', else 400001."""
    inputs = {"image_urls": ["https://x/y.png"], "resolution": "720p"}
    async with Simulator(unknown_models="accept") as sim:
        status, body, _ = await call(http, "POST", f"{sim.url}/v1/models/a/b/c/d", json=inputs)
        assert status == 200
        view = sim.job(body["request_id"])
        assert (view.model_id, view.inputs) == ("a/b/c/d", inputs)
    async with Simulator() as sim:
        status, body, _ = await call(http, "POST", f"{sim.url}/v1/models/a/b/c/d", json=inputs)
        assert status == 400
        assert_envelope(body, 400001)
        assert sim.stats.jobs_created == 0


@pytest.mark.parametrize("raw", [b"not json", b"[1, 2]", b"", b'"text"'])
async def test_submit_body_must_be_a_json_object(
    runcomfy_sim: Simulator, http: aiohttp.ClientSession, raw: bytes
) -> None:
    """A body that is not a JSON object is a 400 envelope and creates nothing."""
    url = f"{runcomfy_sim.url}/v1/models/{WAN25}"
    status, body, _ = await call(http, "POST", url, data=raw)
    assert status == 400
    assert_envelope(body, 400000)
    assert runcomfy_sim.stats.jobs_created == 0


def _png_uri(width: int, height: int) -> str:
    return "data:image/png;base64," + base64.b64encode(make_png(width, height)).decode()


@pytest.mark.parametrize(
    ("model", "patch", "field", "rule"),
    [
        (WAN25, {"prompt": None}, "prompt", "type"),
        (WAN25, {"prompt": "x" * 801}, "prompt", "maxLength"),
        (WAN25, {"img_url": "file:///etc/passwd"}, "img_url", "format"),
        (WAN25, {"img_url": _png_uri(2001, 400)}, "img_url", "width_pixels<"),
        (WAN25, {"img_url": _png_uri(400, 300)}, "img_url", "height_pixels>"),
        (WAN25, {"duration": 7}, "duration", "enum"),
        (WAN25, {"resolution": "720p"}, "resolution", "enum"),
        (WAN22, {"resolution": "720P"}, "resolution", "enum"),
        (WAN22, {"negative_prompt": "n" * 501}, "negative_prompt", "maxLength"),
        (WAN22, {"seed": "42"}, "seed", "type"),
        (WAN22, {"prompt_extend": "yes"}, "prompt_extend", "type"),
    ],
)
async def test_schema_violations_are_422(
    runcomfy_sim: Simulator,
    http: aiohttp.ClientSession,
    model: str,
    patch: dict[str, Any],
    field: str,
    rule: str,
) -> None:
    """Seed-model inputs that break the schema answer 422 / 422001 naming field and rule."""
    inputs = {**GOOD, **patch}
    status, body, _ = await call(http, "POST", f"{runcomfy_sim.url}/v1/models/{model}", json=inputs)
    assert status == 422
    assert_envelope(body, 422001)
    assert {"field": field, "rule": rule} in [
        {"field": v["field"], "rule": v["rule"]} for v in body["detail"]
    ]
    assert field in body["error_message"]
    assert runcomfy_sim.stats.jobs_created == 0


async def test_valid_data_uri_and_extra_keys_are_accepted(
    runcomfy_sim: Simulator, http: aiohttp.ClientSession
) -> None:
    """A PNG data URI within bounds and unknown extra keys pass validation."""
    inputs = {**GOOD, "img_url": _png_uri(480, 480), "whatever": [1], "seed": 3}
    url = f"{runcomfy_sim.url}/v1/models/{WAN22}"
    assert (await call(http, "POST", url, json=inputs))[0] == 200
    missing = {"prompt": "p"}
    status, body, _ = await call(http, "POST", url, json=missing)
    assert (status, body["detail"][0]["rule"]) == (422, "required")


# --- auth -----------------------------------------------------------------------------------


@pytest.mark.parametrize("header", [None, "Bearer nope", "Basic test-token", "test-token"])
async def test_bad_auth_is_401_400004(
    runcomfy_sim: Simulator, http: aiohttp.ClientSession, header: str | None
) -> None:
    """Missing or wrong credentials answer 401 with error_code 400004 on every route."""
    sim = runcomfy_sim
    rid = await submit(http, sim)
    headers = {} if header is None else {"Authorization": header}
    for method, url in [
        ("POST", f"{sim.url}/v1/models/{WAN25}"),
        ("GET", req_url(sim, rid, "status")),
        ("GET", req_url(sim, rid, "result")),
        ("POST", req_url(sim, rid, "cancel")),
        ("GET", f"{sim.url}/v1/models/{WAN25}"),
        ("GET", f"{sim.url}/v1/models"),
    ]:
        status, body, _ = await call(http, method, url, token=None, headers=headers, json={})
        assert status == 401, url
        assert_envelope(body, 400004)
        assert sim.log[-1].authorization == header
    assert sim.stats.jobs_created == 1
    assert sim.job(rid).polls == 0


async def test_another_accounts_job_is_403001(
    runcomfy_sim: Simulator, http: aiohttp.ClientSession
) -> None:
    """A job read or cancelled with another valid token answers 403 / 403001."""
    sim = runcomfy_sim
    rid = await submit(http, sim)
    for method, route in [("GET", "status"), ("GET", "result"), ("POST", "cancel")]:
        status, body, _ = await call(http, method, req_url(sim, rid, route), token="other-token")
        assert status == 403
        assert_envelope(body, 403001)
    assert sim.job(rid).state == "in_queue"
    assert sim.job(rid).token == "test-token"


# --- status / result ------------------------------------------------------------------------


async def test_status_follows_the_script(http: aiohttp.ClientSession) -> None:
    """Status polls walk the script; queue_position is present only while queued."""
    async with Simulator(script=JobScript(queue_polls=2, run_polls=1)) as sim:
        rid = await submit(http, sim)
        seen = []
        for _ in range(5):
            status, body, _ = await call(http, "GET", req_url(sim, rid, "status"))
            assert status == 200
            assert body["status_url"] == req_url(sim, rid, "status")
            assert body["result_url"] == req_url(sim, rid, "result")
            assert body["request_id"] == rid
            seen.append((body["status"], body.get("queue_position", "absent")))
        assert seen == [
            ("in_queue", 2),
            ("in_queue", 1),
            ("in_progress", "absent"),
            ("completed", "absent"),
            ("completed", "absent"),
        ]
        assert sim.count("status", request_id=rid) == 5
        assert sim.count(method="GET") == 5


@pytest.mark.parametrize(
    ("terminal", "outcome", "word"),
    [
        ("completed", "failed", "completed"),
        ("completed", "cancelled", "cancelled"),
        ("outcome", "failed", "failed"),
        ("outcome", "succeeded", "succeeded"),
    ],
)
async def test_terminal_status_words(
    http: aiohttp.ClientSession, terminal: Any, outcome: Any, word: str
) -> None:
    """Finished jobs read 'completed' (as documented) or their outcome word, per option."""
    script = JobScript(queue_polls=0, run_polls=0, outcome=outcome)
    async with Simulator(script=script, terminal_status=terminal) as sim:
        rid = await submit(http, sim)
        _, body, _ = await call(http, "GET", req_url(sim, rid, "status"))
        assert body["status"] == word


async def test_status_sequence_serves_raw_words(http: aiohttp.ClientSession) -> None:
    """status_sequence lets tests serve unknown and liberal status words."""
    script = JobScript(status_sequence=["paused", "succeeded", "canceled"])
    async with Simulator(script=script) as sim:
        rid = await submit(http, sim)
        words = [
            (await call(http, "GET", req_url(sim, rid, "status")))[1]["status"] for _ in "abcd"
        ]
        assert words == ["paused", "succeeded", "canceled", "canceled"]


async def test_result_while_unfinished_is_200_without_output(
    runcomfy_sim: Simulator, http: aiohttp.ClientSession
) -> None:
    """An unfinished job's result is 200 with its status and no output, finished_at or cost."""
    sim = runcomfy_sim
    rid = await submit(http, sim)
    status, body, _ = await call(http, "GET", req_url(sim, rid, "result") + "?include_cost=true")
    assert status == 200
    assert set(body) == {"request_id", "status", "created_at", "model_id"}
    assert body["status"] == "in_queue"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00", body["created_at"])
    assert sim.job(rid).state == "in_queue"  # result never advances the clock


@pytest.mark.parametrize("error", ["boom", {"code": "NSFW", "message": "no"}, ["a", "b"]])
async def test_failed_result_carries_error_verbatim(
    http: aiohttp.ClientSession, error: object
) -> None:
    """A failed job's result has status failed and the scripted error, any JSON shape."""
    async with Simulator(
        script=JobScript(queue_polls=0, run_polls=0, outcome="failed", error=error)
    ) as sim:
        rid = await submit(http, sim)
        _, body, _ = await call(http, "GET", req_url(sim, rid, "result"))
        assert body["status"] == "failed"
        assert body["error"] == error
        assert "output" not in body
        assert "finished_at" in body


async def test_succeeded_result_outputs_and_cost(http: aiohttp.ClientSession) -> None:
    """Output shapes follow the script, URLs point at the storage origin, cost on request."""
    async with Simulator(script=JobScript(queue_polls=0, run_polls=0, cost=1.5)) as sim:
        assert sim.storage_url != sim.url
        sim.script_next(JobScript(queue_polls=0, run_polls=0, output_files=("a.png", "b.mp4")))
        sim.script_next(JobScript(queue_polls=0, run_polls=0, output="url"))
        sim.script_next(JobScript(queue_polls=0, run_polls=0, output="list"))
        sim.script_next(
            JobScript(queue_polls=0, run_polls=0, output={"video": "{storage}/x/{request_id}.mp4"})
        )
        ids = [await submit(http, sim) for _ in range(5)]
        outputs = [(await call(http, "GET", req_url(sim, r, "result")))[1]["output"] for r in ids]
        base = f"{sim.storage_url}/files"
        assert outputs[0] == {
            "image": f"{base}/{ids[0]}/a.png",
            "images": [f"{base}/{ids[0]}/a.png"],
            "video": f"{base}/{ids[0]}/b.mp4",
            "videos": [f"{base}/{ids[0]}/b.mp4"],
        }
        assert outputs[1] == f"{base}/{ids[1]}/output.mp4"
        assert outputs[2] == [f"{base}/{ids[2]}/output.mp4"]
        assert outputs[3] == {"video": f"{sim.storage_url}/x/{ids[3]}.mp4"}
        default = f"{base}/{ids[4]}/output.mp4"
        assert outputs[4] == {"video": default, "videos": [default]}
        _, body, _ = await call(http, "GET", req_url(sim, ids[4], "result?include_cost=true"))
        assert body["cost"] == 1.5
        assert body["model_id"] == WAN25
        assert body["finished_at"] >= body["created_at"]
        _, body, _ = await call(http, "GET", req_url(sim, ids[4], "result?include_cost=false"))
        assert "cost" not in body


# --- cancel ---------------------------------------------------------------------------------


async def test_cancel_rules(http: aiohttp.ClientSession) -> None:
    """Queued: cancelled. Running: not_cancellable. Finished: a 202 no-op."""
    async with Simulator(script=JobScript(queue_polls=1, run_polls=2)) as sim:
        queued, running, done = [await submit(http, sim) for _ in range(3)]
        sim.advance(running)
        sim.advance(done, 3)
        answers = [
            (await call(http, "POST", req_url(sim, r, "cancel")))[:2]
            for r in (queued, running, done)
        ]
        assert answers == [
            (202, {"request_id": queued, "status": "cancelled", "outcome": "cancelled"}),
            (202, {"request_id": running, "status": "in_progress", "outcome": "not_cancellable"}),
            (202, {"request_id": done, "status": "completed", "outcome": "not_cancellable"}),
        ]
        _, body, _ = await call(http, "GET", req_url(sim, queued, "result"))
        assert body["status"] == "cancelled"
        assert "finished_at" in body


async def test_cancel_running_can_answer_cancellation_requested(
    http: aiohttp.ClientSession,
) -> None:
    """cancel_running='cancellation_requested' answers so, and the job still completes."""
    script = JobScript(queue_polls=0, run_polls=1)
    async with Simulator(script=script, cancel_running="cancellation_requested") as sim:
        rid = await submit(http, sim)
        _, body, _ = await call(http, "POST", req_url(sim, rid, "cancel"))
        assert body["outcome"] == "cancellation_requested"
        sim.advance(rid)
        assert (await call(http, "GET", req_url(sim, rid, "result")))[1]["status"] == "succeeded"


# --- unknown, expired -----------------------------------------------------------------------


async def test_unknown_and_expired_ids_are_404001(
    runcomfy_sim: Simulator, http: aiohttp.ClientSession
) -> None:
    """Unknown or expired ids answer 404 / 404001 on every job route, and files vanish too."""
    sim = runcomfy_sim
    rid = await submit(http, sim)
    file_url = f"{sim.storage_url}/files/{rid}/output.mp4"
    assert (await call(http, "GET", file_url, token=None))[0] == 200
    sim.expire(rid)
    for target in (rid, "no-such-id"):
        for method, route in [("GET", "status"), ("GET", "result"), ("POST", "cancel")]:
            status, body, _ = await call(http, method, req_url(sim, target, route))
            assert status == 404
            assert_envelope(body, 404001)
    assert (await call(http, "GET", file_url, token=None))[0] == 404


async def test_retention_expires_finished_jobs(http: aiohttp.ClientSession) -> None:
    """With retention_seconds a finished job turns 404001 once that much time has passed."""
    clock = FakeClock()
    script = JobScript(queue_polls=0, run_polls=0)
    async with Simulator(script=script, retention_seconds=30.0, now=clock) as sim:
        rid = await submit(http, sim)
        clock.t += 29.0
        assert (await call(http, "GET", req_url(sim, rid, "result")))[0] == 200
        clock.t += 1.0
        assert (await call(http, "GET", req_url(sim, rid, "result")))[0] == 404


async def test_wall_clock_over_http(http: aiohttp.ClientSession) -> None:
    """Wall clock: one worker, FIFO queue positions, jobs finish as (fake) time passes."""
    clock = FakeClock()
    async with Simulator(clock="wall", workers=1, run_seconds=10.0, now=clock) as sim:
        ids = [await submit(http, sim) for _ in range(3)]
        bodies = [(await call(http, "GET", req_url(sim, r, "status")))[1] for r in ids]
        assert [(b["status"], b.get("queue_position")) for b in bodies] == [
            ("in_progress", None),
            ("in_queue", 1),
            ("in_queue", 2),
        ]
        clock.t += 15.0
        bodies = [(await call(http, "GET", req_url(sim, r, "status")))[1] for r in ids]
        assert [b["status"] for b in bodies] == ["completed", "in_progress", "in_queue"]
        with pytest.raises(RuntimeError):
            sim.advance(ids[0])


# --- catalog, routing, errors ---------------------------------------------------------------


async def test_catalog_routes(runcomfy_sim: Simulator, http: aiohttp.ClientSession) -> None:
    """GET model and GET models answer the catalog; unknown models and bad paging are 400."""
    sim = runcomfy_sim
    status, entry, _ = await call(http, "GET", f"{sim.url}/v1/models/{WAN22}")
    assert status == 200
    assert set(entry) == {
        "model_id",
        "display_name",
        "kind",
        "categories",
        "base_price_usd",
        "price_unit",
        "pricing_note",
        "input_schema",
    }
    validations = entry["input_schema"]["properties"]["img_url"]["validations"]
    assert validations[0]["validation_rule"] == "width_pixels>"
    assert validations[0]["validation_value"] == 360
    assert isinstance(validations[0]["validation_error"], str)
    _, page, _ = await call(http, "GET", f"{sim.url}/v1/models?search=wan&limit=1&offset=1")
    assert page["total"] == 2
    assert len(page["models"]) == 1
    _, page, _ = await call(http, "GET", f"{sim.url}/v1/models?search=2-5")
    assert [m["model_id"] for m in page["models"]] == [WAN25]
    status, body, _ = await call(http, "GET", f"{sim.url}/v1/models/nobody/nothing")
    assert (status, body["error_code"]) == (400, 400001)
    status, body, _ = await call(http, "GET", f"{sim.url}/v1/models?limit=zero")
    assert (status, body["error_code"]) == (400, 400000)
    assert sim.stats.requests_by_route == {"model": 2, "models": 3}
    assert sim.stats.jobs_created == 0


async def test_unknown_routes_and_methods_are_envelopes(
    runcomfy_sim: Simulator, http: aiohttp.ClientSession
) -> None:
    """404 and 405 answers are JSON envelopes; HEAD never polls a job."""
    sim = runcomfy_sim
    rid = await submit(http, sim)
    status, body, _ = await call(http, "GET", f"{sim.url}/v2/whatever")
    assert status == 404
    assert_envelope(body, 404000)
    status, body, headers = await call(http, "DELETE", req_url(sim, rid, "status"))
    assert status == 405
    assert_envelope(body, 405000)
    assert "GET" in headers["Allow"]
    assert (await call(http, "HEAD", req_url(sim, rid, "status")))[0] == 405
    assert (await call(http, "POST", f"{sim.url}/v1/models"))[0] == 405
    assert sim.job(rid).polls == 0
    assert sim.count("other") == 4


async def test_unhandled_exception_is_a_500_envelope(
    runcomfy_sim: Simulator, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug in a handler answers a 500 / 500001 JSON envelope, never a traceback."""
    sim = runcomfy_sim
    rid = await submit(http, sim)

    def boom(request_id: str) -> None:
        raise KeyError(request_id)

    monkeypatch.setattr(sim._core.world, "poll_status", boom)
    status, body, headers = await call(http, "GET", req_url(sim, rid, "status"))
    assert status == 500
    assert_envelope(body, 500001)
    assert headers["Content-Type"].startswith("application/json")
    assert "Traceback" not in str(body)
    assert sim.log[-1].status == 500


# --- storage --------------------------------------------------------------------------------


async def test_storage_serves_real_files_with_ranges_and_head(
    runcomfy_sim: Simulator, http: aiohttp.ClientSession
) -> None:
    """Files come back whole, by range (206) or as HEAD, and the storage log holds no token."""
    sim = runcomfy_sim
    rid = await submit(http, sim)
    mp4, png = f"{sim.storage_url}/files/{rid}/out.mp4", f"{sim.storage_url}/files/{rid}/a.png"
    async with http.get(mp4) as r:
        assert (r.status, r.headers["Content-Type"], await r.read()) == (
            200,
            "video/mp4",
            MP4_BYTES,
        )
        assert r.headers["Content-Length"] == str(len(MP4_BYTES))
    async with http.get(png) as r:
        assert (r.headers["Content-Type"], await r.read()) == ("image/png", PNG_BYTES)
    size = len(MP4_BYTES)
    for header, part, content_range in [
        ("bytes=100-", MP4_BYTES[100:], f"bytes 100-{size - 1}/{size}"),
        ("bytes=0-9", MP4_BYTES[:10], f"bytes 0-9/{size}"),
        ("bytes=-4", MP4_BYTES[-4:], f"bytes {size - 4}-{size - 1}/{size}"),
    ]:
        async with http.get(mp4, headers={"Range": header}) as r:
            assert (r.status, r.headers["Content-Range"], await r.read()) == (
                206,
                content_range,
                part,
            )
    async with http.get(mp4, headers={"Range": f"bytes={size}-"}) as r:
        assert (r.status, r.headers["Content-Range"]) == (416, f"bytes */{size}")
    async with http.head(mp4) as r:
        assert (r.status, r.headers["Content-Length"], await r.read()) == (200, str(size), b"")
    assert sim.stats.storage_requests == 7
    assert all(rec.authorization is None for rec in sim.storage_log)
    assert all("Authorization" not in rec.headers for rec in sim.storage_log)
    async with http.get(mp4, headers={"Authorization": "Bearer leaked"}) as r:
        assert r.status == 200  # storage ignores it, but the log proves the leak
    assert sim.storage_log[-1].authorization == "Bearer leaked"
    assert sim.storage_log[-1].request_id == rid
    assert sim.count() == 1  # storage requests are not in the API log


# --- faults ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "status", "code", "retry_after"),
    [
        (Fault(FaultKind.RATE_LIMIT, "submit"), 429, 429001, None),
        (Fault(FaultKind.RATE_LIMIT, "submit", retry_after=2), 429, 429001, "2"),
        (Fault(FaultKind.RATE_LIMIT, "submit", retry_after=0.5), 429, 429001, "0.5"),
        (
            Fault(FaultKind.RATE_LIMIT, "submit", retry_after="Wed, 21 Oct 2015 07:28:00 GMT"),
            429,
            429001,
            "Wed, 21 Oct 2015 07:28:00 GMT",
        ),
        (Fault(FaultKind.SERVER_ERROR, "submit"), 503, 503001, None),
        (Fault(FaultKind.SERVER_ERROR, "submit", status=500), 500, 500001, None),
        (Fault(FaultKind.REQUEST_TIMEOUT, "submit"), 408, 408001, None),
        (Fault(FaultKind.INSUFFICIENT_BALANCE, "submit"), 402, 400002, None),
        (Fault(FaultKind.ERROR_IN_200, "submit"), 200, 500001, None),
        (Fault(FaultKind.ERROR_IN_200, "*", error_code=400004), 200, 400004, None),
    ],
)
async def test_refusal_faults(
    http: aiohttp.ClientSession, fault: Fault, status: int, code: int, retry_after: str | None
) -> None:
    """Refusal faults answer their status and envelope, create no job, and are counted."""
    async with Simulator(faults=[fault]) as sim:
        url = f"{sim.url}/v1/models/{WAN25}"
        got_status, body, headers = await call(http, "POST", url, json=GOOD)
        assert (got_status, body["error_code"]) == (status, code)
        assert_envelope(body, code)
        assert headers.get("Retry-After") == retry_after
        assert sim.stats.jobs_created == 0
        assert sim.stats.faults_injected == {fault.kind.value: 1}
        assert (sim.log[-1].fault, sim.log[-1].status) == (fault.kind.value, status)
        assert (await call(http, "POST", url, json=GOOD))[0] == 200  # budget spent


async def test_malformed_json_still_does_the_work(http: aiohttp.ClientSession) -> None:
    """malformed_json cuts the cancel answer's JSON, but the job is cancelled all the same."""
    async with Simulator(faults=[Fault(FaultKind.MALFORMED_JSON, "cancel")]) as sim:
        rid = await submit(http, sim)
        status, body, _ = await call(http, "POST", req_url(sim, rid, "cancel"))
        assert status == 202
        assert isinstance(body, bytes)
        assert body.startswith(b'{"request_id"')
        assert sim.job(rid).state == "cancelled"
        assert sim.stats.faults_injected == {"malformed_json": 1}


async def test_unknown_status_fault_and_job_still_advances(http: aiohttp.ClientSession) -> None:
    """unknown_status answers 'paused' on status and result while the job moves on normally."""
    faults = [Fault(FaultKind.UNKNOWN_STATUS, "status"), Fault(FaultKind.UNKNOWN_STATUS, "result")]
    async with Simulator(script=JobScript(queue_polls=1, run_polls=1), faults=faults) as sim:
        rid = await submit(http, sim)
        assert (await call(http, "GET", req_url(sim, rid, "status")))[1]["status"] == "paused"
        assert (await call(http, "GET", req_url(sim, rid, "result")))[1]["status"] == "paused"
        assert (await call(http, "GET", req_url(sim, rid, "status")))[1]["status"] == "in_progress"
        assert sim.stats.faults_injected == {"unknown_status": 2}


async def test_hang_and_slow(http: aiohttp.ClientSession) -> None:
    """hang never answers (the client times out); slow answers after its delay."""
    faults = [Fault(FaultKind.HANG, "status"), Fault(FaultKind.SLOW, "result", delay=0.1)]
    async with Simulator(faults=faults) as sim:
        rid = await submit(http, sim)
        with pytest.raises(TimeoutError):
            await call(http, "GET", req_url(sim, rid, "status"), timeout=aiohttp.ClientTimeout(0.2))
        started = time.monotonic()
        assert (await call(http, "GET", req_url(sim, rid, "result")))[0] == 200
        assert time.monotonic() - started >= 0.1
        hung = sim.log[1]
        assert (hung.route, hung.status, hung.fault) == ("status", None, "hang")
        assert sim.job(rid).polls == 0  # the hung poll did no work


async def test_aclose_is_quick_while_a_request_hangs(http: aiohttp.ClientSession) -> None:
    """Closing drops hung connections at once instead of waiting for them."""
    sim = Simulator(faults=[Fault(FaultKind.HANG, "models")])
    await sim.start()
    pending = asyncio.ensure_future(call(http, "GET", f"{sim.url}/v1/models"))
    await sim.wait_for(route="models")  # until the request has reached the handler
    started = time.monotonic()
    await sim.aclose()
    assert time.monotonic() - started < 1.0
    with pytest.raises(aiohttp.ClientError):
        await pending
    await sim.aclose()  # idempotent


async def test_reset_before_submit_creates_nothing(http: aiohttp.ClientSession) -> None:
    """reset_before drops the connection before any work: the call fails, no job exists."""
    async with Simulator(faults=[Fault(FaultKind.RESET_BEFORE, "submit")]) as sim:
        with pytest.raises(aiohttp.ClientError):
            await call(http, "POST", f"{sim.url}/v1/models/{WAN25}", json=GOOD)
        assert sim.stats.jobs_created == 0
        record = sim.log[-1]
        assert (record.route, record.status, record.fault, record.request_id) == (
            "submit",
            None,
            "reset_before",
            None,
        )


async def test_reset_after_submit_creates_exactly_one_job(http: aiohttp.ClientSession) -> None:
    """reset_after is the double-billing trap: the call fails but the job was created."""
    async with Simulator(faults=[Fault(FaultKind.RESET_AFTER, "submit")]) as sim:
        with pytest.raises(aiohttp.ClientError):
            await call(http, "POST", f"{sim.url}/v1/models/{WAN25}", json=GOOD)
        assert sim.stats.jobs_created == 1
        assert sim.count("submit") == 1
        record = sim.log[-1]
        assert (record.status, record.fault) == (None, "reset_after")
        assert record.request_id is not None
        assert sim.job(record.request_id).state == "in_queue"


async def test_redirect_points_at_another_origin(http: aiohttp.ClientSession) -> None:
    """redirect answers 307 (POST) / 302 (GET) to storage by default, or to `location`."""
    faults = [
        Fault(FaultKind.REDIRECT, "submit"),
        Fault(FaultKind.REDIRECT, "status", location="http://elsewhere.invalid/x"),
    ]
    async with Simulator(faults=faults) as sim:
        status, _, headers = await call(http, "POST", f"{sim.url}/v1/models/{WAN25}", json=GOOD)
        assert (status, headers["Location"]) == (307, f"{sim.storage_url}/v1/models/{WAN25}")
        rid = await submit(http, sim)
        status, _, headers = await call(http, "GET", req_url(sim, rid, "status"))
        assert (status, headers["Location"]) == (302, "http://elsewhere.invalid/x")
        assert sim.stats.jobs_created == 1
        assert sim.stats.faults_injected == {"redirect": 2}


async def test_truncate_storage_and_api(http: aiohttp.ClientSession) -> None:
    """truncate sends the full Content-Length, half the body, then drops the connection."""
    faults = [Fault(FaultKind.TRUNCATE, "storage"), Fault(FaultKind.TRUNCATE, "status")]
    async with Simulator(faults=faults) as sim:
        rid = await submit(http, sim)
        async with http.get(f"{sim.storage_url}/files/{rid}/out.mp4") as r:
            assert r.headers["Content-Length"] == str(len(MP4_BYTES))
            with pytest.raises(aiohttp.ClientPayloadError):
                await r.read()
        with pytest.raises(aiohttp.ClientPayloadError):
            await call(http, "GET", req_url(sim, rid, "status"))
        assert sim.storage_log[-1].fault == "truncate"
        assert sim.stats.faults_injected == {"truncate": 2}
        async with http.get(f"{sim.storage_url}/files/{rid}/out.mp4") as r:
            assert await r.read() == MP4_BYTES


async def test_probabilistic_faults_replay_over_http(http: aiohttp.ClientSession) -> None:
    """The same seed injects the same probabilistic faults on the same request sequence."""

    async def pattern(seed: int) -> list[int]:
        fault = Fault(FaultKind.SERVER_ERROR, "models", times=None, probability=0.5)
        async with Simulator(seed=seed, faults=[fault]) as sim:
            return [(await call(http, "GET", f"{sim.url}/v1/models"))[0] for _ in range(16)]

    first = await pattern(3)
    assert first == await pattern(3)
    assert set(first) == {200, 503}


async def test_concurrency_peaks_are_counted(http: aiohttp.ClientSession) -> None:
    """max_in_flight and max_concurrent_connections record the peak of parallel requests."""
    async with Simulator(faults=[Fault(FaultKind.SLOW, "models", times=None, delay=0.2)]) as sim:
        await asyncio.gather(*(call(http, "GET", f"{sim.url}/v1/models") for _ in range(8)))
        stats = sim.stats
        assert stats.max_in_flight == 8
        assert stats.max_concurrent_connections == 8
        assert stats.requests_by_route == {"models": 8}


# --- lifecycle, plugin, command line --------------------------------------------------------


async def test_plugin_fixture_is_a_started_scripted_simulator(runcomfy_sim: Simulator) -> None:
    """The pytest11 fixture yields a started scripted-clock simulator with the default token."""
    assert runcomfy_sim.url.startswith("http://127.0.0.1:")
    assert runcomfy_sim.token == "test-token"
    assert "test-token" not in repr(runcomfy_sim)


async def test_lifecycle_misuse() -> None:
    """Bad options, reads before start, double start and unknown jobs raise clearly."""
    with pytest.raises(ValueError, match="terminal_status"):
        Simulator(terminal_status="done")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="workers"):
        Simulator(clock="wall", workers=0)
    sim = Simulator()
    with pytest.raises(RuntimeError):
        _ = sim.url
    async with sim:
        with pytest.raises(RuntimeError):
            await sim.start()
        with pytest.raises(KeyError):
            sim.job("nope")
        with pytest.raises(KeyError):
            sim.expire("nope")


async def test_command_line_serves_until_interrupted() -> None:
    """`python -m runcomfy_async.testing` prints URL and token, serves, and exits 0 on Ctrl-C."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "runcomfy_async.testing",
        "--clock",
        "scripted",
        "--token",
        "cli-t",
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    try:
        banner = ""
        while "token:" not in banner:
            banner += (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        match = re.search(r"API:\s+(\S+)", banner)
        assert match is not None
        assert "cli-t" in banner
        async with aiohttp.ClientSession() as s:
            status, body, _ = await call(s, "GET", f"{match.group(1)}/v1/models", token="cli-t")
        assert (status, body["total"]) == (200, 6)  # the two Wan seeds + four other shapes
    finally:
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 10) == 0

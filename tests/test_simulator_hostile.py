"""Hostile and odd answers over real HTTP: the newer fault kinds, output replays, result words."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from runcomfy_async.testing import Fault, FaultKind, JobScript, Simulator
from runcomfy_async.testing._assets import MP4_BYTES

from .test_simulator_http import GOOD, WAN25, assert_envelope, call, req_url

pytestmark = pytest.mark.anyio

DONE = JobScript(queue_polls=0, run_polls=0)


@pytest.fixture
async def http(anyio_backend: str) -> AsyncIterator[aiohttp.ClientSession]:
    """A plain aiohttp session with no connection reuse."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s:
        yield s


async def submit(http: aiohttp.ClientSession, sim: Simulator) -> str:
    status, body, _ = await call(http, "POST", f"{sim.url}/v1/models/{WAN25}", json=GOOD)
    assert status == 200, body
    return str(body["request_id"])


async def get(http: aiohttp.ClientSession, sim: Simulator, rid: str, route: str) -> Any:
    status, body, _ = await call(http, "GET", req_url(sim, rid, route))
    assert status == 200, body
    return body


# --- wrong ids, flapping, deep errors -------------------------------------------------------


async def test_wrong_id_answers_another_jobs_id_and_output(http: aiohttp.ClientSession) -> None:
    """wrong_id swaps in the newest other job's request_id and, on /result, its output."""
    async with Simulator(script=DONE) as sim:
        sim.script_next(JobScript(queue_polls=0, run_polls=0, output_files=("mine.mp4",)))
        sim.script_next(JobScript(queue_polls=0, run_polls=0, output_files=("theirs.png",)))
        mine, theirs = await submit(http, sim), await submit(http, sim)
        sim.add_fault(Fault(FaultKind.WRONG_ID, "status"))
        sim.add_fault(Fault(FaultKind.WRONG_ID, "result"))
        status = await get(http, sim, mine, "status")
        assert status["request_id"] == theirs
        assert status["status_url"] == req_url(sim, theirs, "status")
        result = await get(http, sim, mine, "result")
        assert result["request_id"] == theirs
        assert result["output"]["image"] == f"{sim.storage_url}/files/{theirs}/theirs.png"
        assert sim.job(mine).polls == 1  # the work was done for the job asked about
        assert (await get(http, sim, mine, "result"))["request_id"] == mine
        assert sim.stats.faults_injected == {"wrong_id": 2}


async def test_wrong_id_with_a_single_job_invents_one(http: aiohttp.ClientSession) -> None:
    """With no other job, wrong_id answers a fresh, unknown id."""
    async with Simulator(script=DONE, faults=[Fault(FaultKind.WRONG_ID, "result")]) as sim:
        rid = await submit(http, sim)
        result = await get(http, sim, rid, "result")
        assert result["request_id"] != rid
        assert rid not in json.dumps(result)


async def test_flap_alternates_only_on_finished_jobs(http: aiohttp.ClientSession) -> None:
    """flap says in_queue on every other poll of a finished job; unfinished polls pass free."""
    script = JobScript(queue_polls=1, run_polls=1)
    async with Simulator(script=script, faults=[Fault(FaultKind.FLAP, "status", times=2)]) as sim:
        rid = await submit(http, sim)
        words = [(await get(http, sim, rid, "status"))["status"] for _ in range(8)]
        assert words == [
            "in_queue",  # really queued
            "in_progress",
            "in_queue",  # finished, flapped
            "completed",
            "in_queue",  # flapped again: the budget of 2 is now spent
            "completed",
            "completed",
            "completed",
        ]
        assert sim.stats.faults_injected == {"flap": 2}
        flapped = [r for r in sim.log if r.fault == "flap"]
        assert len(flapped) == 2


async def test_flap_stuck_keeps_flipping(http: aiohttp.ClientSession) -> None:
    """variant='stuck' answers in_queue (with a position) on every poll of the finished job."""
    fault = Fault(FaultKind.FLAP, "status", times=None, variant="stuck")
    async with Simulator(script=DONE, faults=[fault]) as sim:
        rid = await submit(http, sim)
        bodies = [await get(http, sim, rid, "status") for _ in range(4)]
        assert {(b["status"], b["queue_position"]) for b in bodies} == {("in_queue", 1)}
        assert sim.job(rid).state == "succeeded"
    with pytest.raises(ValueError, match="variant"):
        Fault(FaultKind.FLAP, variant="sideways")


def _depth(value: object) -> int:
    depth = 0
    while isinstance(value, dict):
        value, depth = value["error"], depth + 1
    return depth


async def test_deep_error_nests_500_levels(http: aiohttp.ClientSession) -> None:
    """deep_error answers failed with an error nested 500 objects deep (or `depth`)."""
    failing = JobScript(queue_polls=0, run_polls=0, outcome="failed")
    faults = [Fault(FaultKind.DEEP_ERROR, "result"), Fault(FaultKind.DEEP_ERROR, "result", depth=3)]
    async with Simulator(script=failing, faults=faults) as sim:
        rid = await submit(http, sim)
        body = await get(http, sim, rid, "result")
        assert body["status"] == "failed"
        assert _depth(body["error"]) == 500
        assert "output" not in body
        assert _depth((await get(http, sim, rid, "result"))["error"]) == 3
        assert (await get(http, sim, rid, "result"))["error"] == "The generation failed."
        assert sim.stats.faults_injected == {"deep_error": 2}


# --- echoed tokens, cancel shapes, success with an error code -------------------------------


async def test_echo_token_puts_the_authorization_in_the_message(
    http: aiohttp.ClientSession,
) -> None:
    """echo_token answers an envelope whose message quotes the Authorization header; no job."""
    async with Simulator(token="sekrit-123", faults=[Fault(FaultKind.ECHO_TOKEN, "submit")]) as sim:
        url = f"{sim.url}/v1/models/{WAN25}"
        status, body, _ = await call(http, "POST", url, json=GOOD, token="sekrit-123")
        assert status == 401
        assert_envelope(body, 400004)
        assert "Bearer sekrit-123" in body["error_message"]
        assert body["detail"] == {"authorization": "Bearer sekrit-123"}
        assert sim.stats.jobs_created == 0
        assert sim.stats.faults_injected == {"echo_token": 1}


@pytest.mark.parametrize(
    ("variant", "expected"),
    [
        (None, {"status": "cancelled", "outcome": "cancellation_requested"}),
        ("cancellation_requested", {"status": "cancelled", "outcome": "cancellation_requested"}),
        ("no_outcome", {"status": "cancelled"}),
    ],
)
async def test_cancel_shape_variants(
    http: aiohttp.ClientSession, variant: str | None, expected: dict[str, str]
) -> None:
    """cancel_shape answers the odd cancel bodies RunComfy's clients meet; the cancel happens."""
    async with Simulator(faults=[Fault(FaultKind.CANCEL_SHAPE, "cancel", variant=variant)]) as sim:
        rid = await submit(http, sim)
        status, body, _ = await call(http, "POST", req_url(sim, rid, "cancel"))
        assert (status, body) == (202, {"request_id": rid, **expected})
        assert sim.job(rid).state == "cancelled"
        assert sim.stats.faults_injected == {"cancel_shape": 1}


async def test_cancel_shape_invalid_json(http: aiohttp.ClientSession) -> None:
    """variant='invalid_json' answers a body with a trailing comma, like the doc's example."""
    fault = Fault(FaultKind.CANCEL_SHAPE, "cancel", variant="invalid_json")
    async with Simulator(faults=[fault]) as sim:
        rid = await submit(http, sim)
        status, body, _ = await call(http, "POST", req_url(sim, rid, "cancel"))
        assert status == 202
        assert isinstance(body, bytes)
        assert body.endswith(b",}")
        with pytest.raises(json.JSONDecodeError):
            json.loads(body)
        assert sim.job(rid).state == "cancelled"


async def test_success_with_error_code_still_creates_the_job(http: aiohttp.ClientSession) -> None:
    """A 2xx submit with request_id AND error_code: the job exists and is billed."""
    faults = [Fault(FaultKind.SUCCESS_WITH_ERROR_CODE, "submit", error_code=500002)]
    async with Simulator(script=DONE, faults=faults) as sim:
        status, body, _ = await call(http, "POST", f"{sim.url}/v1/models/{WAN25}", json=GOOD)
        assert status == 200
        assert body["error_code"] == 500002
        assert body["error_message"]
        rid = body["request_id"]
        assert body["result_url"] == req_url(sim, rid, "result")
        assert sim.stats.jobs_created == 1
        assert sim.job(rid).state == "succeeded"
        result = await get(http, sim, rid, "result?include_cost=true")
        assert result["cost"] == pytest.approx(0.25)
        assert sim.log[-2].fault == "success_with_error_code"


# --- storage: private redirects, hops, drips ------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "location"),
    [
        (Fault(FaultKind.REDIRECT_PRIVATE, "storage"), "http://169.254.169.254/latest/meta-data"),
        (Fault(FaultKind.REDIRECT_PRIVATE, "storage", variant="private_ip"), "http://10.0.0.1/x"),
        (
            Fault(FaultKind.REDIRECT_PRIVATE, "storage", location="http://[::1]:9/"),
            "http://[::1]:9/",
        ),
    ],
)
async def test_redirect_private_only_answers_the_redirect(
    http: aiohttp.ClientSession, fault: Fault, location: str
) -> None:
    """redirect_private answers 302 to a private address; the simulator never goes there."""
    async with Simulator(faults=[fault]) as sim:
        rid = await submit(http, sim)
        status, _, headers = await call(http, "GET", f"{sim.storage_url}/files/{rid}/a.mp4")
        assert (status, headers["Location"]) == (302, location)
        assert sim.stats.storage_requests == 1
        assert sim.stats.faults_injected == {"redirect_private": 1}


async def test_redirect_hop_lands_on_a_served_path(http: aiohttp.ClientSession) -> None:
    """redirect_hop sends the download to another path on the same storage origin, served."""
    async with Simulator(faults=[Fault(FaultKind.REDIRECT_HOP, "storage", times=2)]) as sim:
        rid = await submit(http, sim)
        status, _, headers = await call(http, "GET", f"{sim.storage_url}/files/{rid}/a.mp4")
        target = f"{sim.storage_url}/moved/files/{rid}/a.mp4"
        assert (status, headers["Location"]) == (302, target)
        async with http.get(f"{sim.storage_url}/files/{rid}/a.mp4") as r:  # follows it
            assert (r.status, await r.read()) == (200, MP4_BYTES)
            assert str(r.url) == target
        assert [rec.path for rec in sim.storage_log] == [
            f"/files/{rid}/a.mp4",
            f"/files/{rid}/a.mp4",
            f"/moved/files/{rid}/a.mp4",
        ]


async def test_drip_sends_the_whole_body_slowly(http: aiohttp.ClientSession) -> None:
    """drip streams the file at about `rate` bytes per second, full Content-Length, intact."""
    rate = 8000.0
    async with Simulator(faults=[Fault(FaultKind.DRIP, "storage", rate=rate)]) as sim:
        rid = await submit(http, sim)
        started = time.monotonic()
        async with http.get(f"{sim.storage_url}/files/{rid}/a.mp4") as r:
            assert r.headers["Content-Length"] == str(len(MP4_BYTES))
            assert await r.read() == MP4_BYTES
        assert time.monotonic() - started >= 0.8 * (len(MP4_BYTES) - 400) / rate
        assert sim.storage_log[-1].fault == "drip"


async def test_drip_is_bounded_and_stops_by_itself(http: aiohttp.ClientSession) -> None:
    """After `delay` seconds a drip drops the connection: the client sees a short body."""
    fault = Fault(FaultKind.DRIP, "storage", rate=100.0, delay=0.2)
    async with Simulator(faults=[fault]) as sim:
        rid = await submit(http, sim)
        got = bytearray()

        async def read_all() -> None:
            async with http.get(f"{sim.storage_url}/files/{rid}/a.mp4") as r:
                async for chunk in r.content.iter_any():
                    got.extend(chunk)

        with pytest.raises(aiohttp.ClientPayloadError):
            await read_all()
        assert 0 < len(got) < len(MP4_BYTES)
        await sim.wait_for(storage=True, answered=True)


# --- output replays and result words --------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ({"audio": "{url}"}, lambda u: {"audio": u[0]}),
        ({"audios": ["{urls}"]}, lambda u: {"audios": u}),
        ({"image_urls": ["{url:1}", "{url:0}"]}, lambda u: {"image_urls": [u[1], u[0]]}),
        ([{"url": "{url}"}], lambda u: [{"url": u[0]}]),
        ("{urls}", lambda u: u),
        ({"a": {"b": [{"c": "{url:1}"}, 7]}}, lambda u: {"a": {"b": [{"c": u[1]}, 7]}}),
    ],
)
async def test_output_templates_replay_any_shape(
    http: aiohttp.ClientSession, template: object, expected: Any
) -> None:
    """JobScript(output=...) replays any JSON shape, storage URLs filled in per file."""
    script = JobScript(queue_polls=0, run_polls=0, output=template, output_files=("a.wav", "b.wav"))
    async with Simulator(script=script) as sim:
        rid = await submit(http, sim)
        urls = [f"{sim.storage_url}/files/{rid}/{name}" for name in ("a.wav", "b.wav")]
        assert (await get(http, sim, rid, "result"))["output"] == expected(urls)


async def test_result_status_words_for_unfinished_jobs(http: aiohttp.ClientSession) -> None:
    """result_status='seen' answers pending / processing while unfinished; a mapping any word."""
    script = JobScript(queue_polls=1, run_polls=1)
    async with Simulator(script=script, result_status="seen") as sim:
        rid = await submit(http, sim)
        words = [(await get(http, sim, rid, "result"))["status"]]
        sim.advance(rid)
        words.append((await get(http, sim, rid, "result"))["status"])
        sim.advance(rid)
        words.append((await get(http, sim, rid, "result"))["status"])
        assert words == ["pending", "processing", "succeeded"]
        assert (await get(http, sim, rid, "status"))["status"] == "completed"
    async with Simulator(script=script, result_status={"in_queue": "waiting"}) as sim:
        rid = await submit(http, sim)
        assert (await get(http, sim, rid, "result"))["status"] == "waiting"
    with pytest.raises(ValueError, match="result_status"):
        Simulator(result_status="later")  # type: ignore[arg-type]

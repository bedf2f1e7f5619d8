"""The client core over real HTTP against the simulator: the four calls, errors, retries."""

from __future__ import annotations

import logging
import socket

import pytest

import runcomfy_async as rc
from runcomfy_async import Client, JobState
from runcomfy_async.testing import Fault, JobScript, Simulator

from .conftest import FAST_RETRY, GOOD_INPUTS, WAN25

pytestmark = pytest.mark.anyio


# --- the four calls ------------------------------------------------------------------------


async def test_submit_status_result_cancel_roundtrip(client: Client, sim: Simulator) -> None:
    """Submit gives a handle; status, result and cancel answer typed values."""
    handle = await client.submit(WAN25, GOOD_INPUTS)
    assert handle.model_id == WAN25 and sim.stats.jobs_created == 1
    status = await handle.status()
    assert status.state is JobState.IN_QUEUE and status.queue_position == 1
    result = await handle.result()
    assert result.status in (JobState.IN_QUEUE, JobState.IN_PROGRESS) and result.output is None
    answer = await handle.cancel()
    assert answer.outcome in ("cancelled", "not_cancellable")
    assert sim.count("submit") == 1 and sim.count("status") == 1


async def test_result_of_finished_job_has_typed_output(client: Client, sim: Simulator) -> None:
    """A finished job's result carries the output URLs on the storage origin."""
    sim.script_next(JobScript(queue_polls=0, run_polls=0))
    handle = await client.submit(WAN25, GOOD_INPUTS)
    result = await handle.result(include_cost=True)
    assert result.status is JobState.SUCCEEDED
    assert result.output is not None and result.output.video is not None
    assert result.output.video.startswith(sim.storage_url)
    assert result.cost == pytest.approx(0.25)
    assert sim.log[-1].query.get("include_cost") == "true"


@pytest.mark.parametrize("shape", ["object", "url", "list"])
async def test_all_output_shapes(client: Client, sim: Simulator, shape: str) -> None:
    """The object, bare-URL and list output shapes all give Output.video."""
    sim.script_next(JobScript(queue_polls=0, run_polls=0, output=shape))
    handle = await client.submit(WAN25, GOOD_INPUTS)
    result = await handle.result()
    assert result.output is not None and result.output.video is not None
    assert result.output.urls


async def test_handle_rebuilt_from_id_needs_no_io(client: Client, sim: Simulator) -> None:
    """client.handle() rebuilds a handle without any request."""
    before = len(sim.log)
    handle = client.handle("abc-123")
    assert handle.request_id == "abc-123" and len(sim.log) == before
    with pytest.raises(ValueError, match="request id"):
        client.handle("../etc/passwd")


async def test_include_cost_client_default(sim: Simulator) -> None:
    """Client(include_cost=True) asks for cost on every result."""
    sim.script_next(JobScript(queue_polls=0, run_polls=0))
    async with Client(token=sim.token, base_url=sim.url, include_cost=True) as c:
        result = await (await c.submit(WAN25, GOOD_INPUTS)).result()
    assert result.cost is not None


# --- error mapping -------------------------------------------------------------------------


async def test_wrong_token_is_authentication_error(sim: Simulator) -> None:
    """A wrong token maps to AuthenticationError naming the route and the status."""
    async with Client(token="wrong-token", base_url=sim.url, retry=FAST_RETRY) as c:
        with pytest.raises(rc.AuthenticationError) as info:
            await c.submit(WAN25, GOOD_INPUTS)
    assert info.value.status == 401 and "wrong-token" not in str(info.value)
    assert sim.stats.jobs_created == 0


async def test_unknown_id_is_not_found(client: Client) -> None:
    """An unknown id maps to NotFoundError with error_code 404001."""
    with pytest.raises(rc.NotFoundError) as info:
        await client.status("no-such-id")
    assert info.value.error_code == 404001 and info.value.request_id == "no-such-id"


async def test_expired_id_is_not_found(client: Client, sim: Simulator) -> None:
    """An expired request answers 404001 like an unknown one."""
    handle = await client.submit(WAN25, GOOD_INPUTS)
    sim.expire(handle.request_id)
    with pytest.raises(rc.NotFoundError):
        await handle.result()


async def test_someone_elses_request_is_permission_denied(sim: Simulator) -> None:
    """Reading another token's request maps to PermissionDeniedError (403001)."""
    async with Client(token=sim.token, base_url=sim.url) as mine:
        handle = await mine.submit(WAN25, GOOD_INPUTS)
    other_token = "other-token"
    async with Client(token=other_token, base_url=sim.url) as theirs:
        with pytest.raises(rc.PermissionDeniedError) as info:
            await theirs.status(handle.request_id)
    assert info.value.error_code == 403001


async def test_invalid_inputs_are_invalid_input_error(client: Client, sim: Simulator) -> None:
    """A schema violation the server catches maps to InvalidInputError (422), no job."""
    with pytest.raises(rc.InvalidInputError) as info:
        # A catalog model without built-in rules: only the server checks it here.
        await client.submit("acme/flux-lite/text-to-image", {"prompt": "p", "num_images": 9})
    assert info.value.status == 422 and "num_images" in str(info.value)
    assert sim.stats.jobs_created == 0


async def test_unknown_model_rejected(anyio_backend: str) -> None:
    """An unknown model id maps to BadRequestError (400001) when the server rejects it."""
    async with Simulator(unknown_models="reject") as s, Client(token=s.token, base_url=s.url) as c:
        with pytest.raises(rc.BadRequestError) as info:
            await c.submit("acme/nope", {"x": 1})
    assert info.value.error_code == 400001


@pytest.mark.parametrize(
    ("fault", "cls", "status"),
    [
        (Fault("insufficient_balance", "submit"), rc.InsufficientBalanceError, 402),
        (Fault("rate_limit", "status", times=None), rc.RateLimitError, 429),
        (Fault("server_error", "status", times=None, status=502), rc.ServerError, 502),
        (Fault("request_timeout", "status", times=None), rc.RequestTimeoutError, 408),
        (Fault("error_in_200", "status", times=None, error_code=404001), rc.NotFoundError, 200),
        (Fault("malformed_json", "status", times=None), rc.UnexpectedResponseError, 200),
    ],
)
async def test_error_mapping_by_status_and_code(
    client: Client, sim: Simulator, fault: Fault, cls: type[rc.APIStatusError], status: int
) -> None:
    """Each error answer maps to its class; retried reads end in the same class."""
    if fault.route == "submit":
        sim.add_fault(fault)
        with pytest.raises(cls) as info:
            await client.submit(WAN25, GOOD_INPUTS)
    else:
        handle = await client.submit(WAN25, GOOD_INPUTS)
        sim.add_fault(fault)
        with pytest.raises(cls) as info:
            await handle.status()
    assert info.value.status == status


async def test_unknown_status_is_surfaced_not_crashed(client: Client, sim: Simulator) -> None:
    """An undocumented status word decodes as UNKNOWN with the word kept."""
    handle = await client.submit(WAN25, GOOD_INPUTS)
    sim.add_fault(Fault("unknown_status", "status"))
    status = await handle.status()
    assert status.state is JobState.UNKNOWN and status.status not in ("in_queue", "in_progress")


async def test_redirect_is_not_followed(client: Client, sim: Simulator) -> None:
    """A redirect from the API is an error, never followed (it could carry the token away)."""
    handle = await client.submit(WAN25, GOOD_INPUTS)
    sim.add_fault(Fault("redirect", "status", times=None))
    with pytest.raises(rc.UnexpectedResponseError):
        await handle.status()
    assert sim.storage_log == []


# --- retries: exact request counts ---------------------------------------------------------


async def test_two_503_then_success_is_three_gets(client: Client, sim: Simulator) -> None:
    """Two 503s on status then success: exactly three GETs, one answer."""
    handle = await client.submit(WAN25, GOOD_INPUTS)
    sim.add_fault(Fault("server_error", "status", times=2))
    status = await handle.status()
    assert status.state is JobState.IN_QUEUE
    assert sim.count("status", request_id=handle.request_id) == 3


async def test_read_retries_reset_and_garbage(client: Client, sim: Simulator) -> None:
    """A reset and a malformed body on result are retried; the third GET answers."""
    handle = await client.submit(WAN25, GOOD_INPUTS)
    sim.add_fault(Fault("reset_before", "result"))
    sim.add_fault(Fault("server_error", "result"))
    await handle.result()
    assert sim.count("result") == 3


async def test_429_then_success_submits_one_job(client: Client, sim: Simulator) -> None:
    """A 429 on submit is retried: two POSTs, one job."""
    sim.add_fault(Fault("rate_limit", "submit"))
    await client.submit(WAN25, GOOD_INPUTS)
    assert sim.count("submit") == 2 and sim.stats.jobs_created == 1


@pytest.mark.parametrize(
    ("kind", "created"),
    [("reset_after", 1), ("reset_before", 0), ("server_error", 0), ("malformed_json", 1)],
)
async def test_ambiguous_submit_is_never_retried(
    client: Client, sim: Simulator, kind: str, created: int
) -> None:
    """Reset, 5xx or an unusable 2xx on submit: one POST, SubmitUncertainError with inputs."""
    sim.add_fault(Fault(kind, "submit"))
    with pytest.raises(rc.SubmitUncertainError) as info:
        await client.submit(WAN25, GOOD_INPUTS)
    assert sim.count("submit") == 1
    assert sim.stats.jobs_created == created
    assert info.value.inputs == GOOD_INPUTS and info.value.model_id == WAN25
    assert info.value.__cause__ is not None


async def test_submit_read_timeout_is_uncertain(sim: Simulator) -> None:
    """A submit that hangs past the read timeout is uncertain and not retried."""
    sim.add_fault(Fault("hang", "submit"))
    timeouts = rc.Timeouts(read=0.2)
    async with Client(token=sim.token, base_url=sim.url, timeouts=timeouts) as c:
        with pytest.raises(rc.SubmitUncertainError) as info:
            await c.submit(WAN25, GOOD_INPUTS)
    assert isinstance(info.value.__cause__, rc.ReadTimeoutError)
    assert sim.count("submit") == 1


async def test_connection_refused_is_retried_then_connect_error(anyio_backend: str) -> None:
    """Connection refused never reached a server: retried, then ConnectError."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    retries: list[rc.RetryEvent] = []
    policy = rc.RetryPolicy(attempts=3, initial=0)
    async with Client(
        token="t", base_url=f"http://127.0.0.1:{port}", retry=policy, on_retry=retries.append
    ) as c:
        with pytest.raises(rc.ConnectError):
            await c.submit(WAN25, GOOD_INPUTS)
    assert len(retries) == 2


async def test_retry_after_is_honoured(sim: Simulator) -> None:
    """The wait after a 429 is the server's Retry-After."""
    handle_id = None
    retries: list[rc.RetryEvent] = []
    policy = rc.RetryPolicy(initial=0, max_retry_after=1)
    async with Client(
        token=sim.token, base_url=sim.url, retry=policy, on_retry=retries.append
    ) as c:
        handle_id = (await c.submit(WAN25, GOOD_INPUTS)).request_id
        sim.add_fault(Fault("rate_limit", "status", retry_after=0.05))
        await c.status(handle_id)
    assert [r.delay for r in retries] == [0.05]
    status_times = [r.t for r in sim.log if r.route == "status"]
    assert status_times[1] - status_times[0] >= 0.04


async def test_cancel_is_retried_like_a_read(client: Client, sim: Simulator) -> None:
    """A 503 on cancel is retried: cancelling twice is harmless."""
    handle = await client.submit(WAN25, GOOD_INPUTS)
    sim.add_fault(Fault("server_error", "cancel"))
    answer = await handle.cancel()
    assert answer.cancelled and sim.count("cancel") == 2


# --- configuration and hygiene --------------------------------------------------------------


def test_missing_token_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """No token anywhere is a clear error naming RUNCOMFY_API_TOKEN."""
    monkeypatch.delenv("RUNCOMFY_API_TOKEN", raising=False)
    with pytest.raises(ValueError, match="RUNCOMFY_API_TOKEN"):
        Client()


def test_token_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The token is read from RUNCOMFY_API_TOKEN and kept out of the repr."""
    monkeypatch.setenv("RUNCOMFY_API_TOKEN", "env-secret-token")
    client = Client()
    assert "env-secret-token" not in repr(client)
    assert "env-secret-token" not in repr(client._s.transport)


@pytest.mark.parametrize(
    "url", ["http://api.example.com", "ftp://127.0.0.1", "not a url", "http://10.0.0.1:8080"]
)
def test_plain_http_refused_off_loopback(url: str) -> None:
    """Plain http is refused except to loopback; other schemes are refused."""
    with pytest.raises(ValueError, match="base_url"):
        Client(token="t", base_url=url)


@pytest.mark.parametrize("url", ["http://127.0.0.1:9", "http://localhost:9", "http://[::1]:9"])
def test_plain_http_allowed_to_loopback(url: str) -> None:
    """Loopback http is allowed (the simulator)."""
    Client(token="t", base_url=url)


@pytest.mark.parametrize("token", ["a\nb", " padded", "tab\there"])
def test_token_with_control_characters_refused(token: str) -> None:
    """A token that could inject a header is refused."""
    with pytest.raises(ValueError, match="token"):
        Client(token=token, base_url="http://127.0.0.1:9")


@pytest.mark.parametrize("model_id", ["", "../x", "a//b", "a/../b", "a b", "a?x=1", "a\n"])
async def test_bad_model_ids_refused_before_io(
    client: Client, sim: Simulator, model_id: str
) -> None:
    """Malformed model ids are refused locally, with no request."""
    with pytest.raises(ValueError, match="model id"):
        await client.submit(model_id, GOOD_INPUTS)
    assert sim.log == []


async def test_closed_client_refuses_calls(sim: Simulator) -> None:
    """A closed client raises RuntimeError, not a RunComfyError."""
    c = Client(token=sim.token, base_url=sim.url)
    await c.aclose()
    await c.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await c.status("abc")


async def test_token_never_leaks(sim: Simulator, caplog: pytest.LogCaptureFixture) -> None:
    """The token is absent from DEBUG logs, reprs, error texts and storage requests."""
    caplog.set_level(logging.DEBUG)
    sim.script_next(JobScript(queue_polls=0, run_polls=0))
    sim.add_fault(Fault("server_error", "status", times=2))
    texts: list[str] = []
    async with Client(token=sim.token, base_url=sim.url, retry=FAST_RETRY) as c:
        handle = await c.submit(WAN25, GOOD_INPUTS)
        texts += [repr(c), repr(handle)]
        await handle.status()
        result = await handle.result()
        texts.append(repr(result))
        try:
            await c.status("missing")
        except rc.NotFoundError as exc:
            texts += [str(exc), repr(exc)]
        assert result.output is not None
        async with c._s.transport.stream(result.output.urls[0]) as stream:
            async for _ in stream.chunks():
                pass
    texts.append(caplog.text)
    assert all(sim.token not in t for t in texts)
    assert sim.storage_log and all(r.authorization is None for r in sim.storage_log)
    assert all(r.authorization == f"Bearer {sim.token}" for r in sim.log)


async def test_connection_pool_is_bounded(sim: Simulator) -> None:
    """200 concurrent status calls never open more connections than the limit."""
    import anyio

    limits = rc.Limits(max_connections=4, max_connections_per_host=4)
    async with Client(token=sim.token, base_url=sim.url, limits=limits) as c:
        handle = await c.submit(WAN25, GOOD_INPUTS)
        async with anyio.create_task_group() as tg:
            for _ in range(200):
                tg.start_soon(c.result, handle.request_id)
    assert sim.count("result") == 200
    assert sim.stats.max_concurrent_connections <= 4


# --- cancellation while a submit is on the wire --------------------------------------------


async def test_submit_cancelled_on_the_wire_is_not_orphaned(client: Client, sim: Simulator) -> None:
    """asyncio.wait_for cancelling a slow submit: the POST completes, its job is cancelled."""
    import asyncio

    sim.add_fault(Fault("slow", "submit", delay=0.6))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(client.run(WAN25, GOOD_INPUTS), timeout=0.1)
    await client.aclose()  # the POST finishes as cleanup, which aclose() waits for
    assert sim.count("submit") == 1 and sim.stats.jobs_created == 1
    assert sim.count("cancel") == 1
    (rid,) = {r.request_id for r in sim.log if r.route == "cancel"}
    assert sim.job(rid).state == "cancelled"


async def test_submit_cancelled_by_anyio_scope_is_not_orphaned(
    client: Client, sim: Simulator
) -> None:
    """An anyio deadline during a slow submit: one job, cancelled remotely, exactly once."""
    import anyio

    sim.add_fault(Fault("slow", "submit", delay=0.6))
    with anyio.move_on_after(0.1):
        await client.submit(WAN25, GOOD_INPUTS)
    await client.aclose()  # the POST finishes as cleanup, which aclose() waits for
    assert sim.stats.jobs_created == 1 and sim.count("cancel") == 1


# --- the catalog -----------------------------------------------------------------------------


async def test_model_info_and_opt_in_schema_check(client: Client, sim: Simulator) -> None:
    """The catalog entry is typed; check_inputs applies its schema with one catalog fetch."""
    info = await client.model_info(WAN25)
    assert info.model_id == WAN25 and info.input_schema
    await client.check_inputs(WAN25, GOOD_INPUTS)
    with pytest.raises(rc.InputValidationError) as bad:
        await client.check_inputs(WAN25, {**GOOD_INPUTS, "resolution": "720p"})
    assert bad.value.field == "resolution"
    with pytest.raises(rc.InputValidationError):
        await client.check_inputs(WAN25, {"img_url": "https://x/y.png"})
    assert sim.count("model") == 1  # one fetch per model per session, shared by both
    assert sim.count("submit") == 0


# --- proxies from the environment -------------------------------------------------------------


def test_env_proxy_resolved_once_and_no_proxy_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    """HTTPS_PROXY is used for the API host unless NO_PROXY names it."""
    from runcomfy_async._transport import env_proxy

    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "storage.example.com")
    env_proxy.cache_clear()
    try:
        proxy = env_proxy("https", "model-api.runcomfy.net")
        assert proxy is not None and proxy.host == "proxy.internal"
        assert env_proxy("https", "storage.example.com") is None
        assert env_proxy("http", "model-api.runcomfy.net") is None
    finally:
        env_proxy.cache_clear()


async def test_run_deadline_counts_from_the_call(client: Client, sim: Simulator) -> None:
    """A submit that uses up run()'s deadline is not cut; the queued job is then cancelled."""
    sim.add_fault(Fault("slow", "submit", delay=0.3))
    sim.script_next(JobScript(queue_polls=100))
    with pytest.raises(rc.WaitTimeoutError):
        await client.run(WAN25, GOOD_INPUTS, timeout=0.2)
    assert sim.stats.jobs_created == 1
    assert sim.count("cancel") == 1

"""The spend ceiling over real HTTP: reservations, settlement, refusals, map at the limit."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import anyio
import pytest

from runcomfy_async import (
    TOKEN_ENV,
    Client,
    InsufficientBalanceError,
    JobState,
    NotFoundError,
    PollPolicy,
    SpendLimitError,
    SubmitUncertainError,
)
from runcomfy_async.cli import main
from runcomfy_async.cli._args import BASE_URL_ENV
from runcomfy_async.testing import Fault, JobScript, Simulator

from .conftest import FAST_RETRY, GOOD_INPUTS, WAN25

pytestmark = pytest.mark.anyio

FLUX = "acme/flux-lite/text-to-image"
WAN25_JOB = 0.05 * 5  # base_price_usd × the schema's default duration
FAST_POLL = PollPolicy(first_interval=0.0, max_interval=0.0, requests_per_second=1e4, burst=100)


def _client(sim: Simulator, limit: float | None, **options: object) -> Client:
    return Client(
        token=sim.token,
        base_url=sim.url,
        retry=FAST_RETRY,
        polling=FAST_POLL,
        spend_limit_usd=limit,
        **options,  # type: ignore[arg-type]
    )


async def test_2000_concurrent_runs_post_exactly_n(sim: Simulator) -> None:
    """2,000 concurrent run() under a limit that allows exactly 5 jobs send exactly 5 POSTs."""
    n = 5
    async with _client(sim, n * WAN25_JOB) as c:
        results = await asyncio.gather(
            *(c.run(WAN25, GOOD_INPUTS) for _ in range(2000)), return_exceptions=True
        )
        assert c.spent_usd == pytest.approx(n * WAN25_JOB)
    ok = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, SpendLimitError)]
    assert len(ok) == n and len(refused) == 2000 - n
    assert all(r.status is JobState.SUCCEEDED for r in ok)
    assert sim.count("submit") == n
    assert sim.count("model") == 1  # the catalog entry is fetched once per model


async def test_reported_cost_replaces_the_reservation(sim: Simulator) -> None:
    """A finished job's cost replaces its estimate, asked for even without include_cost."""
    sim.script_next(JobScript(queue_polls=0, run_polls=0, cost=0.07))
    async with _client(sim, 10.0) as c:
        await c.run(WAN25, GOOD_INPUTS)
        assert c.spent_usd == pytest.approx(0.07)
    result_calls = [r for r in sim.log if r.route == "result"]
    assert result_calls and all(r.query.get("include_cost") == "true" for r in result_calls)


async def test_refusal_message_names_limit_and_spend(sim: Simulator) -> None:
    """Over the limit: SpendLimitError with the facts, a RunComfyError, nothing sent."""
    async with _client(sim, 0.2) as c:
        with pytest.raises(SpendLimitError) as info:
            await c.run(WAN25, GOOD_INPUTS)
    err = info.value
    assert err.limit_usd == 0.2 and err.estimate_usd == pytest.approx(0.25)
    assert err.spent_usd == 0 and "spend_limit_usd=0.2" in str(err)
    assert sim.count("submit") == 0


async def test_duration_input_prices_seconds(sim: Simulator) -> None:
    """price_unit second: base price × the duration input (10 s costs twice 5 s)."""
    async with _client(sim, 0.4) as c:
        with pytest.raises(SpendLimitError) as info:
            await c.submit(WAN25, {**GOOD_INPUTS, "duration": 10})
        assert info.value.estimate_usd == pytest.approx(0.5)
    async with _client(sim, 0.6) as c:
        await c.submit(WAN25, {**GOOD_INPUTS, "duration": 10})
        assert c.spent_usd == pytest.approx(0.5)
        with pytest.raises(SpendLimitError):
            await c.submit(WAN25, GOOD_INPUTS)  # 0.25 more would pass 0.6
    assert sim.count("submit") == 1


async def test_outputs_asked_for_price_output_models(sim: Simulator) -> None:
    """price_unit output: base price × the count input (num_images), default 1."""
    async with _client(sim, 0.012) as c:
        await c.submit(FLUX, {"prompt": "a fox", "num_images": 3})
        assert c.spent_usd == pytest.approx(0.009)
        with pytest.raises(SpendLimitError) as info:
            await c.submit(FLUX, {"prompt": "a fox", "num_images": 2})
        assert info.value.estimate_usd == pytest.approx(0.006)
        await c.submit(FLUX, {"prompt": "a fox"})  # the schema's default: one image
        assert c.spent_usd == pytest.approx(0.012)
    assert sim.count("submit") == 2


async def test_refused_submit_frees_the_reservation(sim: Simulator) -> None:
    """A submit the server refused (402) created nothing: its reservation is given back."""
    sim.add_fault(Fault("insufficient_balance", route="submit"))
    async with _client(sim, 0.25) as c:
        with pytest.raises(InsufficientBalanceError):
            await c.submit(WAN25, GOOD_INPUTS)
        assert c.spent_usd == 0
        await c.submit(WAN25, GOOD_INPUTS)  # the whole limit is available again
    assert sim.count("submit") == 2


async def test_uncertain_submit_keeps_the_estimate(sim: Simulator) -> None:
    """A submit that may have created a job keeps its estimate as spent."""
    sim.add_fault(Fault("server_error", route="submit"))
    async with _client(sim, 0.4) as c:
        with pytest.raises(SubmitUncertainError):
            await c.submit(WAN25, GOOD_INPUTS)
        assert c.spent_usd == pytest.approx(0.25)
        with pytest.raises(SpendLimitError):
            await c.submit(WAN25, GOOD_INPUTS)


async def test_cancelled_while_queued_frees_it(sim: Simulator) -> None:
    """A job cancelled while queued costs nothing: its reservation is freed."""
    async with _client(sim, 0.25) as c:
        handle = await c.submit(WAN25, GOOD_INPUTS)
        assert c.spent_usd == pytest.approx(0.25)
        answer = await handle.cancel()
        assert answer.cancelled and c.spent_usd == 0
        await c.submit(WAN25, GOOD_INPUTS)


async def test_run_cancelled_by_timeout_frees_it(sim: Simulator) -> None:
    """run() abandoned by asyncio.timeout while queued: remote cancel, reservation freed."""
    sim.script_next(JobScript(queue_polls=10_000))
    async with _client(sim, 0.25) as c:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await c.run(WAN25, GOOD_INPUTS)
        assert sim.count("cancel") == 1 and c.spent_usd == 0


async def test_cost_that_never_arrives_keeps_the_estimate(sim: Simulator) -> None:
    """A job whose result never comes (expired) keeps its estimate."""
    async with _client(sim, 1.0) as c:
        handle = await c.submit(WAN25, GOOD_INPUTS)
        sim.expire(handle.request_id)
        with pytest.raises(NotFoundError):
            await handle.wait()
        assert c.spent_usd == pytest.approx(0.25)


async def test_unpriceable_model_is_refused_with_how_to_price(sim: Simulator) -> None:
    """A model priced per second without a duration is refused, and the message says how."""
    sim.register_model(
        "acme/silent/text-to-video",
        input_schema={"type": "object", "properties": {"prompt": {"type": "string"}}},
    )
    model = "acme/silent/text-to-video"
    async with _client(sim, 1.0, prices_usd={"acme/other/x": 0.1}) as c:
        with pytest.raises(SpendLimitError) as info:
            await c.submit(model, {"prompt": "x"})
        message = str(info.value)
        assert "duration" in message and "price_usd=" in message and "prices_usd" in message
        assert info.value.estimate_usd is None and sim.count("submit") == 0
        await c.submit(model, {"prompt": "x"}, price_usd=0.3)
        assert c.spent_usd == pytest.approx(0.3)
    async with _client(sim, 1.0, prices_usd={model: 0.4}) as c:
        await c.submit(model, {"prompt": "x"})
        assert c.spent_usd == pytest.approx(0.4)
    assert sim.count("submit") == 2


async def test_bad_prices_are_refused_at_once(sim: Simulator) -> None:
    """A negative or NaN limit or price is a ValueError before anything is sent."""
    with pytest.raises(ValueError, match="spend_limit_usd"):
        _client(sim, -1.0)
    with pytest.raises(ValueError, match="prices_usd"):
        _client(sim, 1.0, prices_usd={WAN25: float("nan")})
    async with _client(sim, 1.0) as c:
        with pytest.raises(ValueError, match="price_usd"):
            await c.run(WAN25, GOOD_INPUTS, price_usd=-0.1)
    assert sim.count("submit") == 0


async def test_map_stops_at_the_limit(sim: Simulator) -> None:
    """map() submits what the limit allows; every other item carries SpendLimitError."""
    sim.script_next(JobScript(queue_polls=0, run_polls=0), count=10)
    async with _client(sim, 3 * WAN25_JOB) as c:
        outcomes = [o async for o in c.map(WAN25, [GOOD_INPUTS] * 10, concurrency=2)]
    assert len(outcomes) == 10
    assert sorted(o.index for o in outcomes) == list(range(10))
    assert sum(o.ok for o in outcomes) == 3
    refused = [o for o in outcomes if not o.ok]
    assert all(isinstance(o.error, SpendLimitError) for o in refused)
    assert sim.count("submit") == 3


async def test_without_a_limit_nothing_changes(sim: Simulator) -> None:
    """No limit: no catalog fetch, no forced include_cost; reported costs still counted."""
    async with _client(sim, None) as c:
        await c.run(WAN25, GOOD_INPUTS)
        assert c.spent_usd == 0
        assert sim.count("model") == 0
        assert all("include_cost" not in r.query for r in sim.log)
    async with _client(sim, None, include_cost=True) as c:
        await c.run(WAN25, GOOD_INPUTS)
        assert c.spent_usd == pytest.approx(0.25)


async def test_cli_batch_max_spend_stops_and_prints_the_total(
    sim: Simulator,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """runcomfy batch --max-spend submits what fits, marks the rest, prints the total."""
    monkeypatch.setenv(TOKEN_ENV, sim.token)
    monkeypatch.setenv(BASE_URL_ENV, sim.url)
    sim.script_next(JobScript(queue_polls=0, run_polls=0), count=5)
    inputs = tmp_path / "in.jsonl"
    inputs.write_text("\n".join([json.dumps(GOOD_INPUTS)] * 5))
    code = await anyio.to_thread.run_sync(
        main, ["batch", WAN25, str(inputs), "--concurrency", "1", "--max-spend", "0.5"]
    )
    captured = capsys.readouterr()
    lines = [json.loads(line) for line in captured.out.splitlines() if line.strip()]
    assert sum(line["ok"] for line in lines) == 2 and len(lines) == 5
    assert {line.get("error_type") for line in lines if not line["ok"]} == {"SpendLimitError"}
    assert "spent $0.5000 of --max-spend $0.5" in captured.err
    assert code != 0 and sim.count("submit") == 2

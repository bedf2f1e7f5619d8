"""The spend ceiling: ``Client(spend_limit_usd=...)``, ``client.spent_usd``.

Before a submit, the job's price is estimated (``price_usd=`` on the call, the client's
``prices_usd`` table, or the catalog entry: ``base_price_usd`` × seconds of output for
``price_unit == "second"``, × outputs asked for for ``"output"``) and *reserved*, in one
synchronous step with no ``await`` between the check and the booking — so however many
tasks submit at once, reserved + spent never passes the limit. The reservation is then:

* replaced by the job's reported ``cost`` when a result shows it finished (that fetch asks
  for ``include_cost`` even when the session does not);
* kept as spent when it finished without a cost, or when the submit may have created a
  job (:class:`~runcomfy_async.SubmitUncertainError`) or was cancelled mid-way;
* freed when the submit was refused (nothing created) or the job was cancelled while
  queued.

Amounts are kept in integer micro-dollars, so a limit of exactly N jobs admits N.
"""

from __future__ import annotations

import contextvars
import itertools
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, TypeVar

import anyio

from ._errors import RunComfyError, SpendLimitError, SubmitUncertainError
from ._otel import FACTS
from ._routes import Routes
from ._submit import OrphanHook, Submitter
from ._wire import JobState, Result, Status

if TYPE_CHECKING:
    from ._catalog import Catalog
    from ._wire import CancelResult, ModelInfo, SubmitResponse

__all__ = [
    "PRICE_USD",
    "SpendLedger",
    "SpendRoutes",
    "SpendingSubmitter",
    "estimate_usd",
    "stop_at_limit",
]

T = TypeVar("T")

#: The ``price_usd=`` of the call under way (a context variable, so it reaches the submit
#: through the run and keyed-run layers without threading a parameter through each).
PRICE_USD: Final[contextvars.ContextVar[float | None]] = contextvars.ContextVar(
    "runcomfy_price_usd", default=None
)

#: Input names that say how many outputs a job makes (an integer, or a list's length).
COUNT_INPUTS: Final = (
    "num_images",
    "num_outputs",
    "num_videos",
    "num_audios",
    "num_samples",
    "number_of_images",
    "batch_size",
    "n",
)
DURATION_INPUT: Final = "duration"
_MICRO: Final = 1_000_000
_HOW: Final = "pass price_usd= on this call, or Client(prices_usd={model_id: usd_per_job})"


def _micro(usd: float) -> int:
    return math.ceil(round(usd * _MICRO, 3))


def check_price(price: float | None, what: str = "price_usd") -> float | None:
    """Refuse a price that is not a finite number >= 0.

    Raises:
        ValueError: Negative, NaN, infinite or not a number.
    """
    if price is None:
        return None
    if isinstance(price, bool) or not isinstance(price, int | float) or not price >= 0:
        raise ValueError(f"{what} must be a number of USD >= 0, got {price!r}")
    if math.isinf(price):
        raise ValueError(f"{what} must be finite, got {price!r}")
    return float(price)


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        return None
    return float(value)


def _input_or_default(info: ModelInfo, inputs: Mapping[str, object], name: str) -> object:
    if name in inputs:
        return inputs[name]
    spec = (info.input_schema.get("properties") or {}).get(name)
    return spec.get("default") if isinstance(spec, dict) else None


def estimate_usd(info: ModelInfo, inputs: Mapping[str, object]) -> float | str:
    """A job's estimated price from its catalog entry, or why it cannot be estimated."""
    price = _number(info.base_price_usd)
    if price is None:
        return f"its catalog entry has no usable base_price_usd ({info.base_price_usd!r})"
    if info.price_unit == "second":
        seconds = _number(_input_or_default(info, inputs, DURATION_INPUT))
        if seconds is None:
            return "it is priced per second, but neither the inputs nor its schema give a duration"
        return price * seconds
    if info.price_unit == "output":
        properties = info.input_schema.get("properties") or {}
        name = next((n for n in COUNT_INPUTS if n in properties or n in inputs), None)
        if name is None:
            return price
        value = _input_or_default(info, inputs, name)
        count = len(value) if isinstance(value, list) else _number(value)
        return price * (1.0 if count is None else max(1.0, float(count)))
    return f"its price_unit {info.price_unit!r} is neither 'second' nor 'output'"


class SpendLedger:
    """One session's spend: settled costs, and reservations of jobs not yet settled.

    Shared by a client and all its views. Every method is synchronous: between checking
    the limit and booking a reservation there is no ``await``, hence no other task.

    Args:
        limit_usd: The ceiling, or None for none (then costs are only counted).
        prices_usd: Per-job prices by model id, overriding the catalog's estimate.
    """

    def __init__(self, limit_usd: float | None, prices_usd: Mapping[str, float] | None) -> None:
        checked = check_price(limit_usd, "spend_limit_usd")
        self.limit_usd = checked
        self._limit = None if checked is None else _micro(checked)
        self.prices_usd = {m: check_price(p, "prices_usd") for m, p in (prices_usd or {}).items()}
        self._spent = 0
        self._reserved = 0
        self._tickets: dict[int, int] = {}  # reservation → micro-USD, before the id is known
        self._jobs: dict[str, int] = {}  # request id → micro-USD reserved for it
        self._seq = itertools.count()

    @property
    def limited(self) -> bool:
        return self._limit is not None

    @property
    def spent_usd(self) -> float:
        """Settled costs plus open reservations."""
        return (self._spent + self._reserved) / _MICRO

    def reserve(self, model_id: str, estimate: float | str) -> int:
        """Book ``estimate`` against the limit and return the reservation's ticket.

        Raises:
            SpendLimitError: The price is unknown (``estimate`` says why), or it would take
                spent + reserved past the limit. Nothing is booked.
        """
        assert self._limit is not None
        total = self.spent_usd
        if isinstance(estimate, str):
            raise SpendLimitError(
                f"submit to {model_id} refused under spend_limit_usd={self.limit_usd:g}: its "
                f"price cannot be estimated ({estimate}); {_HOW}",
                model_id=model_id,
                limit_usd=self.limit_usd or 0.0,
                spent_usd=total,
                estimate_usd=None,
            )
        amount = _micro(estimate)
        if self._spent + self._reserved + amount > self._limit:
            raise SpendLimitError(
                f"submit to {model_id} refused: its estimated ${estimate:.6g} would take the "
                f"session's ${total:.6g} (spent + reserved) past spend_limit_usd="
                f"{self.limit_usd:g}; nothing was sent",
                model_id=model_id,
                limit_usd=self.limit_usd or 0.0,
                spent_usd=total,
                estimate_usd=estimate,
            )
        ticket = next(self._seq)
        self._tickets[ticket] = amount
        self._reserved += amount
        return ticket

    def bind(self, ticket: int, request_id: str) -> None:
        """The submit created ``request_id``: its reservation now waits for its result."""
        self._jobs[request_id] = self._jobs.get(request_id, 0) + self._tickets.pop(ticket)

    def free(self, ticket: int) -> None:
        """The submit created nothing: give the reservation back."""
        self._reserved -= self._tickets.pop(ticket)

    def keep(self, ticket: int) -> None:
        """A job may exist but will never be settled: its estimate counts as spent."""
        amount = self._tickets.pop(ticket)
        self._reserved -= amount
        self._spent += amount

    def track(self, request_id: str) -> None:
        """Count ``request_id``'s cost when it shows up (no reservation: no limit)."""
        self._jobs.setdefault(request_id, 0)

    def tracks(self, request_id: str) -> bool:
        return request_id in self._jobs

    def settle(self, request_id: str, result: Result) -> None:
        """A result arrived: a finished job's cost (or estimate) replaces its reservation."""
        if result.status not in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED):
            return
        amount = self._jobs.pop(request_id, None)
        if amount is None:
            return
        self._reserved -= amount
        if result.cost is not None and _number(result.cost) is not None:
            self._spent += _micro(result.cost)
        elif result.status is not JobState.CANCELLED:
            self._spent += amount  # finished, cost never arrived: the estimate stands

    def cancelled(self, request_id: str) -> None:
        """The job was cancelled while queued: nothing is billed."""
        amount = self._jobs.pop(request_id, None)
        if amount is not None:
            self._reserved -= amount


class SpendRoutes(Routes):
    """Routes that settle the ledger from results and cancels (one per token and view).

    They also tell the run under way (telemetry's :data:`~._otel.FACTS`, when on) of
    each status poll (a ``/result`` poll counts as one).
    """

    def __init__(self, *args: Any, ledger: SpendLedger, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ledger = ledger

    async def result(self, request_id: str, *, include_cost: bool | None = None) -> Result:
        result = await super().result(request_id, include_cost=include_cost)
        self.ledger.settle(request_id, result)
        return result

    def _with_cost(self, request_id: str, include_cost: bool | None) -> bool:
        ledger = self.ledger
        if ledger.limited and ledger.tracks(request_id):
            return True  # the cost replaces the reservation
        return super()._with_cost(request_id, include_cost)

    def _polled(self, request_id: str, answer: Status | Result) -> None:
        facts = FACTS.get()
        if isinstance(answer, Result):
            self.ledger.settle(request_id, answer)
            if facts is not None:
                facts.saw(Status(request_id=answer.request_id, status=answer.status.value))
        elif facts is not None:
            facts.saw(answer)

    async def cancel(self, request_id: str) -> CancelResult:
        answer = await super().cancel(request_id)
        if answer.cancelled:
            self.ledger.cancelled(request_id)
        return answer


class SpendingSubmitter(Submitter):
    """A :class:`Submitter` whose submits first reserve their price under the limit.

    Args:
        routes: The routes submits go through.
        max_in_flight: Submit POSTs under way at once.
        ledger: The session's ledger.
        catalog: Where estimates come from (each model's entry fetched once).
    """

    def __init__(
        self, routes: Routes, *, max_in_flight: int, ledger: SpendLedger, catalog: Catalog
    ) -> None:
        super().__init__(routes, max_in_flight=max_in_flight)
        self._ledger = ledger
        self._catalog = catalog
        self._fetching: dict[str, anyio.Lock] = {}  # one catalog fetch per model at a time

    async def _info(self, model_id: str) -> ModelInfo:
        lock = self._fetching.setdefault(model_id, anyio.Lock())
        async with lock:  # thousands of first submits wait for one fetch, then hit the cache
            return await self._catalog.info(model_id)

    async def submit(
        self,
        model_id: str,
        inputs: Mapping[str, object],
        *,
        on_orphan: OrphanHook | None = None,
    ) -> SubmitResponse:
        """Reserve the job's price, then submit (see :meth:`Submitter.submit`).

        Raises:
            SpendLimitError: Over the limit, or a price that cannot be estimated; nothing
                was sent.
        """
        ledger = self._ledger
        if not ledger.limited:
            response = await super().submit(model_id, inputs, on_orphan=on_orphan)
            ledger.track(response.request_id)
            return _told(response)
        estimate: float | str | None = PRICE_USD.get()
        if estimate is None:
            estimate = ledger.prices_usd.get(model_id)
        if estimate is None:
            estimate = estimate_usd(await self._info(model_id), inputs)
        ticket = ledger.reserve(model_id, estimate)  # no await between check and booking
        try:
            response = await super().submit(model_id, inputs, on_orphan=on_orphan)
        except SubmitUncertainError:
            ledger.keep(ticket)
            raise
        except RunComfyError:
            ledger.free(ticket)  # refused or never sent: nothing was created
            raise
        except BaseException:
            ledger.keep(ticket)  # cancelled: a POST on the wire may have created a job
            raise
        ledger.bind(ticket, response.request_id)
        return _told(response)


def _told(response: SubmitResponse) -> SubmitResponse:
    facts = FACTS.get()
    if facts is not None:
        facts.request_id = response.request_id
        facts.submitted = time.monotonic()
    return response


def stop_at_limit(
    run: Callable[..., Awaitable[T]], ledger: SpendLedger
) -> Callable[..., Awaitable[T]]:
    """``run`` for ``map``: once the limit refused one item, every later item is refused too.

    Each item not submitted then ends as an outcome carrying :class:`SpendLimitError`,
    without a request, so a batch stops spending at the limit.
    """
    if not ledger.limited:
        return run
    first: list[SpendLimitError] = []

    async def guarded(*args: Any, **kwargs: Any) -> T:
        if first:
            raise SpendLimitError(
                f"not submitted: the batch stopped at spend_limit_usd={ledger.limit_usd:g} "
                f"(${ledger.spent_usd:.6g} spent + reserved)",
                model_id=first[0].model_id,
                limit_usd=first[0].limit_usd,
                spent_usd=ledger.spent_usd,
                estimate_usd=first[0].estimate_usd,
            )
        try:
            return await run(*args, **kwargs)
        except SpendLimitError as exc:
            if exc.estimate_usd is not None:
                first.append(exc)
            raise

    return guarded

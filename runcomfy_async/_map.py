"""``Client.map``: many runs with bounded concurrency, outcomes in completion order.

The workers live in an anyio task group hosted by a background task; the generator the
caller iterates only receives from a memory object stream. So it never yields inside a
cancel scope or task group (anyio's rule for async generators), and leaving the loop
early — ``break``, an exception, ``aclose()`` — is one cancellation of that task: no
further item starts, and running items are cancelled, which for ``run`` sends the
watcher's shielded remote cancel to jobs still queued (``cancel_on_exit``).

It is *pull*, not push: ``concurrency`` items start at once, and each later item only
once the consumer has taken an outcome and asked for the next. So a consumer that
breaks out of the loop but still holds the generator starts nothing more. Used as
``async with client.map(...) as outcomes:``, leaving the block closes it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
)
from typing import TYPE_CHECKING, Any, Final, TypeAlias, TypeVar

import anyio
import msgspec
from anyio.abc import ObjectSendStream

from ._errors import RunComfyError
from ._keyed import OnUncertain, check_key, check_on_uncertain
from ._run import check_timeout
from ._wire import Result, check_model_id

if TYPE_CHECKING:
    from .models import ModelInput

__all__ = ["DEFAULT_MAP_CONCURRENCY", "MapItem", "MapOutcome", "MapOutcomes", "map_runs"]

T = TypeVar("T")

MapItem: TypeAlias = "Mapping[str, object] | ModelInput"
"""One input of ``map``: a mapping (for the given model id) or a typed input."""

DEFAULT_MAP_CONCURRENCY: Final = 16
"""Items one ``map`` keeps in flight (submitted and not yet finished) by default."""


class MapOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """One item's outcome in :meth:`Client.map`: its result or its error, never both.

    Attributes:
        index: The item's position in the inputs (0-based).
        key: The item's journal key, when keys were given.
        result: The job's result, when it succeeded.
        error: What went wrong for this item: ``JobFailedError``, ``JobCancelledError``,
            ``WaitTimeoutError``, ``InputValidationError``, ``SubmitUncertainError`` (an
            ``UncertainKeyError`` for a key), ``KeyConflictError``, ``JournalError``, an
            ``APIStatusError`` or a ``TransportError``.
    """

    index: int
    key: str | None = None
    result: Result | None = None
    error: RunComfyError | None = None

    @property
    def ok(self) -> bool:
        """Whether the item succeeded (then ``result`` is set)."""
        return self.error is None


def _check_item(model_id: str | None, item: MapItem) -> str | None:
    """Return the model id a mapping item runs with, or None for a typed input.

    Raises:
        TypeError: A mapping item with no model id given to ``map``.
        ValueError: A typed input for another model than the one given to ``map``.
    """
    if isinstance(item, Mapping):
        if model_id is None:
            raise TypeError("map(typed_inputs): got a mapping item; pass map(model_id, inputs)")
        return model_id
    if model_id is not None and item.model_id != model_id:
        raise ValueError(f"map({model_id!r}, ...) got an input for {item.model_id!r}")
    return None


def map_runs(
    run: Callable[..., Awaitable[Result]],
    model: str | Iterable[MapItem] | AsyncIterable[MapItem],
    inputs: Iterable[MapItem] | AsyncIterable[MapItem] | None,
    *,
    concurrency: int,
    keys: Iterable[str] | None,
    timeout: float | None,
    cancel_on_exit: bool,
    on_uncertain: OnUncertain,
    journaled: bool,
) -> MapOutcomes:
    """Check ``Client.map``'s arguments at once, then run each item with ``run``.

    Args:
        run: ``Client.run``, called once per item.
        model: A model id, or the typed inputs (then ``inputs`` is None).
        inputs: The inputs for a model id.
        concurrency: Items in flight at once.
        keys: One journal key per item, or None.
        timeout: Each item's deadline.
        cancel_on_exit: Cancel a still-queued job whose wait is abandoned.
        on_uncertain: For keys journaled as possibly submitted.
        journaled: Whether the client has a journal (``keys`` need one).

    Raises:
        ValueError: A bad option, or ``keys`` without a journal.
        TypeError: Neither ``map(model_id, inputs)`` nor ``map(typed_inputs)``.
    """
    check_timeout(timeout)
    if not isinstance(concurrency, int) or concurrency < 1:
        raise ValueError(f"concurrency must be a positive integer, got {concurrency!r}")
    if keys is not None and not journaled:
        raise ValueError("map(keys=...) needs Client(journal=...)")
    check_on_uncertain(on_uncertain)
    model_id = check_model_id(model) if isinstance(model, str) else None
    items = inputs if isinstance(model, str) else model
    if items is None or (model_id is None and inputs is not None):
        raise TypeError("call map(model_id, inputs) or map(typed_inputs)")
    options = {
        "timeout": timeout,
        "cancel_on_exit": cancel_on_exit,
        "on_uncertain": on_uncertain,
    }

    async def run_one(item: MapItem, key: str | None) -> Result:
        if isinstance(item, Mapping):
            return await run(model_id, item, key=key, **options)
        return await run(item, key=key, **options)

    return MapOutcomes(
        map_outcomes(
            run_one,
            items,
            keys=keys,
            concurrency=concurrency,
            check=lambda item: _check_item(model_id, item),
        )
    )


class MapOutcomes(AsyncGenerator[MapOutcome, None]):
    """``Client.map``'s outcomes: an async generator that is also an async context manager.

    ``async with client.map(...) as outcomes: async for o in outcomes: ...`` closes the
    batch on leaving the block — items still running are cancelled (queued jobs remotely),
    however the block is left.
    """

    def __init__(self, gen: AsyncGenerator[MapOutcome, None]) -> None:
        self._gen = gen

    def __aiter__(self) -> MapOutcomes:
        return self

    async def __anext__(self) -> MapOutcome:
        return await self._gen.__anext__()

    async def asend(self, value: None) -> MapOutcome:
        return await self._gen.asend(value)

    async def athrow(self, *args: Any) -> MapOutcome:
        return await self._gen.athrow(*args)

    async def aclose(self) -> None:
        await self._gen.aclose()

    async def __aenter__(self) -> MapOutcomes:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._gen.aclose()


async def map_outcomes(
    run_one: Callable[[T, str | None], Awaitable[Result]],
    items: Iterable[T] | AsyncIterable[T],
    *,
    keys: Iterable[str] | None,
    concurrency: int,
    check: Callable[[T], object] | None = None,
) -> AsyncGenerator[MapOutcome, None]:
    """Run ``run_one`` over ``items``, at most ``concurrency`` at a time, yielding outcomes.

    Outcomes come in completion order. A :class:`RunComfyError` becomes that item's
    outcome; anything else (a bug, a broken iterable, too few keys) stops the batch and
    is raised here. Items are pulled lazily, one per free slot, so an endless iterable
    works. Cleanup on early exit finishes before the generator does.

    Args:
        run_one: Runs one item, given the item and its key.
        items: The items, a plain or an async iterable.
        keys: One key per item, or None.
        concurrency: Items run at once.
        check: Called on each item before it starts; whatever it raises (a misuse)
            stops the batch, once, before any later item starts.
    """
    send, receive = anyio.create_memory_object_stream[MapOutcome](concurrency)
    # A slot is taken by each item started and given back when the consumer asks for
    # the outcome after the one it took: pull, not push.
    slots = anyio.Semaphore(concurrency)
    pump = asyncio.create_task(_feed(run_one, items, keys, slots, check, send))
    try:
        async for outcome in receive:
            yield outcome
            slots.release()
        try:
            await pump
        except BaseExceptionGroup as group:
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            raise
    finally:
        receive.close()
        if not pump.done():
            pump.cancel()
            with anyio.CancelScope(shield=True):
                await asyncio.wait({pump})
        if not pump.cancelled():
            pump.exception()  # retrieved: raised above, or moot once the consumer left


class _End:
    """Marks the end of the items."""


_END: Final = _End()


async def _feed(
    run_one: Callable[[T, str | None], Awaitable[Result]],
    items: Iterable[T] | AsyncIterable[T],
    keys: Iterable[str] | None,
    slots: anyio.Semaphore,
    check: Callable[[T], object] | None,
    send: ObjectSendStream[MapOutcome],
) -> None:
    iterator = aiter(items) if isinstance(items, AsyncIterable) else iter(items)
    key_iter = None if keys is None else iter(keys)
    async with send, anyio.create_task_group() as tg:
        index = 0
        while True:
            # A slot first, then the item: a long (or endless) iterable is pulled lazily.
            await slots.acquire()
            item = await _next_item(iterator)
            if isinstance(item, _End):
                slots.release()
                return
            key = None if key_iter is None else _next_key(key_iter, index)
            if check is not None:
                check(item)
            tg.start_soon(_work, run_one, index, item, key, send)
            index += 1


async def _next_item(iterator: Iterator[T] | AsyncIterator[T]) -> T | _End:
    if isinstance(iterator, AsyncIterator):
        try:
            return await anext(iterator)
        except StopAsyncIteration:
            return _END
    return next(iterator, _END)


def _next_key(keys: Iterator[str], index: int) -> str:
    key = next(keys, None)
    if key is None:
        raise ValueError(f"map(keys=...) ran out of keys at input {index}")
    return check_key(key)


async def _work(
    run_one: Callable[[T, str | None], Awaitable[Result]],
    index: int,
    item: T,
    key: str | None,
    send: ObjectSendStream[MapOutcome],
) -> None:
    try:
        result = await run_one(item, key)
    except RunComfyError as exc:
        outcome = MapOutcome(index=index, key=key, error=exc)
    else:
        outcome = MapOutcome(index=index, key=key, result=result)
    # The consumer may have left already; the batch is then being torn down.
    with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
        await send.send(outcome)

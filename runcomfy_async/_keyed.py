"""Keyed, resumable runs: ``client.run(..., key=k)`` with ``Client(journal=...)``.

A keyed run follows its key's state in the journal (``_journal``)::

    no entry   → record intent, POST, record request id, wait, record outcome
    submitted  → re-attach to the request: no new POST
    finished   → return the stored result: no request at all
    failed     → re-raise the stored failure (JobFailedError): no request at all. The
                 run was paid for and ended; paying again is the caller's decision,
                 made by running the item under a new key
    intent     → the process stopped mid-submit, so a job may exist: raise
    uncertain    UncertainKeyError, unless on_uncertain="resubmit"

A job that ends *cancelled* produced nothing and cost nothing, so its key is freed: a
rerun that re-attaches to a job cancelled by an earlier, abandoned run submits it afresh.
So a batch is rerun until every key is finished; only uncertain keys need a decision.

The intent write, the POST and the request-id write run in one shielded block, so that
cancelling a run never leaves a key looking uncertain when it had only waited for its
turn: runs queue for a slot (``max_submits_in_flight`` of them) *before* the intent,
where cancelling is harmless, and a run cancelled inside the block finishes its POST,
records the id, and then cancels the job remotely if it is still queued (the watcher's
``cancel_on_exit``). Only a native ``Task.cancel()`` (``asyncio.wait_for``) can cut the
POST short; the key then stays ``intent``, which is the truth: a job may exist.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Final, Literal, TypeAlias

import anyio
import msgspec

from ._errors import (
    JobCancelledError,
    JobFailedError,
    JournalError,
    KeyConflictError,
    RunComfyError,
    SubmitUncertainError,
    UncertainKeyError,
)
from ._journal import EntryState, Journal, JournalEntry, encode_inputs
from ._run import Runner
from ._wire import Result, SubmitResponse

__all__ = ["KeyedRuns", "OnUncertain", "check_key", "check_on_uncertain"]

logger: Final = logging.getLogger("runcomfy_async")

OnUncertain: TypeAlias = Literal["raise", "resubmit"]
"""What a keyed run does with a key whose earlier submit may have created a job."""


def check_key(key: object) -> str:
    """Return ``key`` if it is a usable journal key (a non-empty string).

    Raises:
        ValueError: Not a non-empty string.
    """
    if not isinstance(key, str) or not key:
        raise ValueError(f"a journal key must be a non-empty string, got {key!r}")
    return key


def check_on_uncertain(policy: object) -> OnUncertain:
    """Return ``policy`` if it is ``"raise"`` or ``"resubmit"``.

    Raises:
        ValueError: Any other value.
    """
    if policy == "raise" or policy == "resubmit":
        return policy
    raise ValueError(f"on_uncertain must be 'raise' or 'resubmit', not {policy!r}")


class _KeyLock:
    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = anyio.Lock()
        self.users = 0


class KeyedRuns:
    """One client's journal plus what keyed runs share in the process.

    Args:
        journal: The journal (opened on first use).
        runner: The session's runs (submits and waits).
        max_submits: Keyed submits under way at once (the session's submit bound).
    """

    def __init__(self, journal: Journal, runner: Runner, *, max_submits: int) -> None:
        self.journal = journal
        self._runner = runner
        self._slots = anyio.CapacityLimiter(max_submits)
        self._keys: dict[str, _KeyLock] = {}

    @asynccontextmanager
    async def _holding(self, key: str) -> AsyncIterator[None]:
        """Serialise runs of one key in this process (a second one then re-attaches)."""
        entry = self._keys.get(key)
        if entry is None:
            entry = self._keys[key] = _KeyLock()
        entry.users += 1
        try:
            async with entry.lock:
                yield
        finally:
            entry.users -= 1
            if not entry.users:
                del self._keys[key]

    async def run(
        self,
        model_id: str,
        body: dict[str, object],
        *,
        key: str,
        timeout: float | None,
        cancel_on_exit: bool,
        on_uncertain: OnUncertain,
    ) -> Result:
        """Run one keyed job: resume it from the journal, or submit it once.

        Raises:
            KeyConflictError: The key is journaled with another model or other inputs.
            UncertainKeyError: The key's submit may have created a job (see the module).
            JournalError: The journal could not be read or written.
            RunComfyError: As :meth:`Client.run`.
        """
        check_on_uncertain(on_uncertain)
        inputs_json = encode_inputs(body)
        job = _Job(key, model_id, timeout=timeout, cancel_on_exit=cancel_on_exit)
        async with self._holding(key):
            entry = await self.journal.lookup(key)
            replace = False
            if entry is not None:
                _check_same(entry, model_id, inputs_json)
                if entry.state is EntryState.SUBMITTED:
                    assert entry.request_id is not None
                    try:
                        return await self._wait(job, entry.request_id, fresh=False)
                    except JobCancelledError:
                        pass  # abandoned and cancelled by an earlier run: submit afresh
                elif entry.state is EntryState.FINISHED:
                    return _stored(entry)
                elif entry.state is EntryState.FAILED:
                    raise JobFailedError(_stored(entry))
                elif on_uncertain == "resubmit":
                    replace = True
                else:
                    raise _uncertain(entry, body)
            request_id = await self._submit(job, body, inputs_json, replace=replace)
            return await self._wait(job, request_id)

    async def _submit(
        self, job: _Job, body: dict[str, object], inputs_json: bytes, *, replace: bool
    ) -> str:
        key, model_id = job.key, job.model_id
        await self._slots.acquire()  # waiting here is safe to cancel: nothing recorded or sent
        with anyio.CancelScope(shield=True):
            try:
                await self.journal.record_intent(key, model_id, inputs_json, replace=replace)
                response = await self._post(key, model_id, body)
            finally:
                # The slot bounds POSTs under way; the id's write below needs none.
                self._slots.release()
            await self.journal.record_submitted(key, response.request_id)
        return response.request_id

    async def _post(self, key: str, model_id: str, body: dict[str, object]) -> SubmitResponse:
        """POST once; journal an ambiguous failure as uncertain, free a refused key."""
        try:
            return await self._runner.submitter.submit(model_id, body)
        except SubmitUncertainError as exc:
            # If this write fails the key stays "intent": uncertain all the same.
            await self._note(key, EntryState.UNCERTAIN, reason=exc.reason)
            raise UncertainKeyError(
                key=key,
                state=EntryState.UNCERTAIN,
                model_id=model_id,
                inputs=body,
                reason=exc.reason,
            ) from exc
        except RunComfyError:
            await self._note(key, None)  # refused, or never sent: no job exists
            raise

    async def _wait(self, job: _Job, request_id: str, *, fresh: bool = True) -> Result:
        # fresh=False on re-attach: the job may have been running for a while, so the
        # learned schedule must not assume it just started.
        try:
            result = await self._runner.wait(
                request_id,
                job.model_id,
                timeout=job.timeout,
                cancel_on_exit=job.cancel_on_exit,
                fresh=fresh,
            )
        except JobFailedError as exc:
            await self._note(job.key, EntryState.FAILED, result=exc.result)
            raise
        except JobCancelledError:
            await self._note(job.key, None)
            raise
        # Anything else (deadline, polling failures, cancellation) keeps the key
        # "submitted": the job may still finish, and a rerun re-attaches to it.
        await self._note(job.key, EntryState.FINISHED, result=result)
        return result

    async def _note(
        self,
        key: str,
        state: EntryState | None,
        *,
        result: Result | None = None,
        reason: str | None = None,
    ) -> None:
        """Record an outcome (``None``: forget the key); a failed write is only logged.

        The caller has the result or error in hand and returns it either way; the key
        then keeps its previous state, which a rerun resolves safely (re-attaching, or
        reporting it uncertain).
        """
        try:
            if state is None:
                await self.journal.forget(key)
            else:
                await self.journal.record_outcome(key, state, result=result, reason=reason)
        except JournalError as exc:
            logger.warning("journal: could not record the outcome of key %r: %s", key, exc)


class _Job(msgspec.Struct, frozen=True):
    key: str
    model_id: str
    timeout: float | None
    cancel_on_exit: bool


def _check_same(entry: JournalEntry, model_id: str, inputs_json: bytes) -> None:
    if entry.model_id != model_id or entry.inputs_json != inputs_json:
        raise KeyConflictError(key=entry.key, model_id=model_id, journaled_model_id=entry.model_id)


def _stored(entry: JournalEntry) -> Result:
    result = entry.result
    assert result is not None
    return result


def _uncertain(entry: JournalEntry, body: Mapping[str, object]) -> UncertainKeyError:
    if entry.state is EntryState.INTENT:
        reason = "the process stopped between recording the intent and the request id"
    else:
        reason = entry.reason or "the submit failed ambiguously"
    return UncertainKeyError(
        key=entry.key,
        state=entry.state,
        model_id=entry.model_id,
        inputs=body,
        reason=f"{reason}; a job may exist, so it was not submitted again",
    )

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

Another process may resume the same journal at the same time (two runs of one batch
script). Every write made for a key is therefore conditional on the row still being the
one this run saw — the attempt token its intent wrote, or the job id it re-attached to
(``... WHERE key = ? AND attempt = ?``) — and after any write that finds the row changed,
the run looks the key up again and follows what the other process recorded: it
re-attaches to the other's job, or waits (bounded) for the other's submit to record its
id. A key is submitted by at most one process.

Cancellation of any kind (an anyio scope, ``Task.cancel()``, ``asyncio.timeout``, a
``TaskGroup``) is prompt and leaves the journal true: runs queue for a slot
(``max_submits_in_flight`` of them) *before* the intent, where cancelling is harmless; a
run cancelled while its intent is being written queues a conditional delete behind it;
a run cancelled with its POST on the wire hands the POST to the session's cleanup, which
records the job's id (``submitted``) and cancels it remotely, so a rerun re-attaches,
sees it cancelled and submits afresh — never a false "uncertain".
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Final, Literal, TypeAlias

import anyio
import msgspec

from ._attempts import LIVE_ATTEMPTS, attempt_in_progress, new_attempt
from ._errors import (
    JobCancelledError,
    JobFailedError,
    JournalError,
    KeyConflictError,
    RunComfyError,
    SubmitTimeoutError,
    SubmitUncertainError,
    UncertainKeyError,
    WaitTimeoutError,
)
from ._journal import EntryState, Journal, JournalEntry, encode_inputs
from ._run import Runner
from ._wire import Result, SubmitResponse

__all__ = ["KeyedRuns", "OnUncertain", "check_key", "check_on_uncertain"]

logger: Final = logging.getLogger("runcomfy_async")

#: Lookups of one key before a run gives up on a key other processes keep rewriting.
_MAX_ROUNDS: Final = 8
#: Seconds to wait for another process's submit of the same key to record its id.
_OTHER_SUBMIT_WAIT: Final = 90.0

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
            raced = False
            for _ in range(_MAX_ROUNDS):
                entry = await self.journal.lookup(key)
                if entry is not None:
                    _check_same(entry, model_id, inputs_json)
                    if entry.state is EntryState.SUBMITTED:
                        assert entry.request_id is not None
                        try:
                            return await self._wait(job, entry.request_id, fresh=False)
                        except JobCancelledError:
                            continue  # abandoned and cancelled by an earlier run: look again
                    if entry.state is EntryState.FINISHED:
                        return _stored(entry)
                    if entry.state is EntryState.FAILED:
                        raise JobFailedError(_stored(entry))
                    if entry.state is EntryState.INTENT and (
                        raced or attempt_in_progress(entry.attempt)
                    ):
                        # Another process is submitting this key right now.
                        await self._await_other(entry)
                        continue
                    if on_uncertain != "resubmit":
                        raise _uncertain(entry, body)
                try:
                    request_id = await self._submit(job, body, inputs_json, replace=entry)
                except _LostRace:
                    raced = True
                    continue
                return await self._wait(job, request_id)
        raise JournalError(
            "the key kept changing under this run (another process writing it?)",
            path=self.journal.path,
            key=key,
        )

    async def _await_other(self, entry: JournalEntry) -> None:
        """Wait (bounded) until another process's intent for the key has moved on."""
        delay = 0.01
        with anyio.move_on_after(_OTHER_SUBMIT_WAIT):
            while True:
                await anyio.sleep(delay)
                delay = min(delay * 2, 0.5)
                now = await self.journal.lookup(entry.key)
                if now is None or now.state is not EntryState.INTENT or now != entry:
                    return
        raise _uncertain(entry, entry.inputs)

    async def _submit(
        self,
        job: _Job,
        body: dict[str, object],
        inputs_json: bytes,
        *,
        replace: JournalEntry | None,
    ) -> str:
        key, model_id = job.key, job.model_id
        await self._slots.acquire()  # waiting here is safe to cancel: nothing recorded or sent
        try:
            attempt = await self._intent(key, model_id, inputs_json, replace)
            try:
                response = await self._post(job, body, attempt)
            except asyncio.CancelledError:
                raise  # the submitter calls on_orphan, which records the outcome
            except BaseException:
                LIVE_ATTEMPTS.discard(attempt)
                raise
        finally:
            # The slot bounds POSTs under way; the id's write below needs none.
            self._slots.release()
        try:
            await self.journal.record_submitted(key, response.request_id, attempt=attempt)
        except asyncio.CancelledError:
            # The write is queued and lands; the job is abandoned before its wait began.
            if job.cancel_on_exit:
                exc = anyio.get_cancelled_exc_class()()
                await self._runner.cancel_on_exit(response.request_id, queued=True, exc=exc)
            raise
        finally:
            LIVE_ATTEMPTS.discard(attempt)
        return response.request_id

    async def _intent(
        self, key: str, model_id: str, inputs_json: bytes, replace: JournalEntry | None
    ) -> str:
        """Record the intent; raise _LostRace if another process wrote the key meanwhile."""
        attempt = new_attempt()
        LIVE_ATTEMPTS.add(attempt)
        try:
            await self.journal.record_intent(
                key, model_id, inputs_json, replace=replace or False, attempt=attempt
            )
        except asyncio.CancelledError:
            # Queued, so it will land: undo it behind it (nothing was sent).
            self.journal.forget_later(key, attempt=attempt)
            LIVE_ATTEMPTS.discard(attempt)
            raise
        except JournalError:
            LIVE_ATTEMPTS.discard(attempt)
            if await self.journal.lookup(key) != replace:
                raise _LostRace from None
            raise
        return attempt

    async def _post(self, job: _Job, body: dict[str, object], attempt: str) -> SubmitResponse:
        """POST once; journal an ambiguous failure as uncertain, free a refused key."""
        key, model_id = job.key, job.model_id

        async def on_orphan(request_id: str | None, reason: str | None) -> None:
            # The caller was cancelled mid-submit; this runs in the session's cleanup.
            try:
                if request_id is not None:
                    await self.journal.record_submitted(key, request_id, attempt=attempt)
                elif reason is not None:
                    await self._note(key, EntryState.UNCERTAIN, reason=reason, attempt=attempt)
                else:
                    await self._note(key, None, attempt=attempt)
            finally:
                LIVE_ATTEMPTS.discard(attempt)

        try:
            return await self._runner.submit(
                model_id, body, timeout=job.timeout, on_orphan=on_orphan
            )
        except (SubmitTimeoutError, WaitTimeoutError):
            raise  # the deadline passed mid-POST: the cleanup records the outcome (on_orphan)
        except SubmitUncertainError as exc:
            # If this write fails the key stays "intent": uncertain all the same.
            await self._note(key, EntryState.UNCERTAIN, reason=exc.reason, attempt=attempt)
            raise UncertainKeyError(
                key=key,
                state=EntryState.UNCERTAIN,
                model_id=model_id,
                inputs=body,
                reason=exc.reason,
            ) from exc
        except RunComfyError:
            await self._note(key, None, attempt=attempt)  # refused, or never sent: no job
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
            await self._note(job.key, EntryState.FAILED, result=exc.result, request_id=request_id)
            raise
        except JobCancelledError:
            await self._note(job.key, None, request_id=request_id)
            raise
        # Anything else (deadline, polling failures, cancellation) keeps the key
        # "submitted": the job may still finish, and a rerun re-attaches to it.
        await self._note(job.key, EntryState.FINISHED, result=result, request_id=request_id)
        return result

    async def _note(
        self,
        key: str,
        state: EntryState | None,
        *,
        result: Result | None = None,
        reason: str | None = None,
        request_id: str | None = None,
        attempt: str | None = None,
    ) -> None:
        """Record an outcome (``None``: forget the key); a failed write is only logged.

        Conditional on the row still holding ``request_id`` / ``attempt``: a row another
        process rewrote is left alone. The caller has the result or error in hand and
        returns it either way; the key then keeps its previous state, which a rerun
        resolves safely (re-attaching, or reporting it uncertain).
        """
        try:
            if state is None:
                await self.journal.forget(key, request_id=request_id, attempt=attempt)
            else:
                await self.journal.record_outcome(
                    key, state, result=result, reason=reason, request_id=request_id, attempt=attempt
                )
        except JournalError as exc:
            logger.warning("journal: could not record the outcome of key %r: %s", key, exc)


class _LostRace(Exception):
    """Another process wrote the key between this run's lookup and its intent."""


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

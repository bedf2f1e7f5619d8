"""The parts one client session shares, built once from its options.

One transport (the connection pool), one set of routes with its retry policy and 429
pause, one poll scheduler, one runner, one catalog cache and, with a journal, the keyed
runs. :class:`~runcomfy_async.Client` holds one and hands each call to the part it
concerns.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ._catalog import Catalog
from ._cleanup import CleanupTasks
from ._journal import Journal
from ._keyed import KeyedRuns, OnUncertain, check_key
from ._poll_budget import PollScheduler
from ._retry import Backpressure
from ._routes import Routes
from ._run import Runner
from ._submit import Submitter
from ._transport import Transport

if TYPE_CHECKING:
    from ._config import Limits, PollPolicy, RetryPolicy, Timeouts
    from ._retry import RetryHook
    from ._wire import Result

__all__ = ["Session"]


class Session:
    """One session's shared parts. See :class:`~runcomfy_async.Client` for the options."""

    def __init__(
        self,
        *,
        token: str,
        base_url: str,
        timeouts: Timeouts,
        retry: RetryPolicy,
        polling: PollPolicy,
        limits: Limits,
        journal: str | os.PathLike[str] | None,
        include_cost: bool,
        trust_env: bool,
        on_retry: RetryHook | None,
    ) -> None:
        self.transport = Transport(
            token=token, base_url=base_url, timeouts=timeouts, limits=limits, trust_env=trust_env
        )
        self.routes = Routes(
            self.transport,
            retry=retry,
            backpressure=Backpressure(),
            include_cost=include_cost,
            on_retry=on_retry,
        )
        self.scheduler = PollScheduler(polling, backpressure=self.routes.backpressure)
        self.cleanups = CleanupTasks()
        self.submitter = Submitter(
            self.routes, max_in_flight=limits.max_submits_in_flight, cleanups=self.cleanups
        )
        self.runner = Runner(self.submitter, self.routes, self.scheduler)
        self.catalog = Catalog(self.routes)
        # The journal file is opened by its first keyed run, not here (no I/O in __init__).
        self.keyed = (
            None
            if journal is None
            else KeyedRuns(Journal(journal), self.runner, max_submits=limits.max_submits_in_flight)
        )

    def check_key(self, key: str | None) -> None:
        """Refuse a key this session cannot honour, before any work is done.

        Raises:
            ValueError: A key without a journal, or an empty key.
        """
        if key is not None:
            if self.keyed is None:
                raise ValueError("run(key=...) needs Client(journal=...)")
            check_key(key)

    async def run(
        self,
        model_id: str,
        body: dict[str, object],
        *,
        key: str | None,
        timeout: float | None,
        cancel_on_exit: bool,
        on_uncertain: OnUncertain,
    ) -> Result:
        """Run one job: keyed over the journal when a key is given, else plainly."""
        if key is None or self.keyed is None:
            return await self.runner.run(
                model_id, body, timeout=timeout, cancel_on_exit=cancel_on_exit
            )
        return await self.keyed.run(
            model_id,
            body,
            key=key,
            timeout=timeout,
            cancel_on_exit=cancel_on_exit,
            on_uncertain=on_uncertain,
        )

    async def aclose(self) -> None:
        """Wait for the cleanup tasks (each bounded), close the pool, then the journal."""
        try:
            await self.cleanups.aclose()
        finally:
            await self.transport.aclose()
        if self.keyed is not None:
            await self.keyed.journal.aclose()

"""A local RunComfy Model API simulator for tests, benchmarks and demos.

It speaks the API of ``runcomfy-api.md`` over real HTTP on loopback: Bearer auth, submit /
status / result / cancel, the seed models' catalog and input schemas (422 on violations), queue
positions, cancel rules, failures, expiry (404001), ``include_cost``, and real PNG / MP4 output
files on a separate storage origin that must never see the token. Jobs follow a scripted clock
(one step per status poll, so tests never sleep) or the wall clock (worker slots and a FIFO
queue). A declarative, counted fault plan injects 429s, 5xx, resets, hangs, malformed JSON and
more; every request is logged for assertions.

Example::

    from runcomfy_async.testing import Simulator, JobScript, Fault, FaultKind

    async with Simulator(script=JobScript(queue_polls=2, run_polls=1)) as sim:
        sim.add_fault(Fault(FaultKind.RATE_LIMIT, "status", retry_after=1))
        ...  # point the client at sim.url with sim.token
        assert sim.count("submit") == 1

The pytest plugin (registered through the ``pytest11`` entry point) offers a ``runcomfy_sim``
fixture; ``python -m runcomfy_async.testing`` serves a simulator from the command line.
"""

from __future__ import annotations

from ._faults import Fault, FaultKind
from ._ratelimit import RateLimit
from ._records import RequestRecord, SimStats
from ._simulator import Simulator
from ._spec import ModelSpec
from ._state import JobScript, JobView

__all__ = [
    "Fault",
    "FaultKind",
    "JobScript",
    "JobView",
    "ModelSpec",
    "RateLimit",
    "RequestRecord",
    "SimStats",
    "Simulator",
]

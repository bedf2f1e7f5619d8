"""A local RunComfy Model API simulator for tests, benchmarks and demos.

It speaks the API of ``runcomfy-api.md`` over real HTTP on loopback: Bearer auth, submit /
status / result / cancel, a catalog (``GET /v1/models`` with search, category, kind and paging;
``GET /v1/models/categories``; ``GET /v1/models/{model_id}``) holding the two Wan seeds plus an
image model priced per output, an audio model and a model taking an ``image_uris`` list, each
with its own input schema (422 on violations) and output shape. Unknown model ids are refused
(400001) unless registered with :meth:`Simulator.register_model`. Queue positions, cancel rules,
failures, expiry (404001), ``include_cost`` by the entry's pricing, and real PNG / MP4 / WAV
output files on a separate storage origin that must never see the token. Jobs follow a scripted
clock (one step per status poll, so tests never sleep) or the wall clock (worker slots and a
FIFO queue). A declarative, counted fault plan injects 429s, 5xx, resets, hangs, malformed JSON,
wrong ids, flapping statuses, echoed tokens, private redirects, dripping downloads and more; a
rate-limit mode (:class:`RateLimit`) answers 429 above a token bucket; every request is logged
for assertions, and ``await sim.wait_for(...)`` waits on that log without polling.

Example::

    from runcomfy_async.testing import Simulator, JobScript, Fault, FaultKind

    async with Simulator(script=JobScript(queue_polls=2, run_polls=1)) as sim:
        sim.add_fault(Fault(FaultKind.RATE_LIMIT, "status", retry_after=1))
        sim.register_model("acme/my-model/v1", output={"audio": "{url}"}, output_files=("a.wav",))
        ...  # point the client at sim.url with sim.token
        await sim.wait_for(count=1, route="submit", answered=True)
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

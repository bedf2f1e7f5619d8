"""What the simulator's handlers share: :class:`SimCore` and the error-answer helpers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Final, Literal

import msgspec
from aiohttp import web

from ._catalog import Catalog
from ._faults import FaultPlan
from ._payloads import TerminalStatus, envelope, render_output
from ._ratelimit import TokenBucket
from ._records import RequestLog
from ._spec import DEFAULT_COST_USD
from ._state import World

__all__ = ["CORE", "ORIGIN", "ApiError", "SimCore", "error_response", "json_response"]

_ENCODER: Final = msgspec.json.Encoder()
_DEFAULT_FILES: Final = ("output.mp4",)


class ApiError(Exception):
    """An error answer, raised by a handler and written as an envelope."""

    def __init__(
        self, status: int, code: int, message: str, detail: object = None, **headers: str
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.detail = status, code, message, detail
        self.headers = headers


def json_response(body: object, status: int = 200) -> web.Response:
    """Encode ``body`` as a JSON answer."""
    return web.Response(body=_ENCODER.encode(body), status=status, content_type="application/json")


def error_response(status: int, code: int, message: str, detail: object = None) -> web.Response:
    """Answer RunComfy's error envelope."""
    return json_response(envelope(code, message, detail), status)


class SimCore:
    """What the handlers share: the world, catalog, fault plan, limiter, logs and settings."""

    def __init__(
        self,
        world: World,
        plan: FaultPlan,
        *,
        catalog: Catalog,
        tokens: frozenset[str],
        unknown_models: Literal["accept", "reject"],
        terminal_status: TerminalStatus,
        result_words: Mapping[str, str],
        now: Callable[[], float],
    ) -> None:
        self.world = world
        self.plan = plan
        self.catalog = catalog
        self.tokens = tokens
        self.unknown_models = unknown_models
        self.terminal_status = terminal_status
        self.result_words = dict(result_words)
        self.now = now
        self.bucket: TokenBucket | None = None
        self.rate_limited = 0
        self.flaps: dict[tuple[int, str], int] = {}
        self.api_log = RequestLog()
        self.storage_log = RequestLog()
        self.base_url = ""
        self.storage_url = ""
        self.closing = asyncio.Event()
        self.connections: Callable[[], int] = lambda: 0

    def files_of(self, request_id: str) -> tuple[str, ...]:
        """The storage file names of a job: its script's, else its model's."""
        info = self.world.info(request_id)
        if info.script.output_files is not None:
            return info.script.output_files
        spec = self.catalog.get(info.model_id)
        inputs = info.inputs if isinstance(info.inputs, dict) else {}
        return _DEFAULT_FILES if spec is None else spec.files(inputs)

    def output_of(self, request_id: str) -> object:
        """A job's ``output`` as ``/result`` answers it once succeeded."""
        info = self.world.info(request_id)
        template = info.script.output
        if template is None:
            spec = self.catalog.get(info.model_id)
            template = "object" if spec is None else spec.output
        return render_output(template, self.files_of(request_id), self.storage_url, request_id)

    def cost_of(self, request_id: str) -> float:
        """A job's ``cost``: its script's, else by its model's pricing."""
        info = self.world.info(request_id)
        if info.script.cost is not None:
            return info.script.cost
        spec = self.catalog.get(info.model_id)
        inputs = info.inputs if isinstance(info.inputs, dict) else {}
        return DEFAULT_COST_USD if spec is None else spec.cost(inputs)


CORE: Final = web.AppKey("runcomfy_sim_core", SimCore)
ORIGIN: Final = web.AppKey("runcomfy_sim_origin", str)

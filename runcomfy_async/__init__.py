"""runcomfy_async: an asyncio-native client for RunComfy's Model API.

Submit a job, watch it move ``in_queue → in_progress → completed``, collect typed
outputs, download the files — safely, for one job or ten thousand::

    async with Client() as client:
        result = await client.run("wan-ai/wan-2-5/image-to-video", {"prompt": "…", "img_url": "…"})
        await client.download(result, "out/")

Only asyncio is supported (aiohttp is asyncio-only).
"""

from __future__ import annotations

from ._client import Client
from ._config import TOKEN_ENV, Limits, PollPolicy, RetryPolicy, Timeouts
from ._download import DownloadProgress
from ._errors import (
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    ConnectError,
    ConnectTimeoutError,
    DownloadRefusedError,
    DownloadTooLargeError,
    InputValidationError,
    InsufficientBalanceError,
    InvalidInputError,
    JobCancelledError,
    JobError,
    JobFailedError,
    JournalError,
    KeyConflictError,
    NetworkError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ReadTimeoutError,
    RequestTimeoutError,
    RunComfyError,
    ServerError,
    SpendLimitError,
    SubmitTimeoutError,
    SubmitUncertainError,
    TransportError,
    UncertainKeyError,
    UnexpectedResponseError,
    WaitTimeoutError,
)
from ._events import Cancelled, Completed, Event, Failed, InProgress, Queued, UnknownStatus
from ._handle import RequestHandle
from ._map import MapOutcome
from ._output import Output
from ._retry import RetryEvent
from ._version import __version__
from ._wire import CancelOutcome, CancelResult, JobState, ModelInfo, Result, Status

__all__ = [
    "APIStatusError",
    "AuthenticationError",
    "BadRequestError",
    "CancelOutcome",
    "CancelResult",
    "Cancelled",
    "Client",
    "Completed",
    "ConnectError",
    "ConnectTimeoutError",
    "DownloadProgress",
    "DownloadRefusedError",
    "DownloadTooLargeError",
    "Event",
    "Failed",
    "InProgress",
    "InputValidationError",
    "InsufficientBalanceError",
    "InvalidInputError",
    "JobCancelledError",
    "JobError",
    "JobFailedError",
    "JobState",
    "JournalError",
    "KeyConflictError",
    "Limits",
    "MapOutcome",
    "ModelInfo",
    "NetworkError",
    "NotFoundError",
    "Output",
    "PermissionDeniedError",
    "PollPolicy",
    "Queued",
    "RateLimitError",
    "ReadTimeoutError",
    "RequestHandle",
    "RequestTimeoutError",
    "Result",
    "RetryEvent",
    "RetryPolicy",
    "RunComfyError",
    "ServerError",
    "SpendLimitError",
    "Status",
    "SubmitTimeoutError",
    "SubmitUncertainError",
    "TOKEN_ENV",
    "Timeouts",
    "TransportError",
    "UncertainKeyError",
    "UnexpectedResponseError",
    "UnknownStatus",
    "WaitTimeoutError",
    "__version__",
]

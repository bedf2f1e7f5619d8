"""The command's exit codes, and which failure maps to which.

One table, used by the dispatcher, the ``--help`` epilog and the README, so the three
never disagree.
"""

from __future__ import annotations

import enum
from typing import Final

from .._errors import (
    BadRequestError,
    InputValidationError,
    JobCancelledError,
    JobFailedError,
    RunComfyError,
    SubmitUncertainError,
    WaitTimeoutError,
)

__all__ = ["EXIT_CODES_HELP", "ExitCode", "exit_code_for"]

_UNKNOWN_MODEL: Final = 400001


class ExitCode(enum.IntEnum):
    """What ``runcomfy`` returns to the shell."""

    OK = 0
    JOB_FAILED = 1
    USAGE = 2
    API_ERROR = 3
    SUBMIT_UNCERTAIN = 4
    WAIT_TIMEOUT = 124  # the code timeout(1) uses, so scripts can treat both alike
    INTERRUPTED = 130  # 128 + SIGINT, the shell convention


EXIT_CODES_HELP: Final = """\
exit codes:
  0    success
  1    a job failed or was cancelled, or a cancel did not cancel
  2    usage error: bad arguments, no API token, an unknown model, or inputs refused
       locally (nothing sent)
  3    the API, the network or the disk failed (a RunComfyError, or a file error)
  4    a submit may or may not have created a job; it was not retried (check first)
  124  the --timeout deadline passed while waiting (the job may still be running)
  130  interrupted by Ctrl-C (a job `run` left queued is cancelled first)
  batch returns the most serious of its items' codes: 4, then 3, then 124, then 1"""


def exit_code_for(exc: BaseException) -> ExitCode:
    """Map a failure to its exit code; the most specific class wins.

    Args:
        exc: What a command raised.

    Returns:
        The code for the shell.
    """
    # Order matters: WaitTimeoutError is a JobError and InputValidationError a RunComfyError.
    if isinstance(exc, WaitTimeoutError):
        return ExitCode.WAIT_TIMEOUT
    if isinstance(exc, JobFailedError | JobCancelledError):
        return ExitCode.JOB_FAILED
    if isinstance(exc, SubmitUncertainError):
        return ExitCode.SUBMIT_UNCERTAIN
    if isinstance(exc, InputValidationError):
        return ExitCode.USAGE
    if isinstance(exc, BadRequestError) and exc.error_code == _UNKNOWN_MODEL:
        return ExitCode.USAGE  # a typo'd model id: the caller's to fix, no job exists
    if isinstance(exc, RunComfyError):
        return ExitCode.API_ERROR
    if isinstance(exc, KeyboardInterrupt):
        return ExitCode.INTERRUPTED
    return ExitCode.USAGE

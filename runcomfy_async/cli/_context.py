"""What every command needs: the parsed options, the output mode, and a client built from them."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

from .._client import Client
from .._config import DEFAULT_BASE_URL, TOKEN_ENV, TOKEN_FILE_ENV, TOKEN_HELP, resolve_token
from ._args import BASE_URL_ENV, UsageError
from ._render import keep_secret

__all__ = ["Context"]


@dataclass(frozen=True)
class Context:
    """The parsed command line plus the choices derived from it.

    Attributes:
        args: The argparse namespace of the chosen subcommand.
        json: Print JSON lines instead of human output.
        timeout: The overall deadline for waiting on a job, if any.
    """

    args: argparse.Namespace

    @property
    def json(self) -> bool:
        """Whether ``--json`` was given."""
        return bool(self.args.json)

    @property
    def timeout(self) -> float | None:
        """The ``--timeout`` deadline, in seconds."""
        value = self.args.timeout
        return None if value is None else float(value)

    def base_url(self) -> str:
        """The API origin: ``--base-url``, then ``$RUNCOMFY_BASE_URL``, then the default."""
        return str(self.args.base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL)

    def token(self) -> str:
        """The API token from ``--token-file`` or the environment (never an argument).

        From here on, no line the command prints can show it.

        Raises:
            UsageError: No token anywhere, or an unreadable token file.
        """
        token = self._find_token()
        keep_secret(token)
        return token

    def _find_token(self) -> str:
        path: Path | None = self.args.token_file
        if path is not None:
            try:
                token = path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise UsageError(f"cannot read --token-file {path}: {exc.strerror}") from None
            if not token:
                raise UsageError(f"--token-file {path} is empty")
            return token
        token = os.environ.get(TOKEN_ENV, "").strip()
        if not token and os.environ.get(TOKEN_FILE_ENV, "").strip():
            try:
                token = resolve_token(None)  # the library reads $RUNCOMFY_API_TOKEN_FILE
            except ValueError as exc:
                raise UsageError(str(exc)) from None
        if not token:
            raise UsageError(
                f"no API token: export {TOKEN_ENV}=... or pass --token-file PATH; to get a "
                f"token, {TOKEN_HELP} (or try `runcomfy demo`, which needs none)"
            )
        return token

    def client(
        self,
        *,
        include_cost: bool = False,
        journal: str | None = None,
        spend_limit_usd: float | None = None,
    ) -> Client:
        """Build a client from the options.

        Raises:
            UsageError: No token, or a base URL the client refuses.
        """
        try:
            return Client(
                self.token(),
                base_url=self.base_url(),
                include_cost=include_cost,
                journal=journal,
                spend_limit_usd=spend_limit_usd,
                # Commands that submit check inputs unless --no-check: any model, by its
                # catalog schema, so a typo'd model id also fails before a job exists.
                check_inputs=bool(getattr(self.args, "check", True)),
            )
        except ValueError as exc:
            raise UsageError(str(exc)) from None

"""The argument parser: subcommands, global options, and how ``--input`` values are read.

Global options are accepted before or after the subcommand (``runcomfy --json status ID``
and ``runcomfy status ID --json`` both work): each subparser repeats them with a
``SUPPRESS`` default, so a value given after the subcommand wins and an absent one
leaves the top-level default alone.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

from .._config import DEFAULT_BASE_URL
from .._version import __version__
from ..testing._options import add_simulator_arguments
from ._exit import EXIT_CODES_HELP

__all__ = ["BASE_URL_ENV", "UsageError", "build_parser", "parse_inputs"]

BASE_URL_ENV: Final = "RUNCOMFY_BASE_URL"

_DESCRIPTION: Final = """\
Run RunComfy Model API jobs from the shell: submit, watch, collect, download.

Try it with no account: `runcomfy demo` runs a batch on a local simulator.
Real use: export RUNCOMFY_API_TOKEN=... (the token is never taken as an argument,
so it stays out of your shell history; --token-file reads it from a file)."""

_EPILOG: Final = f"""\
inputs (run, submit):
  --input key=value   a string; numbers, true/false and null are read as JSON
  --input key:=JSON   any JSON value, e.g. --input 'seed:=42' --input 'tags:=["a"]'
  --input key=@PATH   a local file, checked and sent as a data: URI
  --inputs-json FILE  a JSON object of inputs ('-' reads stdin); --input pairs override it

output: human-readable lines by default (progress on stderr, results on stdout);
--json prints one JSON object per line on stdout instead.

environment:
  RUNCOMFY_API_TOKEN  the API token (required except for demo and simulator)
  RUNCOMFY_BASE_URL   the API origin (default {DEFAULT_BASE_URL})

{EXIT_CODES_HELP}"""


class UsageError(Exception):
    """A mistake on the command line that argparse cannot see (bad input pair, bad file).

    Attributes:
        details: Lines printed before the one ``error:`` line (e.g. every bad batch line).
    """

    def __init__(self, message: str, *, details: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.details = tuple(details)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return value


def _add_global_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    group = parser.add_argument_group("global options")

    def default(value: object) -> object:
        return value if top else argparse.SUPPRESS

    group.add_argument(
        "--base-url",
        metavar="URL",
        default=default(None),
        help=f"API origin (default: ${BASE_URL_ENV} or {DEFAULT_BASE_URL})",
    )
    group.add_argument(
        "--token-file",
        metavar="PATH",
        type=Path,
        default=default(None),
        help="read the API token from this file instead of $RUNCOMFY_API_TOKEN",
    )
    group.add_argument(
        "--json",
        action="store_true",
        default=default(False),
        help="print one JSON object per line on stdout, for scripts",
    )
    group.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=_positive_float,
        default=default(None),
        help="overall deadline for waiting on a job (exit 124 when it passes)",
    )


def _add_inputs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model", metavar="MODEL", help="model id, e.g. wan-ai/wan-2-5/image-to-video"
    )
    parser.add_argument(
        "-i",
        "--input",
        dest="inputs",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="one input (repeatable); see 'inputs' below",
    )
    parser.add_argument(
        "--inputs-json",
        metavar="FILE",
        help="a JSON object of inputs; '-' reads stdin",
    )
    _add_no_check(parser)


def _add_no_check(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-check",
        dest="check",
        action="store_false",
        help="send inputs unchecked (default: check them locally first; nothing is sent "
        "when they are refused)",
    )


_Sub = Callable[..., argparse.ArgumentParser]


def build_parser() -> argparse.ArgumentParser:
    """Build the ``runcomfy`` parser with every subcommand.

    Returns:
        The parser; ``args.command`` names the subcommand.
    """
    parser = argparse.ArgumentParser(
        prog="runcomfy",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _add_global_options(parser, top=True)
    subs = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def sub(name: str, help_text: str, description: str | None = None) -> argparse.ArgumentParser:
        p = subs.add_parser(
            name,
            help=help_text,
            description=textwrap.fill(description or help_text, 88, break_on_hyphens=False),
            epilog=EXIT_CODES_HELP,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _add_global_options(p, top=False)
        return p

    _add_job_commands(sub)
    _add_batch(sub)
    _add_catalog_and_simulator(sub)
    _add_demo(sub)
    return parser


def _add_job_commands(sub: _Sub) -> None:
    p = sub(
        "run",
        "submit a job, show its progress, print its outputs",
        "Submit a job and wait for it, showing each state change. Ctrl-C while the job "
        "is still queued cancels it remotely (nothing is billed) and exits 130.",
    )
    _add_inputs(p)
    p.add_argument("-o", "--out", metavar="DIR", type=Path, help="download the outputs here")
    p.add_argument("--overwrite", action="store_true", help="replace files that exist in DIR")
    p.add_argument(
        "--no-cancel",
        dest="cancel_on_exit",
        action="store_false",
        help="on Ctrl-C or --timeout, leave a queued job in the queue",
    )

    p = sub("submit", "submit a job and print its request id (no waiting)")
    _add_inputs(p)

    p = sub("status", "print a job's status once")
    p.add_argument("request_id", metavar="REQUEST_ID")

    p = sub("result", "print a job's result once, without waiting (exit 1 if it failed)")
    p.add_argument("request_id", metavar="REQUEST_ID")
    p.add_argument("--cost", action="store_true", help="ask for the job's cost")

    p = sub("cancel", "cancel a queued job (running jobs cannot be cancelled)")
    p.add_argument("request_id", metavar="REQUEST_ID")

    p = sub("watch", "follow a job's state changes until it ends (never cancels it)")
    p.add_argument("request_id", metavar="REQUEST_ID")

    p = sub("download", "download a finished job's output files")
    p.add_argument("request_id", metavar="REQUEST_ID")
    p.add_argument(
        "-o", "--out", metavar="DIR", type=Path, default=Path("."), help="folder (default: .)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace files that exist in DIR")


def _add_batch(sub: _Sub) -> None:
    p = sub(
        "batch",
        "run many jobs from a JSONL file, resumably",
        "Run one job per line of a JSONL file and write one JSON result per line, in "
        "completion order. A line is either the inputs object itself (its key is line-N, N "
        'its line number) or {"key": "...", "inputs": {...}}. With --journal, a rerun after a '
        "crash or Ctrl-C re-attaches to the jobs already submitted instead of paying again.",
    )
    p.add_argument("model", metavar="MODEL", help="model id for every line")
    p.add_argument("input_file", metavar="INPUTS.jsonl", help="one job per line; '-' reads stdin")
    _add_no_check(p)
    p.add_argument(
        "-o", "--output", metavar="FILE", default="-", help="results JSONL (default: stdout)"
    )
    p.add_argument("--journal", metavar="PATH", help="SQLite journal that makes reruns resume")
    p.add_argument(
        "--concurrency", metavar="N", type=_positive_int, default=32, help="jobs at once (32)"
    )
    p.add_argument(
        "--download", metavar="DIR", type=Path, help="download outputs, one folder per key"
    )
    p.add_argument(
        "--max-spend",
        metavar="USD",
        type=_non_negative_float,
        help="stop submitting before the batch's estimated spend passes USD (prints the total)",
    )


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of USD >= 0, got {text!r}")
    return value


def _add_catalog_and_simulator(sub: _Sub) -> None:
    p = sub(
        "models",
        "show or search catalog entries (default: the models this package knows)",
        "Show catalog entries: price, categories and inputs (* required). Give model ids, "
        "or search the whole catalog with --search and/or --category.",
    )
    p.add_argument("model_ids", metavar="MODEL", nargs="*")
    p.add_argument(
        "--search", metavar="TEXT", help="list every entry whose id or name contains TEXT"
    )
    p.add_argument(
        "--category", metavar="NAME", help="list every entry in this category, e.g. video"
    )
    p.add_argument("--schema", action="store_true", help="also print each input schema")

    p = sub(
        "simulator",
        "serve the RunComfy simulator locally (for trying things out and tests)",
        "Serve the simulator until Ctrl-C. It prints the base URL and a token to export.",
    )
    add_simulator_arguments(p, default_clock="wall")


def _add_demo(sub: _Sub) -> None:
    p = sub(
        "demo",
        "run a 24-job batch on a built-in simulator (no token, no network)",
        "Start a local simulator, run 24 Wan 2.5 image-to-video jobs through real "
        "queueing (one scripted failure, one cancellation), download the outputs and "
        "print a summary. Takes about 20 seconds.",
    )
    p.add_argument(
        "-o",
        "--out",
        metavar="DIR",
        type=Path,
        default=Path("runcomfy-demo-out"),
        help="where the outputs go (default: ./runcomfy-demo-out)",
    )
    p.add_argument("--plain", action="store_true", help="plain lines instead of a live table")
    # Hidden knobs for the test suite: a smaller, faster demo.
    p.add_argument("--jobs", type=_positive_int, default=24, help=argparse.SUPPRESS)
    p.add_argument("--speed", type=_positive_float, default=1.0, help=argparse.SUPPRESS)


def _value(raw: str) -> object:
    """Read ``key=value``'s value: JSON scalars as JSON, anything else as a string."""
    if raw in ("true", "false", "null"):
        return json.loads(raw)
    try:
        number = json.loads(raw)
    except ValueError:
        return raw
    if isinstance(number, int | float) and math.isfinite(number):
        return number
    return raw  # a string, or JSON's NaN/Infinity, which no schema wants as a number


def _read_json_object(source: str) -> dict[str, object]:
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read --inputs-json {source}: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"--inputs-json {source} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise UsageError(f"--inputs-json {source} must hold a JSON object")
    return data


def parse_inputs(pairs: Sequence[str], inputs_json: str | None) -> dict[str, object]:
    """Build the inputs mapping from ``--inputs-json`` and ``--input`` pairs.

    Args:
        pairs: ``key=value``, ``key:=JSON`` or ``key=@path`` strings, in order.
        inputs_json: A file holding a JSON object, ``-`` for stdin, or None.

    Returns:
        The inputs; pairs override keys from the file.

    Raises:
        UsageError: A malformed pair, an unreadable file, or no inputs at all.
    """
    inputs = _read_json_object(inputs_json) if inputs_json else {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.rstrip(":"):
            raise UsageError(f"--input {pair!r}: expected key=value, key:=JSON or key=@path")
        if key.endswith(":"):
            key = key[:-1]
            try:
                inputs[key] = json.loads(raw)
            except ValueError as exc:
                raise UsageError(f"--input {pair!r}: not valid JSON: {exc}") from None
        elif raw.startswith("@") and len(raw) > 1:
            inputs[key] = Path(raw[1:]).expanduser()
        else:
            inputs[key] = _value(raw)
    if not inputs:
        raise UsageError("no inputs: give --input key=value (repeatable) or --inputs-json FILE")
    return inputs

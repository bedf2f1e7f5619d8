"""``runcomfy batch``'s input file, read and checked whole before the first submit.

Every line is parsed (JSON, the envelope's shape, unique keys), then every parsed line's
inputs are checked the way a submit would check them (the seed models' built-in rules,
any other model's catalog schema, fetched once per model): a typo on line 900 costs
nothing, and the user sees every bad line at once, not one per attempt.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from .._errors import InputValidationError
from ._args import UsageError

if TYPE_CHECKING:
    from .._client import Client

__all__ = ["BatchItem", "LineProblem", "check_items", "parse_lines", "read_items", "refusal"]

_UNSAFE: Final = re.compile(r"[^A-Za-z0-9._-]+")
#: Bad lines listed one per line on stderr, at most; the rest are counted.
MAX_SHOWN: Final = 50


@dataclass(frozen=True)
class BatchItem:
    """One input line: its 1-based line number, its key and its inputs."""

    line: int
    key: str
    inputs: dict[str, object]

    def folder(self) -> str:
        """A safe folder name for the item's downloads, distinct per item."""
        safe = _UNSAFE.sub("_", self.key).strip("._") or "item"
        return safe if safe == self.key else f"{safe}-{self.line}"


@dataclass(frozen=True)
class LineProblem:
    """What is wrong with one line: its number, the input at fault (if one) and why."""

    line: int
    problem: str
    field: str | None = None
    key: str | None = None
    #: An input check refused it (``--no-check`` would send it anyway).
    input_check: bool = False

    def text(self, source: str) -> str:
        """One line for a human: ``in.jsonl line 3: input 'resolution' = '4K': ...``."""
        return f"{source} line {self.line}: {self.problem}"

    def as_json(self, source: str) -> dict[str, object]:
        """One JSON object for ``--json``, shaped like a failed result line."""
        return {
            "line": self.line,
            "key": self.key,
            "ok": False,
            "field": self.field,
            "error": self.text(source),
            "error_type": "InputValidationError" if self.input_check else "UsageError",
        }


def _parse_line(number: int, raw: str) -> BatchItem | str:
    """The line's item, or what is wrong with it."""
    try:
        obj = json.loads(raw)
    except ValueError as exc:
        return f"not valid JSON: {exc}"
    if not isinstance(obj, dict):
        return "expected a JSON object of inputs"
    if isinstance(obj.get("inputs"), dict):
        extra = set(obj) - {"key", "inputs"}
        if extra:
            return f"unexpected fields {sorted(extra)} beside 'inputs'"
        key = obj.get("key", f"line-{number}")
        if not isinstance(key, str | int) or isinstance(key, bool) or key == "":
            return "'key' must be a non-empty string"
        key, inputs = str(key), obj["inputs"]
    else:
        key, inputs = f"line-{number}", obj
    if not inputs:
        return "no inputs"
    return BatchItem(number, key, inputs)


def parse_lines(text: str) -> tuple[list[BatchItem], list[LineProblem]]:
    """Parse every line; blank lines are skipped.

    A line is either the inputs object itself (its key is ``line-N``) or
    ``{"key": "...", "inputs": {...}}``.

    Returns:
        The good items and the problems of the bad lines, both in line order.
    """
    items: list[BatchItem] = []
    problems: list[LineProblem] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        parsed = _parse_line(number, raw)
        if isinstance(parsed, str):
            problems.append(LineProblem(number, parsed))
        elif parsed.key in seen:
            problem = f"key {parsed.key!r} was already used on line {seen[parsed.key]}"
            problems.append(LineProblem(number, problem, key=parsed.key))
        else:
            seen[parsed.key] = number
            items.append(parsed)
    return items, problems


def refusal(problems: list[LineProblem], source: str, *, lines: int) -> UsageError:
    """The error that stops a batch with bad lines, listing each one.

    Args:
        problems: Every bad line's problem, in line order.
        source: The input file's name, as given.
        lines: How many non-blank lines the file has.
    """
    hint = ""
    if any(p.input_check for p in problems):
        hint = "; fix them, or pass --no-check to leave the inputs to the server"
    if len(problems) == 1:
        return UsageError(f"{problems[0].text(source)}; nothing was sent{hint}")
    numbers = [str(p.line) for p in problems[:MAX_SHOWN]]
    more = f" and {len(problems) - MAX_SHOWN} more" if len(problems) > MAX_SHOWN else ""
    details = [f"  {p.text(source)}" for p in problems[:MAX_SHOWN]]
    return UsageError(
        f"{len(problems)} of {lines} lines of {source} are refused (lines "
        f"{', '.join(numbers)}{more}); nothing was sent{hint}",
        details=details,
    )


def read_items(text: str, source: str) -> list[BatchItem]:
    """Parse every line; refuse the file if any line is bad or none holds inputs.

    Raises:
        UsageError: Naming every bad line (not valid JSON, not an object, a malformed
            envelope, a key used twice), or the file holds no input lines.
    """
    items, problems = parse_lines(text)
    if problems:
        raise refusal(problems, source, lines=len(items) + len(problems))
    if not items:
        raise UsageError(f"{source} holds no input lines")
    return items


async def check_items(client: Client, model_id: str, items: list[BatchItem]) -> list[LineProblem]:
    """Check every item's inputs as its submit will, without sending any job.

    The session's checks apply: the seed models' built-in rules, any other model's
    catalog schema (fetched once for the whole batch). Local files are read and checked.

    Returns:
        One problem per refused item, in line order.

    Raises:
        APIStatusError: The catalog refused the model id (400001 for an unknown one).
        TransportError: The catalog did not answer.
    """
    problems: list[LineProblem] = []
    for item in items:
        try:
            await client._s.prepare(model_id, item.inputs)
        except InputValidationError as exc:
            problems.append(
                LineProblem(item.line, str(exc), field=exc.field, key=item.key, input_check=True)
            )
        except ImportError as exc:  # a local image to check, and no Pillow
            problems.append(LineProblem(item.line, str(exc), key=item.key, input_check=True))
        except ValueError as exc:  # a malformed model id: the same for every line
            raise UsageError(str(exc)) from None
    return problems

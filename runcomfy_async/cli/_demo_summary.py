"""The demo's closing summary: one row per job, then the totals that matter.

Times are simulated seconds as the client observed them; request counts come from the
simulator's own log, so they are what the API would have received.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Final

from ._demo_view import STYLE, Board, Row, out, span
from ._render import has_rich, short_id

__all__ = ["NAIVE_POLL_SECONDS", "print_summary"]

NAIVE_POLL_SECONDS: Final = 2.0
"""The fixed interval of a hand-rolled poll loop, for comparison (RunComfy's own clients
poll every 2-5 s)."""


def _relative(path: Path, base: Path) -> str:
    try:
        return str(path.relative_to(base.resolve()))
    except ValueError:
        return str(path)


def _cost(row: Row) -> float:
    if row.result is None or row.result.cost is None:
        return 0.0
    return row.result.cost


def _clip(text: str, width: int = 19) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _summary_rows(board: Board) -> list[list[str]]:
    rows = []
    for row in board.rows:
        files = ", ".join(_relative(p, board.out) for p in row.files) or _clip(row.error or "")
        rows.append(
            [
                f"{row.number:02d}",
                short_id(row.request_id),
                row.state,
                span(board.queued_for(row)),
                span(board.ran_for(row)),
                str(row.polls),
                f"${_cost(row):.2f}",
                files,
            ]
        )
    return rows


_HEADERS: Final = ["job", "request", "state", "queued", "ran", "polls", "cost", "output"]


def _print_table(rows: list[list[str]]) -> None:
    if has_rich():
        from rich import box
        from rich.console import Console
        from rich.table import Table

        table = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
        for header in _HEADERS:
            right = header in ("job", "queued", "ran", "polls", "cost")
            table.add_column(
                header,
                justify="right" if right else "left",
                no_wrap=True,
                overflow="ellipsis",
            )
        for cells in rows:
            style = STYLE.get(cells[2], "")
            table.add_row(*cells, style=None if cells[2] == "succeeded" else style)
        Console().print(table)
        return
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(_HEADERS)]
    out("  ".join(h.ljust(w) for h, w in zip(_HEADERS, widths, strict=True)))
    for cells in rows:
        out("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)))


def print_summary(board: Board, by_route: dict[str, int], *, wall: float) -> None:
    """Print the final table and the totals: states, times, requests, cost, files."""
    counts = board.counts()
    rows = board.rows
    out("")
    _print_table(_summary_rows(board))
    simulated = max((board.elapsed(r) for r in rows), default=0.0)
    polls = sum(r.polls for r in rows)
    ended = [r for r in rows if r.ended is not None]
    # The hand-rolled loop polls /status, then fetches each result once.
    naive = sum(math.ceil(board.elapsed(r) / NAIVE_POLL_SECONDS) for r in ended) + len(ended)
    files = sum(len(r.files) for r in rows)
    billed = sum(_cost(r) for r in rows)
    results = by_route.get("result", 0)  # polls that saw the end carried the output
    per_job = (polls + results) / len(rows) if rows else 0.0
    out(
        f"{len(rows)} jobs: {counts['succeeded']} succeeded, {counts['failed']} failed, "
        f"{counts['cancelled']} cancelled while queued (not billed)"
    )
    out(
        f"time: the batch took {span(simulated)} on {board.workers} workers "
        f"(simulated; shown in {wall:.1f} s at {board.speed:g}×)"
    )
    out(
        f"requests: {by_route.get('submit', 0)} submits, {polls} /status and {results}"
        f" /result ({per_job:.1f} per job; a fixed {NAIVE_POLL_SECONDS:g} s /status loop and"
        f" a /result each: ~{naive}), {by_route.get('cancel', 0)} cancel"
    )
    out(f"cost: ${billed:.2f} as reported by the API (include_cost=True)")
    out(f"files: {files} videos in {board.out}/")

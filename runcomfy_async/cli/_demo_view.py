"""What the demo shows while it runs: a live board (rich, on a terminal) or plain lines.

The :class:`Board` holds one :class:`Row` per job and is changed only on the event loop.
The live view's refresh thread reads it without locks: the row list never changes size
and each update sets plain attributes, so a frame at worst shows a job one step behind.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from ._render import RICH_HINT, has_rich, short_id

if TYPE_CHECKING:
    from .._wire import Result
    from ..models import Wan25ImageToVideo

__all__ = ["STYLE", "Board", "Row", "open_view", "out", "span"]

_TERMINAL: Final = frozenset({"succeeded", "failed", "cancelled"})
STYLE: Final = {
    "submitting": "dim",
    "queued": "yellow",
    "running": "cyan",
    "succeeded": "green",
    "failed": "bold red",
    "cancelled": "magenta",
}
_MARK: Final = {"succeeded": "✓ ", "failed": "✗ ", "cancelled": "⊘ ", "running": "▶ "}


@dataclass
class Row:
    """One job on the board; times are ``time.monotonic()`` readings."""

    number: int
    prompt: str
    request_id: str = ""
    state: str = "submitting"
    position: int | None = None
    submitted: float = 0.0
    started: float | None = None
    ended: float | None = None
    result: Result | None = None
    error: str | None = None
    files: list[Path] = field(default_factory=list)
    polls: int = 0
    requests: int = 0


def span(seconds: float | None) -> str:
    """Format simulated seconds as ``45s`` or ``2m 05s``."""
    if seconds is None:
        return "—"
    whole = round(seconds)
    return f"{whole}s" if whole < 60 else f"{whole // 60}m {whole % 60:02d}s"


class Board:
    """The demo's state: every job, the phase, and the view that shows it."""

    def __init__(
        self,
        inputs: Sequence[Wan25ImageToVideo],
        *,
        speed: float,
        workers: int,
        out: Path,
        fail_at: int | None = None,
        cancel_at: int | None = None,
    ) -> None:
        self.rows = [Row(n, job.prompt) for n, job in enumerate(inputs, 1)]
        self.speed = speed
        self.workers = workers
        self.out = out
        self.fail_at = fail_at
        self.cancel_at = cancel_at
        self.t0 = time.monotonic()
        self.notes: list[str] = []
        self.phase = "jobs"
        self.files_total = 0
        self.files_done = 0
        self.view: _View = _View()

    # --- time, in simulated seconds -----------------------------------------------------

    def sim(self, real_seconds: float) -> float:
        """Turn real seconds of the demo into the simulated seconds they stand for."""
        return real_seconds * self.speed

    def clock(self) -> str:
        """Simulated time since the demo began, as ``mm:ss``."""
        whole = round(self.sim(time.monotonic() - self.t0))
        return f"{whole // 60:02d}:{whole % 60:02d}"

    def queued_for(self, row: Row) -> float | None:
        """Simulated seconds the job waited in the queue, as the client saw it."""
        end = row.started if row.started is not None else row.ended
        if end is None:
            return None
        return self.sim(end - row.submitted)

    def ran_for(self, row: Row) -> float | None:
        """Simulated seconds the job ran, as the client saw it."""
        if row.started is None or row.ended is None:
            return None
        return self.sim(row.ended - row.started)

    def elapsed(self, row: Row) -> float:
        """Simulated seconds since submit, frozen when the job ended."""
        if not row.submitted:
            return 0.0
        return self.sim((row.ended or time.monotonic()) - row.submitted)

    # --- changes -------------------------------------------------------------------------

    def submitted(self, row: Row, request_id: str) -> None:
        """Record a submit."""
        row.request_id = request_id
        row.submitted = time.monotonic()
        self.view.changed(self, row, "submitted")

    def update(
        self,
        row: Row,
        state: str,
        *,
        position: int | None = None,
        result: Result | None = None,
        error: str | None = None,
    ) -> None:
        """Record a transition seen by the job's watcher."""
        now = time.monotonic()
        old = row.state
        row.state, row.position = state, position
        if state == "running" and row.started is None:
            row.started = now
        if state in _TERMINAL:
            row.ended = now
            row.result, row.error = result, error
        if state != old:
            self.view.changed(self, row, state)

    def note(self, row: Row, text: str) -> None:
        """Record something that happened to a job besides a transition."""
        self.notes.append(f"job {row.number:02d}: {text}")
        self.view.noted(self, row, text)

    def jobs_finished(self) -> None:
        """Every job has ended."""
        self.view.jobs_finished(self)

    @contextlib.contextmanager
    def download_phase(self, files: int) -> Iterator[None]:
        """Mark the download phase, for the view."""
        self.phase, self.files_total = "downloads", files
        self.view.downloads_started(self)
        yield
        self.phase = "done"

    def downloaded(self, row: Row) -> None:
        """Record that a job's files are on disk."""
        self.files_done += 1
        self.view.downloaded(self, row)

    def intro(self) -> str:
        """One sentence on what the demo is about to do."""
        plot = []
        if self.fail_at is not None:
            plot.append(f"job {self.fail_at:02d} is scripted to fail")
        if self.cancel_at is not None:
            plot.append(f"job {self.cancel_at:02d} gets cancelled while queued")
        return (
            f"{len(self.rows)} Wan 2.5 image-to-video jobs on a local RunComfy simulator with "
            f"{self.workers} GPU workers, time-lapsed {self.speed:g}× (all times are simulated"
            f"{'; ' + ', '.join(plot) if plot else ''})."
        )

    def counts(self) -> dict[str, int]:
        """How many jobs are in each state."""
        counts = dict.fromkeys(STYLE, 0)
        for row in self.rows:
            counts[row.state] += 1
        return counts


class _View:
    """Shows nothing; the base of the two real views."""

    def changed(self, board: Board, row: Row, state: str) -> None:
        """A job changed state."""

    def noted(self, board: Board, row: Row, text: str) -> None:
        """Something else happened to a job."""

    def jobs_finished(self, board: Board) -> None:
        """Every job ended."""

    def downloads_started(self, board: Board) -> None:
        """Downloads begin."""

    def downloaded(self, board: Board, row: Row) -> None:
        """One job's files arrived."""


def out(text: str) -> None:
    """Print one line of the demo on stdout."""
    print(text, flush=True)


class _PlainView(_View):
    """One line per state change: for pipes, CI logs, and machines without rich."""

    def __init__(self, board: Board) -> None:
        out(f"runcomfy demo: {board.intro()}")
        self._downloads_began = 0.0

    def changed(self, board: Board, row: Row, state: str) -> None:
        if state == "submitted":
            return  # the first status comes right after; one line per job is enough
        extra = ""
        if state == "queued" and row.position is not None:
            extra = f" (position {row.position})"
        elif state == "succeeded" and row.result is not None and row.result.cost is not None:
            extra = f" (${row.result.cost:.2f})"
        elif state == "failed":
            extra = f": {row.error}"
        out(f"[{board.clock()}] job {row.number:02d} {short_id(row.request_id)}  {state}{extra}")

    def noted(self, board: Board, row: Row, text: str) -> None:
        out(f"[{board.clock()}] job {row.number:02d} {short_id(row.request_id)}  {text}")

    def jobs_finished(self, board: Board) -> None:
        counts = board.counts()
        out(
            f"[{board.clock()}] all {len(board.rows)} jobs ended: {counts['succeeded']} "
            f"succeeded, {counts['failed']} failed, {counts['cancelled']} cancelled"
        )

    def downloads_started(self, board: Board) -> None:
        out(f"downloading the outputs of {board.files_total} jobs to {board.out}/ ...")
        self._downloads_began = time.monotonic()

    def downloaded(self, board: Board, row: Row) -> None:
        if board.files_done == board.files_total:
            took = time.monotonic() - self._downloads_began
            out(f"downloaded {board.files_total} jobs' outputs in {took:.1f} s (real time)")


class _LiveView(_View):
    """A rich Live board: two columns of jobs, an overall bar, the latest notes."""

    def __init__(self, board: Board) -> None:
        from rich.console import Console
        from rich.live import Live

        self.console = Console()
        self.live = Live(
            get_renderable=lambda: self.render(board),
            console=self.console,
            refresh_per_second=10,
            transient=True,
        )

    def render(self, board: Board) -> Any:
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        counts = board.counts()
        title = Text.assemble(
            ("runcomfy demo · ", "bold"),
            (f"{board.clock()} simulated", "bold cyan"),
            "\n",
            (board.intro(), "dim"),
        )
        half = math.ceil(len(board.rows) / 2)
        grid = Table.grid(padding=(0, 4))
        tables = [self._table(board, part) for part in (board.rows[:half], board.rows[half:])]
        for _ in tables:
            grid.add_column()
        grid.add_row(*tables)
        if board.phase == "jobs":
            done = counts["succeeded"] + counts["failed"] + counts["cancelled"]
            bar_total, bar_done = len(board.rows), done
            status = (
                f" {done}/{len(board.rows)} ended: {counts['succeeded']} ✓ "
                f"{counts['failed']} ✗ {counts['cancelled']} ⊘ · {counts['running']} running · "
                f"{counts['queued']} queued"
            )
        else:
            bar_total, bar_done = max(board.files_total, 1), board.files_done
            status = f" downloading outputs: {board.files_done}/{board.files_total} jobs"
        bar = Table.grid(padding=(0, 1))
        bar.add_row(ProgressBar(total=bar_total, completed=bar_done, width=40), Text(status))
        notes = [Text(note, style="dim") for note in board.notes[-2:]]
        return Group(title, grid, bar, *notes)

    @staticmethod
    def _table(board: Board, rows: list[Row]) -> Any:
        from rich import box
        from rich.table import Table
        from rich.text import Text

        table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
        table.add_column("job", justify="right")
        table.add_column("state", min_width=12)
        table.add_column("queue", justify="right")
        table.add_column("elapsed", justify="right", min_width=7)
        for row in rows:
            state = row.state
            queue = f"#{row.position}" if state == "queued" and row.position is not None else ""
            table.add_row(
                f"{row.number:02d}",
                Text(f"{_MARK.get(state, '')}{state}", style=STYLE.get(state, "")),
                queue,
                span(board.elapsed(row)) if row.submitted else "",
            )
        return table

    def __enter__(self) -> _LiveView:
        self.live.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.live.stop()


@contextlib.contextmanager
def open_view(board: Board, *, live: bool) -> Iterator[None]:
    """Attach the live board on a terminal with rich, else plain lines on stdout."""
    rich_ok = has_rich()
    if live and rich_ok and sys.stdout.isatty():
        view = _LiveView(board)
        board.view = view
        with view:
            yield
        return
    if not rich_ok:
        out(RICH_HINT)
    board.view = _PlainView(board)
    yield

"""A keyed batch run as its own process, for the crash test (``test_crash.py``).

Usage: ``python -m tests._crash_batch URL JOURNAL ITEMS CONCURRENCY ON_UNCERTAIN``, with the
token in ``RUNCOMFY_API_TOKEN``. Prints one JSON line per outcome:
``{"key", "ok", "request_id", "error"}``.
"""

from __future__ import annotations

import sys

import anyio
import msgspec

from runcomfy_async import Client, PollPolicy, RetryPolicy

WAN25 = "wan-ai/wan-2-5/image-to-video"
IMAGE = "https://example.com/fox.png"
#: Quick polls, so the scripted simulator's jobs move; capped so stuck jobs cost little.
POLL = PollPolicy(
    first_interval=0.0,
    max_interval=0.05,
    jitter=0.0,
    learn=False,
    requests_per_second=1000.0,
    burst=100,
)


def inputs_for(index: int) -> dict[str, object]:
    """The inputs of item ``index``; the prompt names it in the simulator's log."""
    return {"prompt": f"item {index}", "img_url": IMAGE}


def key_for(index: int) -> str:
    """The journal key of item ``index``."""
    return f"key-{index}"


async def main(url: str, journal: str, items: int, concurrency: int, on_uncertain: str) -> None:
    """Run the batch, printing each outcome as it completes."""
    retry = RetryPolicy(initial=0.0, max_retry_after=0.0)
    async with Client(base_url=url, retry=retry, polling=POLL, journal=journal) as client:
        outcomes = client.map(
            WAN25,
            [inputs_for(i) for i in range(items)],
            keys=[key_for(i) for i in range(items)],
            concurrency=concurrency,
            on_uncertain="resubmit" if on_uncertain == "resubmit" else "raise",
        )
        async for outcome in outcomes:
            line = {
                "key": outcome.key,
                "ok": outcome.ok,
                "request_id": outcome.result.request_id if outcome.result else None,
                "error": type(outcome.error).__name__ if outcome.error else None,
            }
            sys.stdout.write(msgspec.json.encode(line).decode() + "\n")
            sys.stdout.flush()


if __name__ == "__main__":
    url, journal, items, concurrency, on_uncertain = sys.argv[1:]
    anyio.run(main, url, journal, int(items), int(concurrency), on_uncertain)

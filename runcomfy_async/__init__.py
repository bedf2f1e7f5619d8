"""runcomfy_async: an asyncio-native client for RunComfy's Model API (placeholder, being wired)."""

from __future__ import annotations

from ._version import __version__

__all__ = ["__version__"]

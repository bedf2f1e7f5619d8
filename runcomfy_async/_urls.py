"""Which URLs the client will talk to: the API's own rule, in one place.

https to any host; plain http only to loopback (the simulator, a local proxy), because
the token, or a signed storage link, would otherwise cross the network in clear.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from yarl import URL

__all__ = ["check_base_url", "check_download_url", "is_loopback", "public_url"]


def is_loopback(host: str | None) -> bool:
    """Whether ``host`` names this machine (plain ``http://`` is allowed only there)."""
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_base_url(base_url: str) -> URL:
    """Parse and vet the API base URL.

    Raises:
        ValueError: Not an absolute URL, or plain ``http://`` to a host other than loopback
            (the token would cross the network in clear).
    """
    url = URL(base_url.rstrip("/"))
    if url.scheme not in ("https", "http") or not url.host:
        raise ValueError(f"base_url must be an absolute http(s) URL, got {base_url!r}")
    if url.scheme == "http" and not is_loopback(url.host):
        raise ValueError(
            f"base_url {base_url!r} uses plain http to a non-loopback host; "
            "the API token would travel unencrypted. Use https."
        )
    if url.query_string or url.fragment:
        raise ValueError(f"base_url must not carry a query or fragment, got {base_url!r}")
    return url


def public_url(url: str) -> str:
    """The URL without query or fragment: signed storage URLs carry secrets there."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def check_download_url(url: str) -> None:
    """Accept https to any host and plain http to loopback only (the API's own rule).

    Raises:
        ValueError: Another scheme, no host, or plain http to a non-loopback host.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f"not an absolute http(s) URL: {public_url(url)!r}")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ValueError(f"refusing plain http to a non-loopback host: {public_url(url)!r}")

"""Which URLs the client will talk to: the API's own rule, in one place.

https to any host; plain http only to loopback (the simulator, a local proxy), because
the token, or a signed storage link, would otherwise cross the network in clear. A download
(and every redirect hop of one) is also refused when its host is an IP literal in a
link-local, private, unspecified or multicast range, even over https: a hostile or
compromised server could otherwise point a client running inside a network (a web server)
at its cloud metadata endpoint or an internal service (server-side request forgery).
Host names are not resolved here; only the literal forms a connect would accept are
checked (``10.0.0.1``, ``[fd00::1]``, ``::ffff:10.0.0.1``, and the legacy numeric forms
``167772161`` / ``0xa.0.0.1`` that ``inet_aton`` still reads).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from typing import Final
from urllib.parse import urlsplit

from yarl import URL

from ._errors import DownloadRefusedError

__all__ = ["check_base_url", "check_download_url", "is_loopback", "public_url"]

# Hosts made only of these may be numbers that the resolver reads as an IPv4 address.
_NUMERIC_HOST: Final = re.compile(r"[0-9a-fA-FxX.]+")


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


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address ``host`` is a literal of (as a connect would read it), else None."""
    host = host.strip("[]").rstrip(".")
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        if not _NUMERIC_HOST.fullmatch(host):
            return None
        try:
            address = ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _refused_range(host: str) -> str | None:
    """Why a download must not connect to ``host``, if it is an IP literal outside it."""
    address = _address(host)
    if address is None or address.is_loopback:
        return None
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_unspecified:
        return "the unspecified address"
    if address.is_private or not address.is_global:
        return "a private address"
    return None


def check_download_url(url: str) -> None:
    """Accept https to any public host and plain http to loopback only.

    Applied to every output URL and to every redirect hop before it is followed.

    Raises:
        DownloadRefusedError: Another scheme, no host, plain http to a non-loopback host,
            or an IP literal in a link-local, private, unspecified or multicast range. It
            names the host, never the query (which may hold a signature); also a
            ``ValueError``.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    reason: str | None = None
    if parts.scheme not in ("https", "http") or not host:
        reason = "not an absolute http(s) URL"
    elif parts.scheme == "http" and not is_loopback(host):
        reason = "plain http to a non-loopback host"
    else:
        reason = _refused_range(host)
    if reason is not None:
        raise DownloadRefusedError(url=public_url(url), host=host, reason=reason)

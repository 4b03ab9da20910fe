"""Webhook targets: only http(s) URLs whose host resolves to public addresses (SSRF), and
the request pinned to the checked address (DNS rebinding)."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit

import httpx

from app.core.config import get_settings
from app.core.errors import Unprocessable
from app.core.problems import ProblemType


class TargetRefused(ValueError):
    pass


def _public_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def check_target(
    url: str, *, allow_private: bool, unresolvable_ok: bool = False
) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """Refuse anything but http(s) and — unless allowed — hosts resolving to non-public addresses
    (loopback, private, link-local, shared, reserved). ``unresolvable_ok`` (creating a
    subscription): a name that does not resolve now is accepted — the check runs again before
    every delivery, where it then counts as a failed attempt.

    Returns the checked address to connect to (``None`` when private targets are allowed or the
    name did not resolve): a delivery connects to exactly that address, so a DNS answer that
    changes between the check and the connection (DNS rebinding) cannot redirect it."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise TargetRefused("is not a valid URL") from None
    if parts.scheme not in ("http", "https"):
        raise TargetRefused("must be an http or https URL")
    if not parts.hostname:
        raise TargetRefused("needs a host")
    if parts.username or parts.password:
        raise TargetRefused("must not contain credentials")
    if allow_private:
        return None
    host = parts.hostname
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, port or 443, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError):
            if unresolvable_ok:
                return None
            raise TargetRefused("host cannot be resolved") from None
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    if not addresses or not all(_public_address(a) for a in addresses):
        raise TargetRefused(
            "resolves to a loopback, private or link-local address "
            "(allowed only with KOKOMA_WEBHOOKS_ALLOW_PRIVATE=true)"
        )
    return addresses[0]


def pinned_request(
    url: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address | None
) -> tuple[httpx.URL, dict[str, str], dict[str, Any]]:
    """The URL, extra headers and request extensions to reach ``url`` at the checked
    ``address``: the connection goes to the address, while ``Host`` and — for https — the TLS
    server name (SNI, and the certificate check) stay the URL's host."""
    target = httpx.URL(url)
    if address is None or target.host == str(address):
        return target, {}, {}
    host_header = target.host if target.port is None else f"{target.host}:{target.port}"
    extensions: dict[str, Any] = {}
    if target.scheme == "https":
        extensions["sni_hostname"] = target.host
    return target.copy_with(host=str(address)), {"Host": host_header}, extensions


def check_url_field(url: str) -> None:
    try:
        check_target(url, allow_private=get_settings().webhooks_allow_private, unresolvable_ok=True)
    except TargetRefused as exc:
        raise Unprocessable(
            f"url {exc}.",
            type_=ProblemType.WEBHOOK_TARGET_REFUSED,
            errors=[{"loc": ["body", "url"], "msg": str(exc), "type": "target_refused"}],
        ) from None

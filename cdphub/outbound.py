"""Requests the product makes to URLs its users give it (segment webhooks), and the one guard
in front of them (server-side request forgery).

A webhook URL is typed by a marketer or an API client, and the server posts personal data to
it. Without a guard, ``http://127.0.0.1:5432/`` or ``http://169.254.169.254/latest/meta-data/``
would make the server talk to itself, to the private network or to the cloud's metadata
service, and the success or failure would tell the sender which internal ports are open.

So a URL must be http(s), and its host is resolved (``socket.getaddrinfo``) and refused when
any address it resolves to is loopback, private, link-local (which holds the metadata address
169.254.169.254), multicast, reserved, unspecified, the metadata address fd00:ec2::254, or
otherwise not globally routable. A name that resolves to one public and one private address is
refused too: the connection could go to either. ``CDPHUB_OUTBOUND_ALLOWLIST`` lets an operator
allow named hosts (``crm.internal``) or networks (``10.20.0.0/16``, ``127.0.0.1``).

The request then connects to the very address that was checked, while the URL's host name
stays in the ``Host`` header and, for https, in the TLS server name and certificate check: a
DNS answer that changes between the check and the connection (DNS rebinding) cannot redirect
it. Redirects are not followed, for the same reason.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

from cdphub.errors import DomainError

METADATA_ADDRESSES = frozenset(
    {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class OutboundRefused(DomainError):
    """The URL may not be requested; the message says why, without contacting it."""

    field = "url"

    def errors(self) -> dict[str, list[str]]:
        return {self.field: [f"URL refused: {self.message}"]}


class OutboundFailed(Exception):
    """The request was allowed but did not succeed: no connection, or a non-2xx answer."""


@dataclass(frozen=True)
class Destination:
    """A URL that passed the guard, with the addresses it was checked against."""

    url: str
    scheme: str
    host: str
    port: int
    target: str
    addresses: tuple[str, ...]


def address_refusal(address: IPAddress) -> str | None:
    """Why a connection to ``address`` is refused, or None for a public address."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    if address in METADATA_ADDRESSES:
        return "the cloud metadata address"
    for flag, reason in (
        ("is_unspecified", "an unspecified address"),
        ("is_loopback", "a loopback address"),
        ("is_link_local", "a link-local address"),
        ("is_multicast", "a multicast address"),
        ("is_private", "a private address"),
        ("is_reserved", "a reserved address"),
    ):
        if getattr(address, flag):
            return reason
    if not address.is_global:
        return "not a public address"
    return None


def allowlist() -> tuple[set[str], list[ipaddress.IPv4Network | ipaddress.IPv6Network]]:
    hosts, networks = set(), []
    for entry in settings.CDPHUB_OUTBOUND_ALLOWLIST:
        try:
            networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
        except ValueError:
            hosts.add(entry.lower().rstrip("."))
    return hosts, networks


def host_addresses(host: str, port: int) -> list[str]:
    """The addresses ``host`` resolves to, each checked by the rule for outbound connections
    (an HTTP request or another database); raises ``OutboundRefused`` naming the reason."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as error:
        raise OutboundRefused(f"the host {host} cannot be resolved") from error
    addresses = list(
        dict.fromkeys(ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos)
    )
    allowed_hosts, allowed_networks = allowlist()
    if host.lower() not in allowed_hosts:
        for address in addresses:
            if any(address in network for network in allowed_networks):
                continue
            reason = address_refusal(address)
            if reason:
                shown = host if host == str(address) else f"{host} ({address})"
                raise OutboundRefused(
                    f"{shown} is {reason}: requests to internal networks are refused "
                    "(an operator can allow it with CDPHUB_OUTBOUND_ALLOWLIST)"
                )
    return [str(address) for address in addresses]


def outbound_destination(url: str) -> Destination:
    """Check ``url`` for an outbound request; raises ``OutboundRefused`` naming the reason."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise OutboundRefused(f"the URL is not valid: {error}") from error
    if parts.scheme not in ("http", "https"):
        raise OutboundRefused("the URL must start with https:// or http://")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise OutboundRefused("the URL has no host")
    port = port or (443 if parts.scheme == "https" else 80)
    addresses = host_addresses(host, port)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return Destination(
        url=url,
        scheme=parts.scheme,
        host=host,
        port=port,
        target=target,
        addresses=tuple(addresses),
    )


def pinned_connection(destination: Destination, timeout: float) -> http.client.HTTPConnection:
    """A connection to the checked addresses (tried in order) under the URL's host name."""
    connection_class = (
        http.client.HTTPSConnection if destination.scheme == "https" else http.client.HTTPConnection
    )
    connection = connection_class(destination.host, destination.port, timeout=timeout)

    def connect_checked(address, timeout=timeout, source_address=None):
        error: OSError | None = None
        for checked in destination.addresses:
            try:
                return socket.create_connection((checked, address[1]), timeout, source_address)
            except OSError as exc:
                error = exc
        raise error or OSError("no address to connect to")

    # http.client opens its socket through this attribute; https then wraps it with the
    # URL's host name as the TLS server name, so certificates are checked against the name.
    connection._create_connection = connect_checked
    return connection


def outbound_post(
    url: str, body: bytes, *, headers: dict[str, str] | None = None, timeout: float = 30
) -> int:
    """POST ``body`` to ``url`` after the guard; returns the 2xx status. Raises
    ``OutboundRefused`` before connecting, ``OutboundFailed`` when the request does not
    succeed (no connection, timeout, TLS error, a redirect or an error status)."""
    destination = outbound_destination(url)
    connection = pinned_connection(destination, timeout)
    where = f"{destination.host}:{destination.port}"
    try:
        connection.request("POST", destination.target, body=body, headers=headers or {})
        response = connection.getresponse()
        response.read()
    except TimeoutError as error:
        raise OutboundFailed(f"{where} did not answer within {timeout:g} seconds") from error
    except (OSError, http.client.HTTPException) as error:
        reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
        raise OutboundFailed(f"could not deliver to {where}: {reason}") from error
    finally:
        connection.close()
    if not 200 <= response.status < 300:
        kind = "a redirect, which is not followed" if 300 <= response.status < 400 else "an error"
        raise OutboundFailed(f"{where} answered {response.status} ({kind})")
    return response.status

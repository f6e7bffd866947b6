"""Fetching images by URL without letting a request reach what the server can reach.

A URL image makes the server open a connection on the client's behalf, the classic
server-side request forgery route to cloud metadata endpoints and internal services.
So fetching is off unless the operator enables it, and then every hop (the first URL
and each redirect) must:

- be http or https, with no user:password part;
- name a host on the operator's allowlist (`images.example.com` or `*.example.com`);
- resolve only to public addresses: never loopback, private, link-local (where the
  169.254.169.254 metadata service lives), shared, multicast, reserved or unspecified;
  IPv4-mapped IPv6 addresses are judged by their IPv4 address.

The connection then goes to the address that was checked (the URL's host is sent as
Host and TLS server name), so DNS cannot answer differently between check and connect.
Bodies are read up to `max_bytes`, and the whole fetch, redirects included, is bounded
by `timeout_s`. The resolver and the transport can be injected, which is how the tests
check all of this without touching a network.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Sequence
from urllib.parse import urljoin, urlsplit

import httpx2

from ocelli.serve.errors import BadRequest, PayloadTooLarge

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]
# Cloud metadata services; all are non-public anyway, listed so the intent is explicit.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "169.254.170.2", "100.100.100.200", "fd00:ec2::254")
)
REDIRECTS = (301, 302, 303, 307, 308)


async def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system's resolver gives for `host`."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def is_public_address(address: Address) -> bool:
    """True only for globally routable unicast addresses."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address in METADATA_ADDRESSES or address.is_multicast:
        return False
    return address.is_global


def host_allowed(host: str, patterns: Sequence[str]) -> bool:
    """`host` equals a pattern, or is below a `*.domain` pattern (not the domain itself)."""
    host = host.lower().rstrip(".")
    for pattern in patterns:
        pattern = pattern.lower().rstrip(".")
        if pattern.startswith("*."):
            if host.endswith(pattern[1:]) and len(host) > len(pattern) - 1:
                return True
        elif host == pattern:
            return True
    return False


class ImageFetcher:
    """GETs image URLs under the rules above; raises 400/413 API errors naming `param`."""

    def __init__(
        self,
        allowed_hosts: Sequence[str],
        max_bytes: int,
        timeout_s: float,
        max_redirects: int = 3,
        resolver: Resolver = system_resolver,
        address_allowed: Callable[[Address], bool] = is_public_address,
        transport: httpx2.AsyncBaseTransport | None = None,
    ) -> None:
        self.allowed_hosts = tuple(allowed_hosts)
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self.max_redirects = max_redirects
        self.resolver = resolver
        self.address_allowed = address_allowed
        self.transport = transport

    async def fetch(self, url: str, param: str) -> bytes:
        try:
            async with asyncio.timeout(self.timeout_s):
                return await self._follow(url, param)
        except TimeoutError:
            raise BadRequest(
                f"fetching the image took longer than {self.timeout_s:g} s; send it inline "
                "as a data URL",
                param,
                "image_url_timeout",
            ) from None
        except httpx2.HTTPError as exc:
            raise BadRequest(
                f"could not fetch the image ({type(exc).__name__}); check the URL or send the "
                "image inline as a data URL",
                param,
                "image_url_unreachable",
            ) from None

    async def _follow(self, url: str, param: str) -> bytes:
        async with httpx2.AsyncClient(
            trust_env=False, follow_redirects=False, transport=self.transport
        ) as client:
            for _ in range(self.max_redirects + 1):
                host, port = self.check_url(url, param)
                address = await self.resolve(host, port, param)
                request = client.build_request(
                    "GET",
                    _pinned(url, address),
                    headers={"Host": urlsplit(url).netloc.rpartition("@")[2]},
                    extensions={"sni_hostname": host},
                )
                response = await client.send(request, stream=True)
                try:
                    if response.status_code in REDIRECTS and "location" in response.headers:
                        url = urljoin(url, response.headers["location"])
                        continue
                    return await self._body(response, param)
                finally:
                    await response.aclose()
        raise BadRequest(
            f"the image URL redirected more than {self.max_redirects} times",
            param,
            "image_url_redirects",
        )

    def check_url(self, url: str, param: str) -> tuple[str, int]:
        """(host, port) of an allowed http(s) URL; raises BadRequest otherwise."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise BadRequest(
                f"image URLs must be http or https, not {parts.scheme or 'schemeless'}",
                param,
                "image_url_scheme",
            )
        if parts.username is not None or parts.password is not None or not parts.hostname:
            raise BadRequest("image URLs need a host and no user:password", param, "image_url")
        if not host_allowed(parts.hostname, self.allowed_hosts):
            raise BadRequest(
                f"host {parts.hostname!r} is not on this server's image host allowlist",
                param,
                "image_url_host",
            )
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise BadRequest("the image URL has an invalid port", param, "image_url") from None
        return parts.hostname, port

    async def resolve(self, host: str, port: int, param: str) -> Address:
        """One address of `host`, after checking that every address it has is allowed."""
        try:
            addresses = [
                ipaddress.ip_address(a.split("%")[0]) for a in await self.resolver(host, port)
            ]
        except (OSError, ValueError):
            addresses = []
        if not addresses:
            raise BadRequest(
                f"could not resolve image host {host!r}", param, "image_url_unresolved"
            )
        refused = [a for a in addresses if not self.address_allowed(a)]
        if refused:
            raise BadRequest(
                f"image host {host!r} resolves to a non-public address ({refused[0]}); "
                "images are only fetched from public addresses",
                param,
                "image_url_address",
            )
        return addresses[0]

    async def _body(self, response: httpx2.Response, param: str) -> bytes:
        if response.status_code != 200:
            raise BadRequest(
                f"the image URL answered HTTP {response.status_code}", param, "image_url_status"
            )
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise _too_large(self.max_bytes, param)
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > self.max_bytes:
                raise _too_large(self.max_bytes, param)
        return bytes(body)


def _too_large(max_bytes: int, param: str) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"the image at the URL is over the limit of {max_bytes:,} bytes", param, "image_too_large"
    )


def _pinned(url: str, address: Address) -> str:
    """`url` with its host replaced by the checked address."""
    parts = urlsplit(url)
    host = f"[{address}]" if address.version == 6 else str(address)
    netloc = f"{host}:{parts.port}" if parts.port else host
    return parts._replace(netloc=netloc).geturl()

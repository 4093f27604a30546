"""Outbound HTTP of nodes (http.request, documents.parse): which addresses a node may reach,
redirects followed by hand, and bodies read up to a cap.

Every connection goes through :class:`_GuardedBackend`: the host name is resolved once, every
address it resolves to is checked, and the socket is opened to a checked address — so a name
cannot resolve to a public address for the check and to a private one for the connection (DNS
rebinding), and decimal (``http://2130706433/``), octal or IPv6-mapped
(``http://[::ffff:127.0.0.1]/``) spellings of an address are judged by the address they mean.

- Link-local addresses (``169.254.0.0/16``, ``fe80::/10``), cloud metadata endpoints
  (``169.254.169.254``, ``fd00:ec2::254``, ``metadata.google.internal``…), multicast, reserved
  and unspecified addresses are refused always.
- Loopback and private addresses (RFC 1918, ``fc00::/7``, ``100.64.0.0/10``…) are refused
  unless the worker's ``allow_private_networks`` is on.

The environment's proxy variables are not used: a proxy would hide the destination from the
check. Redirects are followed by :func:`request` (never by httpx), each hop's connection checked
again, up to a bound.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from email.message import Message
from typing import Any

import httpcore
import httpx

from activities._context import NodeContext
from activities.errors import PermanentNodeError
from activities.files import too_large
from activities.settings import WorkerSettings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

INLINE_SETTING = (
    "allow_private_networks_for_inline in the worker configuration "
    "(TIDEFLOW_ALLOW_PRIVATE_NETWORKS_FOR_INLINE; this run's definition was posted inline)"
)
PRIVATE_SETTING = (
    "allow_private_networks in the worker configuration (TIDEFLOW_ALLOW_PRIVATE_NETWORKS)"
)
"""How a message names the setting that opens private networks."""

METADATA_HOSTS = frozenset(
    {
        "metadata.google.internal",
        "metadata.goog",
        "metadata",
        "instance-data",
        "instance-data.ec2.internal",
        "metadata.azure.com",
    }
)
"""Host names of cloud metadata services, refused before they are even resolved."""

METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(address)
    for address in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, Oracle...
        "169.254.170.2",  # AWS ECS task credentials
        "fd00:ec2::254",  # AWS IMDS over IPv6
        "100.100.100.200",  # Alibaba Cloud
        "168.63.129.16",  # Azure host platform (WireServer)
    )
)
"""Cloud metadata addresses: refused always, whatever range they sit in."""

_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class BlockedAddressError(PermanentNodeError):
    """A node tried to reach an address the worker does not let it reach."""


@dataclass(frozen=True)
class AddressPolicy:
    """Which addresses nodes may connect to."""

    allow_private: bool = False
    """Loopback and private ranges too (link-local and metadata stay refused)."""
    setting: str = PRIVATE_SETTING
    """How a refusal names the setting that would allow private addresses."""

    def refusal(self, ip: IPAddress) -> str | None:
        """Why ``ip`` is refused, or None when it may be reached."""
        ip = embedded_ipv4(ip)
        if ip in METADATA_ADDRESSES:
            return "a cloud metadata address, which nodes may never reach"
        if ip.is_link_local:
            return "a link-local address, which nodes may never reach"
        if ip.is_loopback:
            kind = "a loopback"
        elif ip.is_multicast or ip.is_unspecified or ip.is_reserved:
            return "not a unicast address nodes may reach"
        elif not ip.is_global:
            kind = "a private"
        else:
            return None
        if self.allow_private:
            return None
        return (
            f"{kind} address; nodes reach loopback and private addresses only when the worker "
            f"allows them with {self.setting}"
        )

    async def resolve(self, host: str, port: int, timeout: float | None) -> list[str]:
        """The addresses of ``host``, every one of them checked (a refusal raises)."""
        name = host.strip("[]").rstrip(".").lower()
        if name in METADATA_HOSTS:
            raise BlockedAddressError(
                f"{host} is a cloud metadata service, which nodes may never reach"
            )
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(name, port, type=socket.SOCK_STREAM), timeout
            )
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from None
        except OSError as e:
            raise httpcore.ConnectError(f"cannot resolve {host}: {e}") from None
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        for address in addresses:
            why = self.refusal(ipaddress.ip_address(address.split("%", 1)[0]))
            if why is not None:
                shown = host if host == address else f"{host} ({address})"
                raise BlockedAddressError(f"{shown} is {why}")
        if not addresses:
            raise httpcore.ConnectError(f"{host} has no address")
        return addresses


def embedded_ipv4(ip: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 address stands for (mapped, 6to4, NAT64, IPv4-compatible), else
    the address itself: ``::ffff:127.0.0.1`` is judged as ``127.0.0.1``."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return ip
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if 1 < int(ip) < 2**32:  # ::a.b.c.d, deprecated "IPv4-compatible" (::1 is loopback)
        return ipaddress.IPv4Address(int(ip))
    return ip


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, connecting only to addresses the policy allows."""

    def __init__(self, policy: AddressPolicy) -> None:
        self._policy = policy
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Resolve, check every address, then connect to the first checked one that answers.
        TLS still verifies and sends the URL's host name: httpcore takes it from the URL."""
        failure: Exception | None = None
        for address in await self._policy.resolve(host, port, timeout):
            try:
                return await self._inner.connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as e:
                failure = e
        assert failure is not None
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Never: nodes speak TCP only."""
        raise BlockedAddressError("nodes may not connect to Unix sockets")

    async def sleep(self, seconds: float) -> None:
        """Wait (httpcore's retries use it)."""
        await self._inner.sleep(seconds)


class _GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport over :class:`_GuardedBackend`."""

    def __init__(self, policy: AddressPolicy) -> None:
        super().__init__()
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=20)
        # The same pool httpx builds, with the guarded backend: httpx has no public way to
        # pass a network backend.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_GuardedBackend(policy),
        )


UNTRUSTED_ORIGINS = frozenset({"inline"})
"""Run origins whose definitions a stranger may have written (an inline definition posted to
the HTTP API): private and loopback addresses stay closed to them unless
``allow_private_networks_for_inline`` says otherwise, whatever ``allow_private_networks``."""


def new_client(settings: WorkerSettings, *, origin: str | None = None) -> httpx.AsyncClient:
    """An HTTP client for nodes of runs from ``origin``: checked addresses, no redirects of
    its own, no proxies."""
    if origin in UNTRUSTED_ORIGINS:
        policy = AddressPolicy(
            allow_private=settings.allow_private_networks_for_inline,
            setting=INLINE_SETTING,
        )
    else:
        policy = AddressPolicy(allow_private=settings.allow_private_networks)
    return httpx.AsyncClient(
        transport=_GuardedTransport(policy), trust_env=False, follow_redirects=False
    )


async def client_for(ctx: NodeContext) -> httpx.AsyncClient:
    """The worker's shared client for the node's run origin (one per trust level)."""
    untrusted = ctx.origin in UNTRUSTED_ORIGINS
    key = "egress.client.untrusted" if untrusted else "egress.client"
    origin = ctx.origin if untrusted else None
    client: httpx.AsyncClient = await ctx.resources.get(
        key, lambda: new_client(ctx.settings, origin=origin), close=close_client
    )
    return client


async def close_client(client: httpx.AsyncClient) -> None:
    """Close a client made by :func:`new_client` (a worker resource's closer)."""
    await client.aclose()


@dataclass(frozen=True)
class Response:
    """A response whose body was read whole (within the cap)."""

    status_code: int
    reason_phrase: str
    headers: httpx.Headers
    content: bytes
    url: httpx.URL

    @property
    def content_type(self) -> str | None:
        """The declared Content-Type, if any."""
        declared: str | None = self.headers.get("content-type")
        return declared

    @property
    def text(self) -> str:
        """The body decoded by its declared charset (UTF-8 without one; bad bytes replaced)."""
        message = Message()
        message["content-type"] = self.content_type or "text/plain"
        charset = message.get_content_charset() or "utf-8"
        try:
            return self.content.decode(charset, errors="replace")
        except LookupError:  # a charset Python does not know
            return self.content.decode("utf-8", errors="replace")


_REDIRECTS = frozenset({301, 302, 303, 307, 308})


async def request(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    shown: str,
    max_bytes: int,
    max_redirects: int = 0,
    **options: Any,
) -> Response:
    """Send a request and read the response body, at most ``max_bytes`` of it.

    ``max_redirects`` > 0 follows that many redirects (a 303, or a 301/302 of a POST, turns into
    a GET without body); each hop connects through the same address check. Raises
    :class:`BlockedAddressError` and :class:`~activities.files.TooLargeError` as node errors,
    prefixed with ``shown`` (how messages name the URL), and httpx's errors as they are.
    """
    target: httpx.URL | str = url
    for hop in range(max_redirects + 1):
        try:
            outgoing = client.build_request(method, target, **options)
            response = await client.send(outgoing, stream=True)
        except BlockedAddressError as e:
            raise BlockedAddressError(f"{shown}: {e.message}") from None
        try:
            if response.status_code in _REDIRECTS and "location" in response.headers:
                if hop < max_redirects:
                    target = _next_hop(response, shown)
                    if response.status_code == 303 or (
                        response.status_code in (301, 302) and method == "POST"
                    ):
                        method = "GET"
                        options = {k: v for k, v in options.items() if k not in _BODY_OPTIONS}
                    continue
                if max_redirects:
                    raise PermanentNodeError(f"{shown}: more than {max_redirects} redirects")
            content = b"".join([chunk async for chunk in _body(response, shown, max_bytes)])
            return Response(
                response.status_code,
                response.reason_phrase,
                response.headers,
                content,
                response.url,
            )
        finally:
            await response.aclose()
    raise AssertionError("unreachable")  # pragma: no cover


_BODY_OPTIONS = frozenset({"json", "content", "data", "files"})


def _next_hop(response: httpx.Response, shown: str) -> httpx.URL:
    try:
        following = response.url.join(response.headers["location"])
    except httpx.InvalidURL as e:
        raise PermanentNodeError(f"{shown}: redirected to an invalid URL ({e})") from None
    if following.scheme not in ("http", "https"):
        raise PermanentNodeError(
            f"{shown}: redirected to a {following.scheme or 'relative'}: URL, not http(s)"
        )
    return following


async def _body(response: httpx.Response, shown: str, max_bytes: int) -> AsyncIterator[bytes]:
    """The decoded body in chunks; past ``max_bytes`` a TooLargeError (counted after
    decompression, so a small gzip bomb is caught too)."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise too_large(shown, max_bytes, int(declared))
    total = 0
    async for chunk in response.aiter_bytes():
        total += len(chunk)
        if total > max_bytes:
            raise too_large(shown, max_bytes)
        yield chunk

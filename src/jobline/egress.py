"""Outbound safety policy: which destinations the ``http`` function may reach (pure, no I/O).

A job's URL is user input, and the worker runs next to things a job must not reach: the
cloud metadata service (which hands out the machine's credentials), the database, admin
ports on localhost, the private network. So an outbound call is refused when its host is, or
resolves to, an address that is not public, unless the operator allows it:

- always refused unless listed in ``JOBLINE_HTTP_ALLOW``: loopback, unspecified (``0.0.0.0``,
  ``::``), link-local (``169.254.0.0/16``, ``fe80::/10``), cloud metadata (``169.254.169.254``,
  ``fd00:ec2::254``, ``100.100.100.200``, and the names ``metadata.google.internal`` and
  ``metadata.goog``), multicast, broadcast and reserved or documentation ranges, and IPv6
  addresses outside the global unicast range ``2000::/3``;
- refused unless ``JOBLINE_HTTP_ALLOW_PRIVATE`` is on (or ``JOBLINE_HTTP_ALLOW`` covers them):
  private ranges, i.e. RFC 1918 (``10/8``, ``172.16/12``, ``192.168/16``), carrier-grade NAT
  (``100.64/10``), unique local IPv6 (``fc00::/7``) and site-local IPv6 (``fec0::/10``).

IPv6 addresses that carry an IPv4 address are judged by it: IPv4-mapped (``::ffff:0:0/96``,
normalised to IPv4 first), NAT64 (``64:ff9b::/96``), 6to4 (``2002::/16``) and Teredo
(``2001::/32``, both its server and its client address). Legacy IPv4 spellings that
``inet_aton`` accepts (``127.1``, ``2130706433``, ``0x7f000001``, ``0177.0.0.1``) are read as the
address they spell, never sent to DNS. Only ``http`` and ``https`` URLs are allowed, and never
with ``user:password@`` (put credentials in a header, ideally as ``{{secret:NAME}}``).

This module decides; ``functions/http_sender.py`` enforces it where the connection is made: it
resolves the host itself, checks every address the name resolves to, and connects to one of
those same addresses, so a DNS answer that changes between check and connect (rebinding)
cannot slip through. Each redirect hop is a new connection and is checked the same way.

>>> policy = Policy.parse("127.0.0.0/8, api.internal")
>>> policy.check_address(ipaddress.ip_address("127.0.0.1"), "127.0.0.1")   # allowed: listed
>>> policy.check_address(ipaddress.ip_address("169.254.169.254"), "169.254.169.254")
Traceback (most recent call last):
...
jobline.errors.DestinationBlocked: destination 169.254.169.254 blocked: ...
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import urllib.parse
from typing import Any

from .errors import ConfigError, DestinationBlocked

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

ALLOW_VARIABLE = "JOBLINE_HTTP_ALLOW"
PRIVATE_VARIABLE = "JOBLINE_HTTP_ALLOW_PRIVATE"
SCHEMES = ("http", "https")
# Schemes a refusal names even when the URL came from a secret: common enough to say nothing
# about the value, and naming them tells the user what is wrong.
WELL_KNOWN_SCHEMES = frozenset({"ftp", "ftps", "sftp", "file", "gopher", "dict", "ldap", "ldaps", "ws", "wss",
                                "mailto", "data", "javascript", "tftp", "ssh", "telnet", "smtp", "redis"})

# Cloud metadata endpoints by name: refused before any DNS lookup (they only resolve inside the
# cloud, where they reach the instance's credentials).
METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata.goog"})


@dataclasses.dataclass(frozen=True, slots=True)
class Verdict:
    """Why an address is not public: ``rule`` names the range, ``network`` is the range itself,
    and ``private`` says whether JOBLINE_HTTP_ALLOW_PRIVATE lifts the refusal. ``inside`` is the
    IPv4 address an IPv6 address carries, when that is what was judged (kept out of ``rule``,
    which is logged and may not quote an address that came from a secret)."""

    rule: str
    network: str
    private: bool = False
    inside: str = ""


def _table(*rows: tuple[str, str, bool]) -> tuple[tuple[Network, Verdict], ...]:
    return tuple((ipaddress.ip_network(net), Verdict(rule, net, private)) for net, rule, private in rows)


# Checked in order, so the specific entries (metadata, broadcast) come before the ranges that
# contain them.
_IPV4 = _table(
    ("169.254.169.254/32", "a cloud metadata address", False),
    ("100.100.100.200/32", "a cloud metadata address", False),
    ("0.0.0.0/8", "an unspecified address", False),  # 0.0.0.0 reaches the local host on Linux
    ("127.0.0.0/8", "a loopback address", False),
    ("169.254.0.0/16", "a link-local address", False),
    ("224.0.0.0/4", "a multicast address", False),
    ("255.255.255.255/32", "the broadcast address", False),
    ("240.0.0.0/4", "a reserved address", False),
    ("192.0.0.0/24", "a reserved address (IETF protocol assignments)", False),
    ("192.0.2.0/24", "a reserved address (documentation)", False),
    ("198.51.100.0/24", "a reserved address (documentation)", False),
    ("203.0.113.0/24", "a reserved address (documentation)", False),
    ("198.18.0.0/15", "a reserved address (benchmarking)", False),
    ("10.0.0.0/8", "a private address (RFC 1918)", True),
    ("172.16.0.0/12", "a private address (RFC 1918)", True),
    ("192.168.0.0/16", "a private address (RFC 1918)", True),
    ("100.64.0.0/10", "a carrier-grade NAT address", True),
)
_IPV6 = _table(
    ("fd00:ec2::254/128", "a cloud metadata address", False),
    ("::/128", "an unspecified address", False),
    ("::1/128", "a loopback address", False),
    ("fe80::/10", "a link-local address", False),
    ("ff00::/8", "a multicast address", False),
    ("2001:db8::/32", "a reserved address (documentation)", False),
    ("64:ff9b:1::/48", "a private address (local-use NAT64)", True),
    ("fc00::/7", "a private address (unique local)", True),
    ("fec0::/10", "a private address (site-local)", True),
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_TEREDO = ipaddress.ip_network("2001::/32")
_GLOBAL_UNICAST = ipaddress.ip_network("2000::/3")


def classify(address: IPAddress) -> Verdict | None:
    """Why ``address`` may not be reached without an allowance, or None when it is public.

    >>> classify(ipaddress.ip_address("10.1.2.3")).rule
    'a private address (RFC 1918)'
    >>> classify(ipaddress.ip_address("93.184.216.34")) is None
    True
    """
    address = normalise(address)
    table = _IPV4 if address.version == 4 else _IPV6
    for network, verdict in table:
        if address in network:
            return verdict
    if address.version == 4:
        return None
    embedded = _embedded_ipv4(address)
    if embedded:
        kind, inner = embedded
        for ipv4 in inner:
            verdict = classify(ipv4)
            if verdict is not None:
                return Verdict(f"{verdict.rule} inside a {kind} address", verdict.network, verdict.private,
                               str(ipv4))
        return None
    if address not in _GLOBAL_UNICAST:
        return Verdict("a reserved address (outside the global unicast range 2000::/3)", "")
    return None


def normalise(address: IPAddress) -> IPAddress:
    """IPv4-mapped IPv6 (``::ffff:a.b.c.d``) as the IPv4 address it is; the scope is dropped."""
    if address.version == 6:
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.scope_id:
            return ipaddress.IPv6Address(str(address).split("%", 1)[0])
    return address


def _embedded_ipv4(address: ipaddress.IPv6Address) -> tuple[str, list[ipaddress.IPv4Address]] | None:
    if address in _NAT64:
        return "NAT64", [ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)]
    if address.sixtofour is not None:
        return "6to4", [address.sixtofour]
    if address in _TEREDO and address.teredo is not None:
        server, client = address.teredo
        return "Teredo", [server, client]
    return None


# -- parsing hosts ------------------------------------------------------------------------------

_LEGACY_PART = (
    (re.compile(r"0[xX][0-9a-fA-F]+"), 16),
    (re.compile(r"0[0-7]*"), 8),
    (re.compile(r"[1-9][0-9]*"), 10),
)


def legacy_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """The address an ``inet_aton``-style spelling denotes (``127.1``, ``2130706433``,
    ``0x7f000001``, ``0177.0.0.1``), or None if ``host`` is not one. Resolvers accept these,
    so the policy must read them the same way rather than take them for names."""
    parts = host.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    values = []
    for part in parts:
        base = next((b for pattern, b in _LEGACY_PART if pattern.fullmatch(part)), None)
        if base is None:
            return None
        values.append(int(part, base))
    # The last part fills the bytes the others leave: "127.1" is 127.0.0.1.
    *head, last = values
    if any(v > 255 for v in head) or last >= 256 ** (5 - len(parts)):
        return None
    number = 0
    for v in head:
        number = number * 256 + v
    return ipaddress.IPv4Address((number << (8 * (5 - len(parts)))) | last)


def parse_host(host: str) -> tuple[str, IPAddress | None]:
    """(the host as compared with the allow-list: lower case, no brackets or trailing dot;
    its IP address if it is a literal one)."""
    name = host.strip().lower()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    name = name.removesuffix(".")
    try:
        return name, ipaddress.ip_address(name)
    except ValueError:
        pass
    return name, legacy_ipv4(name)


@dataclasses.dataclass(frozen=True, slots=True)
class Destination:
    scheme: str
    host: str                 # normalised (see parse_host)
    port: int
    address: IPAddress | None  # set when the host is an IP literal


# -- the policy ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Policy:
    """The operator's allowances on top of the built-in refusals (see the module docstring)."""

    hosts: frozenset[str] = frozenset()
    networks: tuple[Network, ...] = ()
    allow_private: bool = False

    @classmethod
    def parse(cls, allow: str | None, allow_private: bool = False) -> Policy:
        """Read ``JOBLINE_HTTP_ALLOW``: hostnames (exact, case-insensitive), IP addresses and CIDR
        networks, IPv4 or IPv6, separated by commas; ConfigError names a malformed entry.

        >>> Policy.parse("localhost, 10.17.17.17/32, ::1").networks
        (IPv4Network('10.17.17.17/32'), IPv6Network('::1/128'))
        """
        hosts: set[str] = set()
        networks: list[Network] = []
        for raw in (allow or "").split(","):
            entry = raw.strip()
            if not entry:
                continue
            if "/" in entry or _looks_like_address(entry):
                try:
                    network = ipaddress.ip_network(entry.strip("[]"), strict=False)
                except ValueError:
                    raise ConfigError(f"{ALLOW_VARIABLE}: {entry!r} is not an IP address or network; write "
                                      "addresses like 10.17.17.17 or ::1 and networks like 127.0.0.0/8") from None
                networks.append(_normalise_network(network))
                continue
            name = entry.lower().removesuffix(".")
            if not _HOSTNAME.fullmatch(name):
                raise ConfigError(f"{ALLOW_VARIABLE}: {entry!r} is not a hostname, IP address or network; "
                                  "separate entries with commas, e.g. 127.0.0.0/8,api.internal")
            hosts.add(name)
        return cls(frozenset(hosts), tuple(networks), allow_private)

    @classmethod
    def from_settings(cls, settings: Any) -> Policy:
        return cls.parse(settings.http_allow, settings.http_allow_private)

    def allows_host(self, host: str) -> bool:
        """Whether ``host`` is listed by name: then whatever it resolves to may be reached."""
        return parse_host(host)[0] in self.hosts

    def check_address(self, address: IPAddress, host: str, written: str | None = None) -> None:
        """Raise DestinationBlocked unless ``address`` (which ``host`` is or resolved to) may be
        reached. ``written``: see :meth:`check_url`."""
        verdict = classify(address)
        if verdict is None:
            return
        plain = normalise(address)
        if any(plain in network for network in self.networks if network.version == plain.version):
            return
        if verdict.private and self.allow_private:
            return
        if self.allows_host(host):
            return
        raise _blocked(host, str(plain), verdict, written)

    def check_url(self, url: str, written: str | None = None) -> Destination:
        """Check what can be checked before connecting: scheme, credentials, and the host when
        it is an IP address or a metadata name. Names are checked when they are resolved.

        ``written`` is the URL as the job wrote it, when ``url`` holds a secret's value (its
        ``{{secret:NAME}}`` references filled in, or a redirect target scrubbed of them). A
        refusal then quotes ``written``, never ``url``; unless ``written`` spells out its scheme
        and host (see :func:`host_as_written`), it names neither the host nor its address, nor
        the scheme unless it is a well-known one. The message (and ``rule``, which is logged)
        must not carry any part of a secret.

        >>> Policy().check_url("https://api.example.com/v1").port
        443
        """
        shown = _clip(url) if written is None else _clip(written)
        filled = "" if written is None else " once its secrets are filled in"
        try:
            parts = urllib.parse.urlsplit(url)
            port = parts.port
        except ValueError as exc:
            # urllib's message quotes the part it rejects.
            reason = str(exc) if written is None else ("its port is not a number from 0 to 65535"
                                                       if "port" in str(exc).lower() else "it cannot be parsed")
            raise DestinationBlocked(f"URL {shown} is malformed{filled} ({reason})", rule="malformed URL") from None
        scheme = parts.scheme.lower()
        if scheme not in SCHEMES:
            if not scheme:
                has = "no scheme"
            elif host_as_written(written) or scheme in WELL_KNOWN_SCHEMES:
                has = f"{scheme}://"
            else:
                has = "a scheme other than http:// or https://"
            raise DestinationBlocked(f"URL {shown} has {has}{filled}; only http:// and https:// URLs are allowed",
                                     rule="scheme")
        if parts.username is not None or parts.password is not None or "@" in parts.netloc:
            raise DestinationBlocked("URLs with user:password@ are refused; send credentials in a header "
                                     "instead, e.g. Authorization: Bearer {{secret:NAME}}", rule="credentials in URL")
        raw_host = parts.netloc.rsplit(":", 1)[0] if not parts.netloc.endswith("]") else parts.netloc
        if raw_host.startswith("[") and raw_host.endswith("]"):
            try:
                ipaddress.IPv6Address(raw_host[1:-1])
            except ValueError:
                bracketed = raw_host if host_as_written(written) else "a host"
                raise DestinationBlocked(f"URL {shown} has {bracketed} in brackets{filled}, which is not an IPv6 "
                                         "address", rule="malformed URL") from None
        if not parts.hostname:
            raise DestinationBlocked(f"URL {shown} has no host{filled}", rule="malformed URL")
        host, address = parse_host(parts.hostname)
        destination = Destination(scheme, host, port or (443 if scheme == "https" else 80), address)
        if address is not None:
            self.check_address(address, host, written)
        else:
            self.check_name(host, written)
        return destination

    def check_name(self, host: str, written: str | None = None) -> None:
        """Refuse a hostname before resolving it, if it names a cloud metadata service.
        ``written``: see :meth:`check_url`."""
        name = parse_host(host)[0]
        if name in METADATA_HOSTS and name not in self.hosts:
            raise _blocked(name, None, Verdict("a cloud metadata host", ""), written)


_WRITTEN_ORIGIN = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^/?#]*")


def host_as_written(written: str | None) -> bool:
    """Whether a URL as written (see :meth:`Policy.check_url`) spells out its scheme and host,
    so naming them shows nothing of a secret: True for ``https://api.example.com/{{secret:t}}``
    or None (no secret in the URL at all), False for ``{{secret:base}}/hook`` or
    ``https://{{owner_secret:tenant}}.example.com/``."""
    if written is None:
        return True
    origin = _WRITTEN_ORIGIN.match(written)
    return origin is not None and "{{" not in origin[0]  # {{secret:...}} or {{owner_secret:...}}


def _blocked(host: str, address: str | None, verdict: Verdict, written: str | None = None) -> DestinationBlocked:
    network = ""
    if verdict.network and not verdict.network.endswith(("/32", "/128")):
        network = f" in {verdict.network}"
    private = f", or set {PRIVATE_VARIABLE}=on to allow every private address" if verdict.private else ""
    if not host_as_written(written):
        # The host came from a secret (or could have): say which URL and which rule, and how to
        # allow it, without the host, its address or the IPv4 address inside it.
        return DestinationBlocked(
            f"destination {_clip(written)} blocked: its host (filled in from a secret) is {verdict.rule}{network}, "
            f"which outbound calls may not reach unless allowed; if it is intended, add that host, or its "
            f"address (or a network containing it), to {ALLOW_VARIABLE}{private}",
            rule=verdict.rule)
    shown = host if address is None or host == address else f"{host} ({address})"
    inside = f" ({verdict.inside})" if verdict.inside else ""
    what = f"{address or host} is {verdict.rule}{inside}{network}"
    target = f"{address} (or a network containing it)" if address else host
    return DestinationBlocked(
        f"destination {shown} blocked: {what}, which outbound calls may not reach unless allowed; "
        f"if it is intended, add {target} to {ALLOW_VARIABLE}{private}",
        host=host, address=address, rule=verdict.rule)


_HOSTNAME = re.compile(r"(?=.{1,253}$)[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*")


def _looks_like_address(entry: str) -> bool:
    return ":" in entry or bool(re.fullmatch(r"[0-9.]+", entry))


def _normalise_network(network: Network) -> Network:
    """``::ffff:10.0.0.0/104`` as ``10.0.0.0/8``, so it matches normalised addresses."""
    if network.version == 6 and network.network_address.ipv4_mapped is not None and network.prefixlen >= 96:
        return ipaddress.IPv4Network((network.network_address.ipv4_mapped, network.prefixlen - 96))
    return network


def _clip(url: str, limit: int = 200) -> str:
    """A URL quoted for a message. Only for text that holds no secret's value: cutting or
    escaping one (repr() doubles a backslash) would leave something no scrubber recognises."""
    return repr(url if len(url) <= limit else url[:limit] + "...")

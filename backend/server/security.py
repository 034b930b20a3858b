"""Who may talk to the server: the bind policy, "local" peers, and CurveZMQ with an allow-list.

* Without keys the server binds only loopback (127.0.0.0/8, ::1, localhost) or ``ipc://``: nothing off
  this machine can reach it. Any other address needs ``--keys``.
* With keys it is a CurveZMQ server; a ZAP handler (pyzmq's ThreadAuthenticator — the server is not
  Blender, a thread is fine here) admits only clients whose public key is in ``KEYS/authorized/``.
  Others fail the handshake and receive nothing at all.
* "Local" (needed for ``shutdown``) means: the socket is an ``ipc://``/``inproc://`` endpoint, which
  only this machine can open, or the peer's address as libzmq reports it for the connection
  (``Peer-Address`` message metadata, taken from the TCP connection, not from anything the client
  says) is a loopback address.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from backend.errors import InputError

_TCP_RE = re.compile(r"tcp://(?P<host>\[[0-9A-Fa-f:.]+\]|[^:/\[\]]+):(?P<port>\d{1,5}|\*)")


@dataclass(frozen=True)
class Endpoint:
    transport: str        # tcp | ipc | inproc
    host: str | None      # tcp only, brackets removed
    port: str | None      # tcp only: digits or "*"

    @property
    def ipv6(self) -> bool:
        return self.host is not None and ":" in self.host

    @property
    def loopback(self) -> bool:
        if self.transport in ("ipc", "inproc"):
            return True
        return self.host is not None and is_loopback_address(self.host)


def parse_endpoint(endpoint: str) -> Endpoint:
    """Split a bind address; :class:`InputError` for anything but tcp://HOST:PORT, ipc://, inproc://."""
    if not isinstance(endpoint, str):
        raise InputError(f"bind address {endpoint!r} must be a string")
    for transport in ("ipc", "inproc"):
        if endpoint.startswith(f"{transport}://") and len(endpoint) > len(transport) + 3:
            return Endpoint(transport, None, None)
    match = _TCP_RE.fullmatch(endpoint)
    if match is None:
        raise InputError(f"bind address {endpoint!r} is not supported: use tcp://HOST:PORT "
                         "(e.g. tcp://127.0.0.1:5555) or ipc:///path/to/socket")
    host = match["host"].strip("[]")
    port = match["port"]
    if port != "*" and not 0 < int(port) < 65536:
        raise InputError(f"bind address {endpoint!r}: port {port} is out of range")
    return Endpoint("tcp", host, port)


def is_loopback_address(host: str) -> bool:
    """True for 127.0.0.0/8, ::1, IPv4-mapped loopback and the name ``localhost``."""
    if host == "localhost":
        return True
    try:
        addr = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False   # interface names, "*", other host names: not provably loopback
    mapped = getattr(addr, "ipv4_mapped", None)
    return bool(addr.is_loopback or (mapped is not None and mapped.is_loopback))


def check_bind(endpoint: str, have_keys: bool) -> Endpoint:
    """Refuse a non-loopback bind without CurveZMQ keys, with the reason and the way out."""
    parsed = parse_endpoint(endpoint)
    if not parsed.loopback and not have_keys:
        raise InputError(
            f"refusing to bind {endpoint} without CurveZMQ keys: without --keys only loopback "
            "(127.0.0.1, ::1, localhost) and ipc:// addresses are allowed, because anyone who can "
            "reach the port could use the server. Make keys with `avatex keys --out DIR --name "
            "server`, put each client's public .key file in DIR/authorized/, and pass --keys DIR.")
    return parsed


def is_local_peer(bind: Endpoint, peer_address: str | None) -> bool:
    """Whether a request came from this machine (see the module docstring for why this is sound)."""
    if bind.transport in ("ipc", "inproc"):
        return True
    return bool(peer_address) and is_loopback_address(peer_address)

"""A DNS server for the gateway tests: UDP on a loopback port, A records from a dict.

NGINX's resolver asks it for the upstreams' names. ``records`` maps a name to its IPv4
addresses and may be changed while the server runs: a name that is missing answers NXDOMAIN,
an AAAA question for a known name answers "no such record" (NOERROR, empty), as the cluster
DNS does for a Service without IPv6. Every question is kept in ``questions``.

Only what a resolver's plain query needs (RFC 1035 section 4): one question, no compression in
it, answers pointing back at it.
"""

from __future__ import annotations

import socket
import struct
import threading

A, AAAA = 1, 28
NXDOMAIN = 3
# Response, authoritative, recursion available; the client's "recursion desired" is echoed.
_RESPONSE_FLAGS = 0x8000 | 0x0400 | 0x0080
_RECURSION_DESIRED = 0x0100


class DnsServer:
    """Answers A questions from ``records`` (name -> list of IPv4 addresses) with ``ttl``."""

    def __init__(self, ttl: int = 1) -> None:
        self.records: dict[str, list[str]] = {}
        self.questions: list[tuple[str, int]] = []
        self.ttl = ttl
        self._lock = threading.Lock()
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.settimeout(0.1)
        self.address = "{}:{}".format(*self._socket.getsockname())
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="dns", daemon=True)
        self._thread.start()

    def set(self, name: str, *addresses: str) -> None:
        """Make ``name`` resolve to ``addresses`` (none: remove it, NXDOMAIN)."""
        with self._lock:
            if addresses:
                self.records[name.lower()] = list(addresses)
            else:
                self.records.pop(name.lower(), None)

    def asked(self, name: str) -> int:
        """How many A questions for ``name`` arrived."""
        with self._lock:
            return sum(1 for asked, qtype in self.questions if asked == name.lower() and qtype == A)

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)
        self._socket.close()

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                query, peer = self._socket.recvfrom(512)
            except TimeoutError:
                continue
            except OSError:
                return
            response = self._answer(query)
            if response is not None:
                self._socket.sendto(response, peer)

    def _answer(self, query: bytes) -> bytes | None:
        if len(query) < 12:
            return None
        ident, flags, count = struct.unpack("!HHH", query[:6])
        if count != 1:
            return None
        labels, offset = [], 12
        while offset < len(query) and query[offset]:
            length = query[offset]
            labels.append(query[offset + 1:offset + 1 + length].decode("ascii", "replace"))
            offset += 1 + length
        end = offset + 5  # the root label, then type and class
        if end > len(query):
            return None
        qtype = struct.unpack("!H", query[offset + 1:offset + 3])[0]
        name = ".".join(labels).lower()
        with self._lock:
            self.questions.append((name, qtype))
            addresses = self.records.get(name)
        found = addresses if addresses is not None and qtype == A else []
        answers = b"".join(
            # The name is a pointer to the question (offset 12); class IN; 4 bytes of data.
            struct.pack("!HHHIH", 0xC00C, A, 1, self.ttl, 4) + socket.inet_aton(address)
            for address in found
        )
        rcode = NXDOMAIN if addresses is None else 0
        header = struct.pack("!HHHHHH", ident,
                             _RESPONSE_FLAGS | (flags & _RECURSION_DESIRED) | rcode, 1,
                             len(found), 0, 0)
        return header + query[12:end] + answers

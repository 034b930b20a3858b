"""The reply byte budget: what libzmq still holds of the replies sent to each client (:class:`ReplyLedger`).

Bookkeeping only, apart from the socket loop (:mod:`.server`), which asks it before it queues a reply.
"""

from __future__ import annotations

import zmq

# Frames at least this large are sent zero-copy and tracked; smaller ones libzmq copies (pyzmq's default
# copy threshold), and those are bounded by the send high-water mark instead.
TRACK_BYTES = 1 << 16


class ReplyLedger:
    """Bytes of replies handed to libzmq and not yet written to the client's connection.

    libzmq's high-water marks count messages, so a client that never reads could otherwise pin
    ``SNDHWM`` × the message limit. Each large frame's :class:`zmq.MessageTracker` says when libzmq has
    let go of it (written, or dropped with the connection).
    """

    def __init__(self, per_peer: int, total: int):
        self.per_peer, self.total = per_peer, total
        self._pending: dict[bytes, list[tuple[list[zmq.MessageTracker], int]]] = {}

    def held(self, identity: bytes | None = None) -> int:
        """Bytes still held (for ``identity``, or for everyone); finished entries are dropped first."""
        if identity is not None:
            return self._prune(identity)
        return sum(self._prune(peer) for peer in list(self._pending))

    def admits(self, identity: bytes, size: int) -> bool:
        """Whether a reply of ``size`` bytes fits both budgets. One reply to a client with nothing
        pending always fits (it already passed the message limit), or large results could never go."""
        mine, everyone = self._prune(identity), self.held()
        fits_peer = mine == 0 or mine + size <= self.per_peer
        return fits_peer and (everyone == 0 or everyone + size <= self.total)

    def add(self, identity: bytes, trackers: list[zmq.MessageTracker], size: int) -> None:
        if trackers:
            self._pending.setdefault(identity, []).append((trackers, size))

    def _prune(self, identity: bytes) -> int:
        entries = self._pending.get(identity)
        if not entries:
            self._pending.pop(identity, None)
            return 0
        entries[:] = [(t, n) for t, n in entries if not all(x.done for x in t)]
        if not entries:
            del self._pending[identity]
            return 0
        return sum(n for _, n in entries)

"""Traffic counters: what a rank sent, against what plain MPI would have sent."""

from __future__ import annotations

import threading


class Stats:
    """Bytes this rank put on the wire in compressed collectives (``sent``), the bytes the same
    messages would have taken as floats (``raw``), the number of compressed calls, and of
    the point-to-point messages that carried them (``messages``; pipelining sends more).

    Counted per sending rank and per message, so for a ring the numbers cover every hop.
    ``in_node`` counts compressed bytes sent to ranks of this rank's own node: none where the
    nodes hold several ranks (they exchange floats and integer codes there), all of them
    where compression is forced on one node (every rank then counts as a node).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()  # the nonblocking worker counts too
        self.sent = 0
        self.raw = 0
        self.calls = 0
        self.messages = 0
        self.in_node = 0

    def add(self, *, sent: int = 0, raw: int = 0, calls: int = 0, messages: int = 0, in_node: int = 0) -> None:
        with self._lock:
            self.sent += sent
            self.raw += raw
            self.calls += calls
            self.messages += messages
            self.in_node += in_node

    @property
    def ratio(self) -> float:
        """raw / sent (inf before anything was sent)."""
        return self.raw / self.sent if self.sent else float("inf")

    def as_dict(self) -> dict:
        return {
            "sent_bytes": self.sent,
            "raw_bytes": self.raw,
            "calls": self.calls,
            "messages": self.messages,
            "ratio": self.ratio,
            "compressed_bytes_in_node": self.in_node,
        }

    def __repr__(self) -> str:
        return f"Stats(sent={self.sent}, raw={self.raw}, calls={self.calls}, messages={self.messages})"

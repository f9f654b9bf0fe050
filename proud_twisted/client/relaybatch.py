"""Gathering the relayed session frames of one reactor turn into bundles.

A group send makes one session datagram per relayed member; instead of one
relay request each, they leave together: one TCP frame, or as few UDP
datagrams as the MTU allows, which the server fans out.
"""

from __future__ import annotations

from proud_twisted.wire import relay

DEFAULT_BUNDLE_MTU = 1200
# A TCP bundle stays well below the server's maximum frame length.
TCP_BUNDLE_LIMIT = 32 * 1024


class RelayBatcher:
    """Collects C{(target, frame)} pairs and sends them at the end of the turn
    (from C{turnEnd}, a L{proud_twisted._glue.coredriver.TurnEnd}).

    @param udpUsable: whether UDP to the server works now (else TCP carries all).
    """

    def __init__(self, turnEnd, localID, udpUsable, sendUdp, sendTcp,
                 mtu: int = DEFAULT_BUNDLE_MTU) -> None:
        self.turnEnd = turnEnd
        self.localID = localID
        self.udpUsable = udpUsable
        self.sendUdp = sendUdp
        self.sendTcp = sendTcp
        self.mtu = mtu
        self.requestsSent = 0
        self._pending = []
        self._queued = False

    def add(self, target: int, frame: bytes) -> None:
        self._pending.append((target, frame))
        if not self._queued:
            self._queued = True
            self.turnEnd.add(self._queuedFlush)

    def _queuedFlush(self) -> None:
        if self._queued:
            self.flush()

    def flush(self) -> None:
        self._queued = False
        pending, self._pending = self._pending, []
        if not pending:
            return
        flags = relay.FLAG_SESSION
        if self.udpUsable():
            host = self.localID()
            for entries in self._split(pending, self.mtu):
                if len(entries) == 1:
                    (target, frame), = entries
                    self.sendUdp(relay.encodeUdpRelay(host, (target,), flags, frame))
                else:
                    self.sendUdp(relay.encodeUdpRelayBundle(host, flags, entries))
                self.requestsSent += 1
        else:
            for entries in self._split(pending, TCP_BUNDLE_LIMIT):
                if len(entries) == 1:
                    (target, frame), = entries
                    self.sendTcp(relay.encodeTcpRelayRequest((target,), flags, frame))
                else:
                    self.sendTcp(relay.encodeTcpRelayBundle(flags, entries))
                self.requestsSent += 1

    def cancel(self) -> None:
        """Drop what is pending."""
        self._queued = False
        self._pending = []

    @staticmethod
    def _split(pending, limit: int) -> list:
        """Consecutive runs of C{pending} whose bundle fits in C{limit} bytes
        and in the server's limit on entries."""
        bundles, current, size = [], [], relay.BUNDLE_UDP_OVERHEAD
        for target, frame in pending:
            entrySize = relay.BUNDLE_ENTRY_OVERHEAD + len(frame)
            if current and (size + entrySize > limit
                            or len(current) == relay.MAX_RELAY_TARGETS):
                bundles.append(current)
                current, size = [], relay.BUNDLE_UDP_OVERHEAD
            current.append((target, frame))
            size += entrySize
        bundles.append(current)
        return bundles

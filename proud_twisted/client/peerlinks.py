"""Everything a client does per peer: the pair session and the path it rides.

Each peer pair has ONE reliable-UDP session. Its datagrams go through the
server relay (UDP, or TCP while UDP to the server is down) until hole
punching finds a direct path, then straight to the peer, and back to the
relay if that path dies; the session re-sends whatever was in flight, so
switching paths loses, duplicates or reorders no reliable message.
"""

from __future__ import annotations

import struct

from twisted.internet import defer
from twisted.logger import Logger

from proud_twisted._glue.coredriver import CoreDriver
from proud_twisted._glue.sessiondriver import SessionDriver
from proud_twisted.client.pathstate import (
    PathBecameDirect,
    PathBecameRelayed,
    PathConfig,
    PathMode,
    PathState,
    PunchGaveUp,
)
from proud_twisted.constants import RelayReason
from proud_twisted.crypto import pairChannel, pairProbeKey
from proud_twisted.errors import HolePunchFailed, ProtocolError
from proud_twisted.rudp import MessageReceived
from proud_twisted.wire import relay
from proud_twisted.wire.messages import POLICY_DIRECT_ALLOWED, POLICY_PUNCH_AT_ONCE
from proud_twisted.wire.punch import DIRECT_DATA, decodeDirectData, encodeDirectData

_PEER_IDS = struct.Struct(">II")

DEFAULT_MAX_DIRECT_PEERS = 64
# Relayed frames (UDP) may overtake the PEER_PAIR (TCP) that introduces their
# sender; this many are kept for this long until it arrives.
EARLY_FRAMES_KEPT = 64
EARLY_FRAME_LIFETIME = 2.0


def _directHead(sender: int, receiver: int, epoch: int) -> bytes:
    """How every DIRECT_DATA datagram of the pair's C{epoch} from C{sender}
    to C{receiver} begins: the sealed session datagram follows."""
    return encodeDirectData(sender, receiver, relay.encodeSessionFrame(epoch, b""))


class PeerLinks:
    """The sessions and paths of one L{NetClient}'s peers."""

    log = Logger()

    def __init__(self, client, pathConfig: PathConfig = PathConfig(),
                 maxDirectPeers: int = DEFAULT_MAX_DIRECT_PEERS) -> None:
        self.client = client
        self.pathConfig = pathConfig
        self.maxDirectPeers = maxDirectPeers
        self.staleFrames = 0
        self.rejectedDatagrams = 0
        self._early = []            # (arrival time, sender, payload)

    # Peers come and go

    def paired(self, peer, policy: int) -> None:
        """The server paired us with C{peer}: start its session (and path)."""
        client = self.client
        if client.encryption:
            peer.channel = pairChannel(peer.pairSecret, client.getLocalHostID(),
                                       peer.hostID, peer.epoch)
        peer.driver = SessionDriver(client.reactor, self._relayTransmitter(peer),
                                    self._deliverer(peer), client.sessionConfig,
                                    client.turnEnd)
        if policy & POLICY_DIRECT_ALLOWED:
            state = PathState(client.getLocalHostID(), peer.hostID,
                              pairProbeKey(peer.pairSecret), (), self.pathConfig)
            peer.pathDriver = CoreDriver(client.reactor, state, self._sendPathDatagram,
                                         self._pathEventHandler(peer), client.turnEnd)
            peer.inboundHead = _directHead(peer.hostID, client.getLocalHostID(), peer.epoch)
            peer.punchAtOnce = bool(policy & POLICY_PUNCH_AT_ONCE)
        self._replayEarlyFrames(peer.hostID)

    def _sendPathDatagram(self, item: tuple) -> None:
        """Send what a path state emits: a C{(datagram, address)} pair."""
        self.client.sendDatagramTo(*item)

    def addressesChanged(self, peer) -> None:
        if peer.pathDriver is None or not peer.candidates:
            return
        peer.pathDriver.input(peer.pathDriver.core.candidatesChanged, peer.candidates)
        if peer.punchAtOnce:
            self._startPunching(peer)

    def gone(self, peer) -> None:
        """C{peer} no longer shares a group with us (or we left the server)."""
        for driver in (peer.driver, peer.pathDriver):
            if driver is not None:
                driver.close()
        peer.driver = peer.pathDriver = None
        self._failWaiters(peer, HolePunchFailed(f"{peer.hostID} is no longer a peer"))

    # Sending and receiving

    def send(self, peer, payload: bytes, mode, priority, channel: int) -> None:
        self._startPunching(peer)
        peer.driver.send(payload, mode, priority, channel)

    def relayedFrame(self, sender: int, payload: bytes) -> None:
        """A pair session datagram that came through the server relay."""
        peer = self.client.peerTable.peers.get(sender)
        if peer is None or peer.driver is None:
            self._keepEarlyFrame(sender, payload)
            return
        datagram = self._unframe(peer, payload)
        if datagram is not None:
            self._startPunching(peer)
            driver = peer.pathDriver
            if driver is not None and driver.core.mode is PathMode.DIRECT:
                # (Relayed data means something to the path only once direct.)
                driver.input(driver.core.noteRelayedTraffic)
            self._feed(peer, datagram, relayed=True)

    def peerDatagram(self, data: bytes, addr) -> None:
        """A datagram on our UDP socket from a peer (L{ProtocolError} if malformed)."""
        # Only the HostIDs here; the path state parses and authenticates the rest.
        if len(data) < _PEER_IDS.size + 2:
            raise ProtocolError("truncated peer datagram")
        sender, receiver = _PEER_IDS.unpack_from(data, 2)
        peer = self.client.peerTable.peers.get(sender)
        if (receiver != self.client.getLocalHostID() or peer is None
                or peer.pathDriver is None):
            self.rejectedDatagrams += 1
            return
        if data[1] != DIRECT_DATA:
            peer.pathDriver.input(peer.pathDriver.core.receiveDatagram, data, addr)
            return
        addr = tuple(addr)
        if addr != peer.directAddress and addr not in peer.pathDriver.core.candidates:
            self.rejectedDatagrams += 1
            return
        head = peer.inboundHead
        if data.startswith(head):       # (this epoch's: the one header check per datagram)
            datagram = self._open(peer, data[len(head):])
        else:
            datagram = self._unframe(peer, decodeDirectData(data)[2])
        if datagram is not None:
            peer.pathDriver.core.noteDirectTraffic(self.client.reactor.seconds())
            self._feed(peer, datagram, relayed=False)

    def punchRequested(self, sender: int) -> None:
        """The peer started punching toward us: punch toward it too."""
        peer = self.client.peerTable.peers.get(sender)
        if peer is not None:
            self._startPunching(peer)

    def relayPathChanged(self) -> None:
        """Our UDP to the server came or went: relayed sessions resend what was in flight."""
        for peer in self.client.peerTable.peers.values():
            if peer.driver is not None and peer.directAddress is None:
                peer.driver.pathChanged(peer.driver.transmit)

    # Direct paths

    def whenDirect(self, peer) -> defer.Deferred:
        if peer.directAddress is not None:
            return defer.succeed(peer.directAddress)
        if peer.pathDriver is None:
            return defer.fail(HolePunchFailed(
                f"direct P2P with {peer.hostID} is not allowed by the server"))
        if peer.pathDriver.core.mode is PathMode.FORCED_RELAY:
            return defer.fail(HolePunchFailed(
                f"the path to {peer.hostID} is forced onto the relay"))
        # (the lambda finds the list of the moment: firing the waiters replaces it)
        waiter = defer.Deferred(lambda d: peer.directWaiters.remove(d))  # noqa: PLW0108
        peer.directWaiters.append(waiter)
        peer.punchRequested = False     # an explicit wish: try again even after giving up
        self._startPunching(peer)
        return waiter

    def forceRelay(self, peer, on: bool) -> None:
        if peer.pathDriver is None:
            return
        peer.pathDriver.input(peer.pathDriver.core.forceRelay, on)
        if not on:
            peer.punchRequested = False
            self._startPunching(peer)

    def directPeerCount(self) -> int:
        return sum(1 for p in self.client.peerTable.peers.values()
                   if p.pathDriver is not None and p.pathDriver.core.mode in
                   (PathMode.DIRECT, PathMode.PUNCHING))

    # Internals

    def _startPunching(self, peer) -> None:
        """Start punching once; after that the path state retries on its own."""
        driver = peer.pathDriver
        if (driver is None or peer.punchRequested or not peer.candidates
                or driver.core.mode is not PathMode.RELAYED
                or driver.core.retryAt is not None):
            return
        if self.directPeerCount() >= self.maxDirectPeers:
            return
        peer.punchRequested = True
        driver.input(driver.core.candidatesChanged, peer.candidates)
        driver.input(driver.core.startPunching)
        # A NAT that filters by address lets the peer's probes in only once
        # we have sent it ours: ask it, through the relay, to punch as well.
        self.client.sendToServerTcp(relay.encodeTcpRelayRequest(
            (peer.hostID,), relay.FLAG_RELIABLE | relay.FLAG_PUNCH, b""))

    def _relayTransmitter(self, peer):
        batcher = self.client.relayBatcher

        def transmit(datagram: bytes) -> None:
            batcher.add(peer.hostID, self._frame(peer, datagram))
        return transmit

    def _directTransmitter(self, peer, address):
        client = self.client
        localID = client.getLocalHostID()
        state = peer.pathDriver.core

        head = _directHead(localID, peer.hostID, peer.epoch)

        def transmit(datagram: bytes) -> None:
            client.sendDatagramTo(head + self._seal(peer, datagram), address)
            state.noteDirectSent(client.reactor.seconds())
        return transmit

    def _deliverer(self, peer):
        def deliver(event) -> None:
            if type(event) is MessageReceived:
                self.client.deliverMessage(peer.hostID, event, peer.arrivalRelayed)
        return deliver

    def _pathEventHandler(self, peer):
        client = self.client

        def handle(event) -> None:
            if isinstance(event, PathBecameDirect):
                peer.directAddress = event.address
                peer.driver.pathChanged(self._directTransmitter(peer, event.address))
                self._reportPath(peer, True, RelayReason.HOLE_PUNCHED)
                waiters, peer.directWaiters = peer.directWaiters, []
                for waiter in waiters:
                    waiter.callback(event.address)
            elif isinstance(event, PathBecameRelayed):
                peer.directAddress = None
                peer.driver.pathChanged(self._relayTransmitter(peer))
                self._reportPath(peer, False, event.reason)
            elif isinstance(event, PunchGaveUp):
                # Told to the server for its statistics, as a relayed path.
                client.sendServerMessage("P2P_PATH", peerID=peer.hostID, direct=False)
                client.log.info("hole punching from {hostID} to {peerID} gave up: {reason}",
                                proud_event="punch_gave_up",
                                hostID=client.getLocalHostID(), peerID=peer.hostID,
                                reason=event.reason)
                self._failWaiters(peer, HolePunchFailed(
                    f"hole punching to {peer.hostID} gave up: {event.reason}"))
        return handle

    def _reportPath(self, peer, direct: bool, reason: RelayReason) -> None:
        client = self.client
        client.sendServerMessage("P2P_PATH", peerID=peer.hostID, direct=direct)
        client.log.info("path from {hostID} to {peerID}: {reason}",
                        proud_event="p2p_path_changed", hostID=client.getLocalHostID(),
                        peerID=peer.hostID, path="direct" if direct else "relayed",
                        reason=reason.name)
        client.dispatch("onChangeP2PRelayState", peer.hostID, reason)

    def _failWaiters(self, peer, error: Exception) -> None:
        waiters, peer.directWaiters = peer.directWaiters, []
        for waiter in waiters:
            waiter.errback(error)

    def _frame(self, peer, datagram: bytes) -> bytes:
        """A session datagram as it travels: the pair's epoch, then the sealed datagram."""
        return relay.encodeSessionFrame(peer.epoch, self._seal(peer, datagram))

    @staticmethod
    def _seal(peer, datagram: bytes) -> bytes:
        return datagram if peer.channel is None else peer.channel.seal(datagram)

    def _unframe(self, peer, payload: bytes):
        """The session datagram in a frame from C{peer}, or None if stale or forged.

        A frame is the peer's word, not the server's: a bad one is counted and
        dropped, never taken as the server connection's fault.
        """
        try:
            epoch, datagram = relay.decodeSessionFrame(payload)
        except ProtocolError:
            self.rejectedDatagrams += 1
            return None
        if epoch != peer.epoch:
            self.staleFrames += 1
            return None
        return self._open(peer, datagram)

    def _open(self, peer, sealed: bytes):
        """The session datagram C{peer} sealed, or None (counted) if forged."""
        if peer.channel is None:
            return sealed
        try:
            return peer.channel.open(sealed)
        except ProtocolError:
            self.rejectedDatagrams += 1
            return None

    def _keepEarlyFrame(self, sender: int, payload: bytes) -> None:
        now = self.client.reactor.seconds()
        self._early = [e for e in self._early if now - e[0] < EARLY_FRAME_LIFETIME]
        if len(self._early) >= EARLY_FRAMES_KEPT:
            self.staleFrames += 1
            return
        self._early.append((now, sender, payload))

    def _replayEarlyFrames(self, sender: int) -> None:
        frames = [e for e in self._early if e[1] == sender]
        if frames:
            self._early = [e for e in self._early if e[1] != sender]
            for _, _, payload in frames:
                self.relayedFrame(sender, payload)

    def _feed(self, peer, datagram: bytes, relayed: bool) -> None:
        """Feed the session; messages it completes now came by the path C{relayed} says."""
        peer.arrivalRelayed = relayed
        try:
            peer.driver.receiveDatagram(datagram)
        except ProtocolError:
            self.client.malformedDatagrams += 1

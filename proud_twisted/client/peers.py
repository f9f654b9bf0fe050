"""What a client knows of each peer: shared groups and addresses."""

from __future__ import annotations

from proud_twisted.info import PeerInfo


class Peer:
    """A remote client that shares at least one P2P group with us."""

    def __init__(self, hostID: int) -> None:
        self.hostID = hostID
        self.groups = set()
        self.udpAddress = None
        self.lanAddress = None
        self.directAddress = None
        self.epoch = 0
        self.pairSecret = b""
        self.channel = None         # the pair's SecureChannel (end to end)
        self.driver = None          # the pair's SessionDriver
        self.pathDriver = None      # the CoreDriver of its PathState, if direct P2P is allowed
        self.inboundHead = b""      # how its DIRECT_DATA to us begins, up to the sealed datagram
        self.punchAtOnce = False
        self.punchRequested = False
        self.arrivalRelayed = True  # how the datagram being processed arrived
        self.directWaiters = []

    @property
    def candidates(self) -> list:
        """Where a direct path may be found: the LAN address first."""
        return [a for a in (self.lanAddress, self.udpAddress) if a is not None]

    @property
    def relayed(self) -> bool:
        return self.directAddress is None

    def info(self) -> PeerInfo:
        stats = self.driver.stats if self.driver is not None else None
        return PeerInfo(self.hostID, self.relayed, self.udpAddress, self.lanAddress,
                        frozenset(self.groups), self.directAddress, stats,
                        stats.srtt if stats is not None else None)


class PeerTable:
    """Groups this client is in, their members, and the peers they make."""

    def __init__(self) -> None:
        self.groups = {}    # groupID -> set of member HostIDs (self included)
        self.peers = {}     # HostID -> Peer

    def pairIntroduced(self, peerID: int, epoch: int, pairSecret: bytes) -> Peer:
        """The server paired us with C{peerID}: a fresh epoch and secret.

        Returns the new L{Peer}, and also the one it replaced, if any, as
        C{(new, old)}.
        """
        old = self.peers.get(peerID)
        peer = self.peers[peerID] = Peer(peerID)
        if old is not None:
            peer.groups = old.groups
            peer.udpAddress, peer.lanAddress = old.udpAddress, old.lanAddress
        peer.epoch = epoch
        peer.pairSecret = pairSecret
        return peer, old

    def memberJoined(self, localID: int, groupID: int, memberID: int, addresses) -> None:
        self.groups.setdefault(groupID, set()).add(memberID)
        if memberID == localID:
            return
        peer = self.peers.get(memberID)
        if peer is None:
            peer = self.peers[memberID] = Peer(memberID)
        peer.groups.add(groupID)
        self.updateAddresses(memberID, *addresses)

    def memberLeft(self, localID: int, groupID: int, memberID: int) -> list:
        """Record a departure; return the peers we no longer share any group with."""
        gone = []
        members = self.groups.get(groupID)
        if members is not None:
            members.discard(memberID)
            if memberID == localID:
                for other in members:
                    gone += self._dropGroupOfPeer(other, groupID)
                del self.groups[groupID]
        return gone + self._dropGroupOfPeer(memberID, groupID)

    def updateAddresses(self, peerID: int, udpAddress, lanAddress) -> None:
        peer = self.peers.get(peerID)
        if peer is not None:
            peer.udpAddress = udpAddress
            peer.lanAddress = lanAddress

    def expand(self, localID: int, targets) -> list:
        """HostIDs a send to C{targets} reaches: groups become their other members."""
        if isinstance(targets, int):
            targets = [targets]
        result = set()
        for target in targets:
            members = self.groups.get(target)
            if members is not None:
                result.update(members)
            else:
                result.add(target)
        result.discard(localID)
        return sorted(result)

    def clear(self) -> list:
        """Forget everything; return the peers that were known."""
        peers = list(self.peers.values())
        self.groups.clear()
        self.peers.clear()
        return peers

    def _dropGroupOfPeer(self, peerID: int, groupID: int) -> list:
        peer = self.peers.get(peerID)
        if peer is None:
            return []
        peer.groups.discard(groupID)
        if peer.groups:
            return []
        del self.peers[peerID]
        return [peer]

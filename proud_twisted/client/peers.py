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

    @property
    def relayed(self) -> bool:
        return self.directAddress is None

    def info(self) -> PeerInfo:
        return PeerInfo(self.hostID, self.relayed, self.udpAddress, self.lanAddress,
                        frozenset(self.groups), self.directAddress)


class PeerTable:
    """Groups this client is in, their members, and the peers they make."""

    def __init__(self) -> None:
        self.groups = {}    # groupID -> set of member HostIDs (self included)
        self.peers = {}     # HostID -> Peer

    def memberJoined(self, localID: int, groupID: int, memberID: int, addresses) -> None:
        self.groups.setdefault(groupID, set()).add(memberID)
        if memberID == localID:
            return
        peer = self.peers.get(memberID)
        if peer is None:
            peer = self.peers[memberID] = Peer(memberID)
        peer.groups.add(groupID)
        self.updateAddresses(memberID, *addresses)

    def memberLeft(self, localID: int, groupID: int, memberID: int) -> None:
        members = self.groups.get(groupID)
        if members is not None:
            members.discard(memberID)
            if memberID == localID:
                for other in members:
                    self._dropGroupOfPeer(other, groupID)
                del self.groups[groupID]
        self._dropGroupOfPeer(memberID, groupID)

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

    def clear(self) -> None:
        self.groups.clear()
        self.peers.clear()

    def _dropGroupOfPeer(self, peerID: int, groupID: int) -> None:
        peer = self.peers.get(peerID)
        if peer is not None:
            peer.groups.discard(groupID)
            if not peer.groups:
                del self.peers[peerID]

"""P2P groups whose members live on different server processes of a cluster.

A group lives on the server that created it, its I{owner}; a member that is
a client of another server, its I{home}, is in the owner's group table as a
remote client. What the owner's table decides for a remote member (a join
or leave notice, a pair introduction, a pair forgotten) goes to the
member's home as a control message through the cluster, and the home tells
its client; what a home hears from its client for a remote group (a join
acknowledgement, the client leaving) goes back to the owner. The two homes
of a pair tell each other their client's addresses, so the pair can punch
and go direct; until then its relayed frames go from one home to the other
through the cluster (L{RemoteMembers.forward}).

Control messages are JSON objects with an C{op}; every field is checked on
arrival, and a message that is not one raises L{ProtocolError} (the cluster
counts and logs it).
"""

from __future__ import annotations

import json

from proud_twisted.errors import ProtocolError, UnknownHostID
from proud_twisted.wire.addresses import addressToWire
from proud_twisted.wire.messages import encodeMessage

FIRST_REMOTE_ACK_ID = 0x80000000
"""A home numbers the join notices it passes on from owners from here up, so
that they do not meet its own group table's numbers (counting from 1, they
would take 2**31 joins to get here)."""


def _pairKey(a: int, b: int) -> int:
    return a << 32 | b if a < b else b << 32 | a


def encodeControl(op: dict) -> bytes:
    return json.dumps(op, separators=(",", ":")).encode()


def decodeControl(data: bytes) -> dict:
    try:
        op = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise ProtocolError(f"control message is not JSON: {e}") from None
    if not isinstance(op, dict) or not isinstance(op.get("op"), str):
        raise ProtocolError("control message without an op")
    return op


def _int(op: dict, name: str) -> int:
    value = op.get(name)
    if type(value) is not int or not 0 <= value <= 0xFFFFFFFF:
        raise ProtocolError(f"control field {name!r} is not a 32-bit number")
    return value


def _hex(op: dict, name: str, limit: int) -> bytes:
    try:
        value = bytes.fromhex(op[name])
    except (KeyError, TypeError, ValueError):
        raise ProtocolError(f"control field {name!r} is not hex") from None
    if len(value) > limit:
        raise ProtocolError(f"control field {name!r} is too long")
    return value


def _address(op: dict, name: str):
    value = op.get(name)
    if value is None:
        return None
    if (not isinstance(value, list) or len(value) != 2 or not isinstance(value[0], str)
            or type(value[1]) is not int or not 0 <= value[1] <= 0xFFFF):
        raise ProtocolError(f"control field {name!r} is not an address")
    return (value[0], value[1])


def _wireAddress(address):
    return None if address is None else [address[0], address[1]]


class RemoteMembers:
    """One server's side of the groups that span servers (see the module).

    @ivar homes: remote clients in this server's group table -> their home.
    """

    def __init__(self, engine, cluster) -> None:
        self.engine = engine
        self.cluster = cluster
        self.homes: dict[int, str] = {}
        # Pairs with a remote side: _pairKey(a, b) -> {local client: home of its peer}.
        self._pairs: dict[int, dict[int, str]] = {}
        self._acks: dict[int, tuple[str, int, int]] = {}  # our ackID -> (owner, theirs, client)
        self._lastAck = FIRST_REMOTE_ACK_ID - 1
        # Local client -> {group of another server's it is in: that server}.
        self._groups: dict[int, dict[int, str]] = {}
        # Pairs of a local client that other servers introduced -> those servers.
        self._introducers: dict[int, set[str]] = {}

    # The owner's side

    def adopt(self, hostID: int) -> bool:
        """Put C{hostID}, a client of another server, into the group table;
        whether it was adopted now (False: it is there already)."""
        table = self.engine._table
        if table.hasClient(hostID):
            return False
        home = self.cluster.homeOf(hostID)
        if home is None:
            raise UnknownHostID(f"no client with HostID {hostID} here or on another "
                                "live server")
        table.addClient(hostID)
        self.homes[hostID] = home
        return True

    def drop(self, hostID: int) -> list:
        """Take remote client C{hostID} out of the group table; the effects."""
        if self.homes.pop(hostID, None) is None:
            return []
        return self.engine._table.removeClient(hostID)

    def joinNotice(self, effect, member) -> None:
        """A join notice of the owner's table that involves a remote client:
        C{effect.to} is one (else it left), and C{member} is the joining
        client's connection here, or None if it is one too (its home gives
        its addresses to its peers)."""
        home = self.homes.get(effect.to)
        if home is None or (member is None and effect.memberID not in self.homes):
            return                      # left meanwhile
        udp = lan = None
        if member is not None:
            udp, lan = _wireAddress(member.udpAddress), _wireAddress(member.lanAddress)
        self._control(home, dict(op="join", to=effect.to, group=effect.groupID,
                                 member=effect.memberID, count=effect.memberCount,
                                 ack=effect.ackID, message=effect.message.hex(),
                                 udp=udp, lan=lan))

    def leaveNotice(self, effect) -> None:
        home = self.homes.get(effect.to)
        if home is not None:
            self._control(home, dict(op="leave", to=effect.to, group=effect.groupID,
                                     member=effect.memberID, count=effect.memberCount))

    def introduce(self, me: int, peer: int, fields: dict) -> None:
        """Pair remote client C{me} with C{peer} (local here, or remote)."""
        peerHome = self.homes.get(peer, self.cluster.serverID)
        self._control(self.homes[me], dict(op="pair", to=me, peer=peer, peerHome=peerHome,
                                           **fields))

    def forgotten(self, a: int, b: int) -> None:
        """The owner's table forgot the pair C{a}, C{b}."""
        for me, peer in ((a, b), (b, a)):
            home = self.homes.get(me)
            if home is not None:
                self._control(home, dict(op="forget", to=me, peer=peer))
            elif me in self.engine._clients:
                self._forget(me, peer)

    # A home's side

    def pairedLocally(self, me: int, peer: int, peerHome: str) -> None:
        """Local client C{me} has a pair with C{peer}, a client of C{peerHome}:
        relay between them, and tell C{peer} where C{me} is."""
        self._pairs.setdefault(_pairKey(me, peer), {})[me] = peerHome
        client = self.engine._clients.get(me)
        if client is not None:
            # Asking for the peer's in return: of the two homes, the one that
            # hears of the pair last reaches the other, which knows it already.
            self._sendAddresses(client, peer, peerHome, reply=True)

    def _forget(self, me: int, peer: int) -> None:
        key = _pairKey(me, peer)
        sides = self._pairs.get(key)
        if sides is not None:
            if sides.pop(me, None) is not None:
                self.engine.pairParted(me, peer)
            if not sides:
                del self._pairs[key]
                self._introducers.pop(key, None)

    def pathReported(self, me: int, peer: int, direct: bool) -> None:
        """Local client C{me} reports its path to C{peer}, a pair another
        server introduced: that server counts it (its
        C{getP2PConnectionStats})."""
        for owner in sorted(self._introducers.get(_pairKey(me, peer), ())):
            self._control(owner, dict(op="path", member=me, peer=peer, direct=direct))

    def peerHome(self, me: int, peer: int) -> str | None:
        """The home of C{peer} if local client C{me} has a cross-server pair with it."""
        sides = self._pairs.get(_pairKey(me, peer))
        return None if sides is None else sides.get(me)

    def forward(self, home: str, sender: int, flags: int, frames: list) -> None:
        """Relay frames of local C{sender} (C{(target, payload)}) to its
        peers on C{home}."""
        self.cluster.frames(home, sender, flags, frames)

    def frameReceived(self, serverID: str, sender: int, target: int, flags: int,
                      payload: bytes) -> bool:
        """A frame relayed from C{serverID} (the sender's home, or the
        server of its HostID's block, passing it on); whether it was
        delivered, or passed on to where a client moved away from here lives."""
        client = self.engine._clients.get(target)
        if client is None:
            movedTo = self._movedFromHere(target, serverID)
            if movedTo is None:
                return False
            self.forward(movedTo, sender, flags, [(target, payload)])
            return True
        if self.peerHome(target, sender) is None:
            return False
        self.engine.deliverRelayed(sender, client, flags, payload)
        return True

    def acknowledged(self, client: int, ackID: int) -> bool:
        """Client C{client} acknowledged C{ackID}: whether it was a remote
        group's (then passed on to the owner)."""
        pending = self._acks.get(ackID)
        if pending is None or pending[2] != client:
            return False
        del self._acks[ackID]
        self._control(pending[0], dict(op="ack", member=client, ack=pending[1]))
        return True

    def clientGone(self, hostID: int) -> None:
        """Local client C{hostID} left: its remote groups' owners must know."""
        for owner in sorted(set(self._groups.pop(hostID, {}).values())):
            self._control(owner, dict(op="gone", member=hostID))
        for key in [k for k, sides in self._pairs.items() if hostID in sides]:
            self._forget(hostID, self._other(key, hostID))
        for ackID in [a for a, p in self._acks.items() if p[2] == hostID]:
            del self._acks[ackID]

    @staticmethod
    def _other(key: int, hostID: int) -> int:
        a, b = key >> 32, key & 0xFFFFFFFF
        return b if a == hostID else a

    def tellPeers(self, hostID: int, kind: str) -> None:
        """Local client C{hostID} went offline or came back (C{kind}:
        C{MEMBER_OFFLINE} or C{MEMBER_ONLINE}): its peers in groups of other
        servers', or on other servers, hear it as its local peers do."""
        for key, sides in list(self._pairs.items()):
            peerHome = sides.get(hostID)
            if peerHome is None:
                continue
            fields = dict(to=self._other(key, hostID), member=hostID,
                          online=kind == "MEMBER_ONLINE")
            if peerHome == self.cluster.serverID:
                self._presence(fields)
            else:
                self._control(peerHome, dict(op="presence", **fields))

    def _presence(self, op: dict) -> None:
        client = self.engine._clients.get(_int(op, "to"))
        member = _int(op, "member")
        if client is None or self.peerHome(client.hostID, member) is None:
            return
        kind = "MEMBER_ONLINE" if op.get("online") is True else "MEMBER_OFFLINE"
        client.sendBody(encodeMessage(kind, memberID=member))

    def addressesChanged(self, client) -> None:
        """Tell the homes of C{client}'s remote peers its new addresses."""
        for key, sides in list(self._pairs.items()):
            peerHome = sides.get(client.hostID)
            if peerHome is not None:
                self._sendAddresses(client, self._other(key, client.hostID), peerHome)

    def _sendAddresses(self, client, peer: int, peerHome: str, reply: bool = False) -> None:
        fields = dict(to=peer, peer=client.hostID, udp=_wireAddress(client.udpAddress),
                      lan=_wireAddress(client.lanAddress), reply=reply)
        if peerHome == self.cluster.serverID:
            self._addresses(fields)
        else:
            self._control(peerHome, dict(op="addresses", **fields))

    def serverLeft(self, serverID: str) -> None:
        """C{serverID} left the cluster: its clients leave our groups, our
        clients' pairs with them end, its groups' acknowledgements are void."""
        effects = []
        for hostID in [h for h, home in self.homes.items() if home == serverID]:
            effects += self.drop(hostID)
        self.engine._apply(effects)
        for key, sides in list(self._pairs.items()):
            for me in [m for m, home in sides.items() if home == serverID]:
                self._forget(me, self._other(key, me))
        for ackID in [a for a, p in self._acks.items() if p[0] == serverID]:
            del self._acks[ackID]
        # Its groups are gone: their members here are told they left them.
        for hostID, groups in list(self._groups.items()):
            client = self.engine._clients.get(hostID)
            for group in [g for g, owner in groups.items() if owner == serverID]:
                del groups[group]
                if client is not None:
                    client.sendMessage("MEMBER_LEAVE", groupID=group, memberID=hostID,
                                       memberCount=0)

    # Control messages

    def _control(self, serverID: str, op: dict) -> None:
        self.cluster.control(serverID, encodeControl(op))

    def controlReceived(self, serverID: str, data: bytes) -> None:
        """A control message from member C{serverID}; L{ProtocolError} if it
        is not one."""
        op = decodeControl(data)
        kind = op["op"]
        engine = self.engine
        if kind in engine.mover.opsHandled:
            engine.mover.controlReceived(serverID, op)
            return
        if kind == "path":
            member = _int(op, "member")
            if member not in self.homes:
                raise ProtocolError(f"a path report of {member}, no member of another "
                                    "server's")
            engine.recordPath(member, _int(op, "peer"), op.get("direct") is True)
            return
        if kind in ("ack", "gone"):
            # From the member's home, or from the server a client moved to
            # since it joined (which answers the owner directly).
            member = _int(op, "member")
            if member not in self.homes:
                if kind == "gone":
                    return                          # dropped already
                raise ProtocolError(f"ack for {member}, no member of another server's")
            if kind == "ack":
                engine._apply(engine._table.acknowledge(member, _int(op, "ack")))
            else:
                engine._apply(self.drop(member))
            return
        to = _int(op, "to")
        origin = self._origin(serverID, op)
        client = engine._clients.get(to)
        if client is None:
            movedTo = self._movedFromHere(to, serverID)
            if movedTo is not None:
                self._control(movedTo, {**op, "owner": origin})
            return                                  # else it left: nothing to tell
        if engine.mover.isLeaving(to):
            # Being moved away, it left every group: an owner adding it
            # drops it again; the rest is news of groups it left.
            if kind == "join" and _int(op, "member") == to:
                self._control(origin, dict(op="gone", member=to))
            return
        if kind == "join":
            ackID = _int(op, "ack")
            if ackID:
                self._lastAck = (self._lastAck + 1 if self._lastAck < 0xFFFFFFFF
                                 else FIRST_REMOTE_ACK_ID)
                self._acks[self._lastAck] = (origin, ackID, to)
                ackID = self._lastAck
            group, member = _int(op, "group"), _int(op, "member")
            if member == to:
                self._groups.setdefault(to, {})[group] = origin
            client.sendMessage(
                "MEMBER_JOIN", groupID=group, memberID=member,
                memberCount=_int(op, "count"), ackID=ackID,
                udpAddress=addressToWire(_address(op, "udp")),
                lanAddress=addressToWire(_address(op, "lan")),
                message=_hex(op, "message", engine.maxMessageLength))
        elif kind == "leave":
            group, member = _int(op, "group"), _int(op, "member")
            if member == to:
                self._groups.get(to, {}).pop(group, None)
            client.sendMessage("MEMBER_LEAVE", groupID=group, memberID=member,
                               memberCount=_int(op, "count"))
        elif kind == "pair":
            peer, peerHome = _int(op, "peer"), op.get("peerHome")
            if not isinstance(peerHome, str):
                raise ProtocolError("pair without the peer's home")
            client.sendMessage("PEER_PAIR", peerID=peer, epoch=_int(op, "epoch"),
                               pairSecret=_hex(op, "secret", 64), policy=_int(op, "policy"))
            self.pairedLocally(to, peer, peerHome)
            self._introducers.setdefault(_pairKey(to, peer), set()).add(origin)
        elif kind == "forget":
            self._forget(to, _int(op, "peer"))
        elif kind == "addresses":
            self._addresses(op)
        elif kind == "presence":
            self._presence(op)
        else:
            raise ProtocolError(f"unknown control op {kind!r}")

    def _movedFromHere(self, hostID: int, serverID: str) -> str | None:
        """Where a client moved away from here lives now, if what
        C{serverID} sent for it is to be passed on there: its home for the
        servers that found it by its HostID's block (this server)."""
        movedTo = self.cluster.movedTo.get(hostID)
        return None if movedTo == serverID else movedTo

    def _origin(self, serverID: str, op: dict) -> str:
        """The server C{op} comes from: C{serverID}, or the C{owner} it names
        when C{serverID} passed it on (for a client that moved away)."""
        origin = op.get("owner", serverID)
        if origin != serverID and (not isinstance(origin, str)
                                   or self.cluster.member(origin) is None):
            raise ProtocolError("control field 'owner' is not a live member")
        return origin

    def _addresses(self, op: dict) -> None:
        """A peer's addresses for local client C{to}, if they are a pair (and
        C{to}'s in return, if asked)."""
        client = self.engine._clients.get(_int(op, "to"))
        peer = _int(op, "peer")
        peerHome = None if client is None else self.peerHome(client.hostID, peer)
        if peerHome is None:
            return                  # not (or no longer) a pair: the other side asks again
        client.sendMessage("PEER_ADDRESSES", peerID=peer,
                           udpAddress=addressToWire(_address(op, "udp")),
                           lanAddress=addressToWire(_address(op, "lan")))
        if op.get("reply") is True:
            self._sendAddresses(client, peer, peerHome)


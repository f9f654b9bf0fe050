"""The built-in example app that C{twistd -n proudserver} runs: chat rooms.

A client asks the server for a room with a reliable user message to
L{HOSTID_SERVER}; the server puts it in that room's P2P group, and the
members then message each other through the group.

The requests are UTF-8 text:

    - C{join:<room name>}: enter the room (leaving the current one first).
      The first client in a room creates its group; later ones join it.
    - C{leave}: leave the current room. The group is destroyed when the
      last member leaves or disconnects.

The server answers a bad request with C{error:<explanation>}. Every join
notice a client gets for a room carries the room's name as its message, so a
client learns which group is which room from
L{INetClientEvent.onP2PMemberJoin}.
"""

from __future__ import annotations

import uuid

from twisted.internet import defer
from twisted.logger import Logger

from proud_twisted.constants import HOSTID_SERVER
from proud_twisted.errors import NotConnected, ProtocolError
from proud_twisted.events import NetClientEvents, NetServerEvents

ROOMS_PROTOCOL_VERSION = uuid.UUID("5c3a9e6e-2f41-4b8a-9d07-6f1e0b7a4c21")
"""The protocol version of the rooms app: the default of C{twistd proudserver}."""

JOIN_PREFIX = b"join:"
LEAVE = b"leave"
ERROR_PREFIX = b"error:"
MAX_ROOM_NAME_BYTES = 64


def joinRequest(room: str) -> bytes:
    """The request payload that asks the server for C{room}."""
    payload = JOIN_PREFIX + room.encode("utf-8")
    parseRequest(payload)
    return payload


def parseRequest(payload: bytes):
    """Decode a request: C{("join", roomName)} or C{("leave", None)}.

    @raise ProtocolError: C{payload} is not a request of the rooms app.
    """
    if payload == LEAVE:
        return ("leave", None)
    if not payload.startswith(JOIN_PREFIX):
        raise ProtocolError(f"unknown request {payload[:32]!r}")
    raw = payload[len(JOIN_PREFIX):]
    if not 0 < len(raw) <= MAX_ROOM_NAME_BYTES:
        raise ProtocolError(f"a room name is 1 to {MAX_ROOM_NAME_BYTES} bytes of UTF-8")
    try:
        room = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("a room name must be UTF-8") from None
    if not room.isprintable():
        raise ProtocolError("a room name must be printable")
    return ("join", room)


class RoomServerEvents(NetServerEvents):
    """Server side of the rooms app: one P2P group per occupied room.

    C{twistd proudserver} calls L{attachServer} with its L{NetServer} before
    the server starts; code that builds its own server does the same.
    """

    log = Logger()

    def __init__(self) -> None:
        self.server = None
        self._groups = {}       # room name -> group HostID
        self._rooms = {}        # group HostID -> room name
        self._roomOf = {}       # client HostID -> room name

    def attachServer(self, server) -> None:
        """Use C{server} (a L{NetServer}) for the group operations."""
        self.server = server

    # Queries

    def roomOf(self, client: int):
        """The name of the room C{client} is in, or C{None}."""
        return self._roomOf.get(client)

    def groupOf(self, room: str):
        """The P2P group HostID of C{room}, or C{None} if nobody is in it."""
        return self._groups.get(room)

    def rooms(self) -> dict:
        """Every occupied room: name -> group HostID."""
        return dict(self._groups)

    # Requests

    def enterRoom(self, client: int, room: str) -> int:
        """Put C{client} in C{room} (leaving its current room); return the group."""
        if self._roomOf.get(client) == room:
            return self._groups[room]
        self.leaveRoom(client)
        group = self._groups.get(room)
        message = room.encode("utf-8")
        if group is None:
            group = self.server.createP2PGroup([client], message)
            self._groups[room] = group
            self._rooms[group] = room
        else:
            self.server.joinP2PGroup(client, group, message)
        self._roomOf[client] = room
        self.log.info("client {client} entered room {room!r} (group {group})",
                      client=client, room=room, group=group)
        return group

    def leaveRoom(self, client: int) -> None:
        """Take C{client} out of its room, if any; destroy the room if now empty."""
        room = self._roomOf.pop(client, None)
        if room is None:
            return
        group = self._groups[room]
        if client in self.server.getP2PGroupInfo(group).members:
            self.server.leaveP2PGroup(client, group)
        self.log.info("client {client} left room {room!r}", client=client, room=room)
        if not self.server.getP2PGroupInfo(group).members:
            self.server.destroyP2PGroup(group)

    # Events

    def onReceiveUserMessage(self, sender, payload, context):
        try:
            kind, room = parseRequest(payload)
        except ProtocolError as e:
            self.server.send(sender, ERROR_PREFIX + str(e).encode("utf-8"))
            return
        if kind == "join":
            self.enterRoom(sender, room)
        else:
            self.leaveRoom(sender)

    def onClientLeave(self, clientInfo, reason, comment):
        # The server already took the client out of every group.
        self.leaveRoom(clientInfo.hostID)

    def onP2PGroupRemoved(self, groupHostID):
        room = self._rooms.pop(groupHostID, None)
        if room is None:
            return
        del self._groups[room]
        for client in [c for c, r in self._roomOf.items() if r == room]:
            del self._roomOf[client]
        self.log.info("room {room!r} closed (group {group})", room=room,
                      group=groupHostID)


class RoomClientEvents(NetClientEvents):
    """Client side of the rooms app: which room we are in, and who is there.

    Call L{attachClient} with the L{NetClient} these events belong to, then
    L{joinRoom} once connected. Override the C{onRoom...} hooks; a subclass
    that overrides a C{NetClientEvents} method must call this class's version.
    """

    def __init__(self) -> None:
        self.client = None
        self.room = None
        self.group = None
        self._roomNames = {}    # group HostID -> room name
        self._waiting = []      # (room name, Deferred)

    def attachClient(self, client) -> None:
        """Send requests through C{client} (a L{NetClient})."""
        self.client = client

    @property
    def members(self) -> frozenset:
        """The HostIDs in our room, ourselves included."""
        if self.group is None:
            return frozenset()
        return self.client.getGroupMembers(self.group)

    # Requests

    def joinRoom(self, room: str) -> defer.Deferred:
        """Ask for C{room}; the Deferred fires with its group HostID once we are in."""
        payload = joinRequest(room)
        d = self.whenInRoom(room)
        self.client.send(HOSTID_SERVER, payload)
        return d

    def leaveRoom(self) -> None:
        self.client.send(HOSTID_SERVER, LEAVE)

    def say(self, payload: bytes, reliable: bool = True) -> None:
        """Send C{payload} to every other member of our room."""
        if self.group is None:
            raise NotConnected("not in a room")
        self.client.send(self.group, payload, reliable)

    def whenInRoom(self, room: str) -> defer.Deferred:
        """A Deferred that fires with the group HostID once we are in C{room}."""
        if self.room == room:
            return defer.succeed(self.group)
        d = defer.Deferred(lambda d: self._waiting.remove((room, d)))
        self._waiting.append((room, d))
        return d

    # Hooks

    def onRoomMemberJoin(self, room: str, member: int) -> None:
        """C{member} is in C{room} with us (also called for ourselves)."""

    def onRoomMemberLeave(self, room: str, member: int) -> None:
        """C{member} left C{room} (also called for ourselves)."""

    def onRoomMessage(self, room: str, sender: int, payload: bytes) -> None:
        """A member of C{room} sent us C{payload}."""

    def onRoomError(self, explanation: str) -> None:
        """The server refused a request."""

    # NetClientEvents

    def onP2PMemberJoin(self, memberHostID, groupHostID, memberCount, message):
        # We hear only of groups we are in, and every join notice of a room
        # carries the room's name; our own notice comes after those of the
        # members who were there before us.
        room = self._roomNames[groupHostID] = message.decode("utf-8", "replace")
        self.room, self.group = room, groupHostID
        if memberHostID == self.client.getLocalHostID():
            ready = [w for w in self._waiting if w[0] == room]
            for waiter in ready:
                self._waiting.remove(waiter)
                waiter[1].callback(groupHostID)
        self.onRoomMemberJoin(room, memberHostID)

    def onP2PMemberLeave(self, memberHostID, groupHostID, memberCount):
        if memberHostID == self.client.getLocalHostID() and groupHostID == self.group:
            self.room = self.group = None
        self.onRoomMemberLeave(self._roomNames.get(groupHostID), memberHostID)

    def onReceiveUserMessage(self, sender, payload, context):
        if sender != HOSTID_SERVER:
            self.onRoomMessage(self.room, sender, payload)
        elif payload.startswith(ERROR_PREFIX):
            self.onRoomError(payload[len(ERROR_PREFIX):].decode("utf-8", "replace"))

    def onLeaveServer(self, reason):
        self.room = self.group = None
        self._roomNames.clear()

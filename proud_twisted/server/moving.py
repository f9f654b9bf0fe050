"""Moving a client to another server of the cluster (C{NetServer.moveClient}).

The source tells the target, through the cluster, that a client is coming
(its HostID, a one-time token, the game's ticket); once the target says it
expects the client (C{expecting}: it has read the notice, which Redis does
not order with the client's own arrival) the source sends the client
C{MOVE} (the target's address and the token) on its TCP stream, after
everything sent to it before. From that moment
every send to the client, from this server or routed through it, is
forwarded to the target, which keeps it until the client arrives and then
sends it on: reliable messages arrive once and in order, with no stream
state to hand over. The client closes its connection to the source, opens
one to the target and shows the token (C{MOVE_ARRIVE}); the target admits
it under its HostID, tells the game (C{onClientArrived}) and the source,
whose Deferred fires.

The source keeps the HostID reserved, and forwards what is routed to it,
until the client leaves the target (which says so: C{released}).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger

from proud_twisted.cluster.errors import UnknownServer
from proud_twisted.errors import MoveFailed, ProtocolError
from proud_twisted.rudp.config import DeliveryMode, Priority
from proud_twisted.server.moves import DEFAULT_MOVE_TIMEOUT, Arrival, Arrivals, newMoveToken
from proud_twisted.server.remote import _hex, _int, encodeControl

MOVE_OPS = frozenset({"move", "expecting", "arrived", "released"})
"""The control messages of moves (the others are groups')."""
SOURCE_GRACE = 1.0
"""Seconds the source waits beyond the token's life before it gives a move up,
so that it never frees a HostID the target may still admit."""


@dataclass
class _Leaving:
    """A client being moved away from here: to C{target}, C{done} fires
    once it arrived, C{timer} gives up, and C{token} goes to the client once
    the target expects it (then None: the client was told)."""

    target: str
    done: defer.Deferred
    timer: Any
    token: bytes | None


class Mover:
    """One server's moves, out (as the source) and in (as the target)."""

    log = Logger()
    opsHandled = MOVE_OPS

    def __init__(self, engine: Any, cluster: Any, timeout: float = DEFAULT_MOVE_TIMEOUT) -> None:
        self.engine = engine
        self.cluster = cluster
        self.timeout = timeout
        self.arrivals = Arrivals()
        self._leaving: dict[int, _Leaving] = {}
        self.movedIn: set[int] = set()            # clients that arrived here by a move

    def stop(self) -> None:
        """The server stops: moves under way fail, arrivals are forgotten."""
        for hostID in list(self._leaving):
            self._fail(hostID, MoveFailed("the server is stopping"))
        for arrival in self.arrivals.all():
            if arrival.timer is not None and arrival.timer.active():
                arrival.timer.cancel()

    # The source

    def moveClient(self, hostID: int, serverID: str, ticket: bytes) -> defer.Deferred:
        engine, cluster = self.engine, self.cluster
        if not isinstance(ticket, bytes) or len(ticket) > engine.maxMessageLength:
            return defer.fail(MoveFailed("the ticket must be bytes no longer than a message"))
        client = engine._clients.get(hostID)
        if client is None or client.offlineTimer is not None or client.closing:
            return defer.fail(MoveFailed(f"client {hostID} is not connected here"))
        if client.stream is None:
            return defer.fail(MoveFailed("moving a client needs connection recovery on"))
        if hostID in self._leaving:
            return defer.fail(MoveFailed(f"client {hostID} is moving already"))
        if serverID == cluster.serverID:
            return defer.fail(MoveFailed("the client is on this server already"))
        if not cluster.available:
            return defer.fail(MoveFailed("the cluster is unavailable"))
        target = cluster.member(serverID)
        if target is None:
            return defer.fail(UnknownServer(f"no live cluster member {serverID!r}"))
        token = newMoveToken()
        d: defer.Deferred = defer.Deferred()
        timer = engine.reactor.callLater(self.timeout + SOURCE_GRACE, self._timedOut, hostID)
        self._leaving[hostID] = _Leaving(serverID, d, timer, token)
        cluster.movedTo[hostID] = serverID        # sends from now on go there
        told = cluster.control(serverID, encodeControl(dict(
            op="move", hostID=hostID, token=token.hex(), ticket=ticket.hex(),
            timeoutMs=int(self.timeout * 1000))))
        told.addCallback(self._published, hostID, serverID)
        return d

    def _published(self, receivers, hostID: int, serverID: str) -> None:
        """Redis took the notice: if no server of that name listened, the
        move fails at once (else the target says when it expects the client)."""
        entry = self._leaving.get(hostID)
        if entry is not None and entry.target == serverID and not receivers:
            self._fail(hostID, MoveFailed(f"cluster member {serverID!r} did not "
                                          "hear of the move"))

    def _expecting(self, serverID: str, hostID: int) -> None:
        """The target has read the notice and will admit the client: only
        now is the client told to go (had it arrived before the target read
        the notice, which Redis does not order with the client, it would
        have been refused)."""
        entry = self._leaving.get(hostID)
        if entry is None or entry.target != serverID or entry.token is None:
            return                      # given up meanwhile, told already, or not ours
        token, entry.token = entry.token, None
        target = self.cluster.member(serverID)
        if target is None:
            self._fail(hostID, UnknownServer(f"cluster member {serverID!r} left"))
            return
        self._told(hostID, target, token)

    def _told(self, hostID: int, target, token: bytes) -> None:
        client = self.engine._clients.get(hostID)
        if client is None or client.closing or client.offlineTimer is not None:
            self._fail(hostID, MoveFailed(f"client {hostID} left before it could be moved"))
            return
        self.engine.leaveGroupsForMove(hostID)
        host, tcpPort = target.tcpAddress
        client.sendMessage("MOVE", host=host.encode(), tcpPort=tcpPort,
                           udpPort=target.udpAddress[1], token=token,
                           serverID=target.serverID.encode())

    def isLeaving(self, hostID: int) -> bool:
        """Whether C{hostID} is being moved away (its sends go to the target)."""
        return hostID in self._leaving

    def keepsHostID(self, hostID: int) -> bool:
        """Whether the HostID of a client leaving here stays reserved (it is
        moving, or moved, elsewhere)."""
        return hostID in self._leaving or hostID in self.cluster.movedTo

    def _arrived(self, serverID: str, hostID: int) -> None:
        entry = self._leaving.get(hostID)
        if entry is None or entry.target != serverID:
            raise ProtocolError(f"arrived for {hostID}, not moving there")
        del self._leaving[hostID]
        entry.timer.cancel()
        self.engine.stats.clientsMovedOut += 1
        client = self.engine._clients.get(hostID)
        if client is not None:              # the client has not closed it yet
            client.close(client.leaveReason)
        self.cluster.noteMoved(hostID, serverID)
        self.log.info("client {hostID} moved to {serverID}", proud_event="client_moved",
                      hostID=hostID, serverID=serverID)
        entry.done.callback(self.cluster.member(serverID))

    def _timedOut(self, hostID: int) -> None:
        self._fail(hostID, MoveFailed(f"client {hostID} did not arrive at its target "
                                      f"within {self.timeout} s"))

    def _fail(self, hostID: int, error: Exception) -> None:
        entry = self._leaving.pop(hostID)
        if entry.timer.active():
            entry.timer.cancel()
        self.cluster.movedTo.pop(hostID, None)
        self.engine.stats.movesFailed += 1
        client = self.engine._clients.get(hostID)
        if client is not None:
            self.engine.closeConnection(hostID)
        else:
            self.engine.releaseHostID(hostID)
        entry.done.errback(error)

    def _released(self, hostID: int) -> None:
        """The moved client left wherever it went: its HostID is free."""
        if self.cluster.movedTo.pop(hostID, None) is not None and hostID not in self._leaving:
            self.cluster.forgetMoved(hostID)
            if hostID not in self.engine._clients:
                self.engine.releaseHostID(hostID)

    # The target

    def _expect(self, serverID: str, op: dict) -> None:
        hostID = _int(op, "hostID")
        token = _hex(op, "token", 16)
        if len(token) != 16:
            raise ProtocolError("a move token is 16 bytes")
        timeout = min(_int(op, "timeoutMs") / 1000.0, 600.0)
        arrival = Arrival(serverID, token, _hex(op, "ticket", self.engine.maxMessageLength),
                          self.engine.reactor.seconds() + timeout)
        self.arrivals.expect(hostID, arrival)
        arrival.timer = self.engine.reactor.callLater(timeout, self.arrivals.drop, hostID,
                                                      arrival)
        self.cluster.control(serverID, encodeControl(dict(op="expecting", hostID=hostID)))

    def hold(self, hostID: int, payload: bytes, mode: DeliveryMode, priority: Priority,
             channel: int) -> None:
        """Keep a send for a client on its way here."""
        if not self.arrivals.hold(hostID, (payload, mode, priority, channel), len(payload)):
            self.engine.stats.movesRefused += 1
            self.engine.onceLog.warn(("move-held", hostID), "gave up the move of client "
                                     "{hostID}: too much was sent to it on its way",
                                     hostID=hostID)

    def admit(self, hostID: int, token: bytes) -> Arrival:
        """The arrival C{token} proves for C{hostID}, or L{ResumeRefused}."""
        return self.arrivals.admit(hostID, token, self.engine.reactor.seconds())

    def welcomed(self, hostID: int, arrival: Arrival) -> None:
        """Client C{hostID} was admitted here: what waited for it goes out,
        and its source hears of it."""
        if arrival.timer is not None and arrival.timer.active():
            arrival.timer.cancel()
        self.movedIn.add(hostID)
        self.cluster.movedTo.pop(hostID, None)        # (it had moved away from here)
        for payload, mode, priority, channel in arrival.held:
            self.engine.send([hostID], payload, mode, priority, channel)
        self.cluster.control(arrival.source, encodeControl(dict(op="arrived", hostID=hostID)))

    def leftHere(self, hostID: int) -> None:
        """A client that arrived here by a move left: the HostID's owner frees it."""
        if hostID not in self.movedIn:
            return
        self.movedIn.discard(hostID)
        if self.keepsHostID(hostID):
            return                      # it moves on: it lives elsewhere
        owner = self.cluster.blockOwner(hostID)
        if owner == self.cluster.serverID:
            self.cluster.forgetMoved(hostID)        # (back home: freed already)
        elif owner is not None:
            self.cluster.control(owner, encodeControl(dict(op="released", hostID=hostID)))

    # Control messages

    def controlReceived(self, serverID: str, op: dict) -> None:
        kind = op["op"]
        if kind == "move":
            self._expect(serverID, op)
        elif kind == "expecting":
            self._expecting(serverID, _int(op, "hostID"))
        elif kind == "arrived":
            self._arrived(serverID, _int(op, "hostID"))
        else:
            self._released(_int(op, "hostID"))

"""L{Cluster}: one server process's membership in a cluster coordinated by Redis.

Hand one to C{NetServer(cluster=...)}; the server starts and stops it. What
lives in Redis is named in L{proud_twisted.cluster.keys}; what servers say
to each other is an L{envelope}. Messages between servers go over Redis
pub/sub, not streams: a server's messages travel on one connection and
Redis hands them to each subscriber in the order they were published, so
they arrive in order per sender, in one Redis round trip (about a fifth of
a millisecond on a LAN), with nothing to trim afterwards. What pub/sub does
not do is keep a message for a server that is not listening: a message
sent while the receiver is cut off from Redis is lost (the docs list what
each failure loses).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from twisted.internet import defer, task
from twisted.logger import Logger
from zope.interface import implementer

from proud_twisted._glue.callbacks import EventDispatcher
from proud_twisted._glue.oncelog import OnceLog
from proud_twisted.cluster import envelope as e
from proud_twisted.cluster.direct import (
    FRAME,
    PROBE,
    DirectPaths,
    UnknownSender,
    decodeFrames,
    encodeEntry,
)
from proud_twisted.cluster.errors import ClusterUnavailable, UnknownServer
from proud_twisted.cluster.events import ClusterEvents
from proud_twisted.cluster.interfaces import ICluster, IClusterEvent
from proud_twisted.cluster.keys import DEFAULT_PREFIX, ClusterKeys, checkServerID
from proud_twisted.cluster.leases import DEFAULT_BLOCK_SIZE, LeasedBlocks, blockOf
from proud_twisted.cluster.link import DEFAULT_COMMAND_TIMEOUT, RedisLink
from proud_twisted.cluster.redisurl import parseRedisURL
from proud_twisted.cluster.serverinfo import ServerInfo
from proud_twisted.cluster.stats import ClusterStats
from proud_twisted.errors import MessageTooLong, ProtocolError, SendQueueFull, UnknownHostID
from proud_twisted.rudp.config import DeliveryMode, Priority
from proud_twisted.wire.relay import FLAG_RELIABLE

DEFAULT_TTL = 10.0
"""Seconds a member's entry lives without a heartbeat: a killed process
leaves the others' lists within this and one heartbeat more."""
HEARTBEATS_PER_TTL = 5
"""Heartbeats (each renews the entry and reads the others') per TTL: four
can be missed, or late by a Redis hiccup, before the entry expires."""
DEFAULT_MAX_PENDING_BYTES = 8 * 1024 * 1024
"""Bytes of messages to other servers put to Redis and not yet acknowledged:
some 128 of the largest messages (64 KiB by default); past it sends fail
(L{SendQueueFull}) or, unreliable ones, are dropped: a client that makes the
game send to other servers cannot make this process queue without bound.
On a LAN Redis acknowledges in a fraction of a millisecond, so only a Redis
that stalls fills it."""
DIRECT_DEAD_HEARTBEATS = 2.5
"""Heartbeats (each probes every direct path) a path may go unanswered
before relayed frames go through Redis again: two probes lost in a row are
tolerated, a dead path costs at most this long (5 s by default) of frames
that the pairs' sessions send again."""
MAX_UNKNOWN_CLAIMS = 64
"""Source addresses of datagrams naming an unknown server kept until the
next heartbeat tells whether that server joined meanwhile (then they are
forgotten) or not (then each address is warned of once); more are only
counted."""

_LEASE_SCRIPT = """
for i = 1, 16 do
  local block = redis.call('INCR', KEYS[1]) - 1
  if redis.call('HSETNX', KEYS[2], block, ARGV[1]) == 1 then return block end
end
return -1
"""
"""Lease the next free block: the counter hands each block out once, and
HSETNX skips any block a server re-claimed after a Redis restart."""

_RECLAIM_SCRIPT = """
local top = tonumber(redis.call('GET', KEYS[1]) or '0')
local lost = {}
for i = 2, #ARGV do
  local block = tonumber(ARGV[i])
  redis.call('HSETNX', KEYS[2], block, ARGV[1])
  if redis.call('HGET', KEYS[2], block) ~= ARGV[1] then table.insert(lost, block) end
  if block + 1 > top then top = block + 1 end
end
redis.call('SET', KEYS[1], top)
return lost
"""
"""After Redis comes back (empty, if it restarted without persistence):
claim again the blocks this server leased and keep the counter above them."""


@implementer(ICluster)
class Cluster:
    """Membership of one server process in a Redis-coordinated cluster.

    @param url: C{redis://[:PASSWORD@]HOST[:PORT][/DB]}.
    @param serverID: this server's unique name (1 to 64 letters, digits,
        C{.}, C{_}, C{-}).
    @param advertise: the host clients and other servers reach this one at
        (default: the address the server is bound to).
    @param tag: free-form (zone, region, role), shown in L{ServerInfo}.
    @param events: an L{IClusterEvent} provider (default: the server's events
        if they provide it, else none).
    @param reactor: default: the server's.
    @param ttl: seconds a member's entry lives without a heartbeat.
    @param heartbeat: seconds between heartbeats (default C{ttl / 5}).
    @param prefix: the start of every Redis key and channel name.
    @param blockSize: HostIDs per leased block.
    @param commandTimeout: seconds Redis has to answer a command.
    @param maxPendingBytes: bytes of messages sent to Redis and not yet
        acknowledged; past it sends fail with L{SendQueueFull}.
    @param directRelay: relay the frames of P2P pairs' sessions straight to
        the other server over UDP once it answers there (L{DirectPaths});
        if false, or until then, they go through Redis.
    """

    log = Logger()

    def __init__(self, url: str, serverID: str, *, advertise: str | None = None,
                 tag: str = "", events: IClusterEvent | ClusterEvents | None = None,
                 reactor: Any = None, ttl: float = DEFAULT_TTL,
                 heartbeat: float | None = None, prefix: str = DEFAULT_PREFIX,
                 blockSize: int = DEFAULT_BLOCK_SIZE,
                 commandTimeout: float = DEFAULT_COMMAND_TIMEOUT,
                 maxPendingBytes: int = DEFAULT_MAX_PENDING_BYTES,
                 directRelay: bool = True) -> None:
        self.address = parseRedisURL(url)
        self.serverID = checkServerID(serverID)
        self.advertise = advertise
        self.tag = tag
        self.ttl = ttl
        self.heartbeat = ttl / HEARTBEATS_PER_TTL if heartbeat is None else heartbeat
        if not 0 < self.heartbeat < ttl:
            raise ValueError(f"the heartbeat ({self.heartbeat} s) must be shorter than "
                             f"the TTL ({ttl} s)")
        self.keys = ClusterKeys(prefix, self.address.db)
        self.leases = LeasedBlocks(blockSize, onLow=self._leaseIfLow)
        self.commandTimeout = commandTimeout
        self.maxPendingBytes = maxPendingBytes
        self.stats = ClusterStats()
        self.incarnation = os.urandom(8).hex()
        self.direct = (DirectPaths(self.serverID, self.incarnation,
                                   DIRECT_DEAD_HEARTBEATS * self.heartbeat)
                       if directRelay else None)
        self._events = events
        self.reactor: Any = reactor
        self.dispatch: Any = None
        self.onceLog = OnceLog(self.log)
        self._engine: Any = None
        self._link: Any = None
        self._beat: task.LoopingCall | None = None
        self._registered = False
        self._servers: dict[str, ServerInfo] = {}
        self._owners: dict[int, str] = {}         # HostID block -> server ID
        # Clients moved away from here (or moving): HostID -> the server they went to.
        self.movedTo: dict[int, str] = {}
        self._unknownClaims: dict[Any, UnknownSender] = {}     # address -> the claim
        self._waiting: list[defer.Deferred] = []
        self._leasing = self._registering = False
        self._polling = self._pollAgain = False
        self._cpuMark: tuple[float, float] | None = None
        self._cpuShare = 0.0

    # Wiring (NetServer calls these)

    def attach(self, engine: Any) -> None:
        """Serve C{engine} (a server's engine): called by C{NetServer}."""
        if self._engine is not None:
            raise RuntimeError("this Cluster already serves a NetServer")
        self._engine = engine
        if self.reactor is None:
            self.reactor = engine.reactor
        if self._events is None:
            self._events = (engine.events if IClusterEvent.providedBy(engine.events)
                            else ClusterEvents())
        self.dispatch = EventDispatcher(self._events, self.log)

    def start(self) -> None:
        """Connect to Redis and register (again after each loss of Redis)."""
        self._link = RedisLink(
            self.address, self.reactor,
            [self.keys.inbox(self.serverID), self.keys.broadcast, self.keys.announce],
            self._received, self._linkUp, self._linkDown, self.commandTimeout,
            onPublishFailed=self._publishFailed)
        self._link.start()
        self._beat = task.LoopingCall(self._heartbeat)
        self._beat.clock = self.reactor
        self._beat.start(self.heartbeat, now=False)

    def stop(self) -> defer.Deferred[None]:
        """Leave the cluster (the entry is deleted and a leave announced, if
        Redis answers) and close the connections."""
        if self._beat is not None and self._beat.running:
            self._beat.stop()
        link, self._link = self._link, None
        if link is None:
            return defer.succeed(None)
        self._registered = False
        if not link.up:
            return link.stop().addCallback(lambda _: None)
        d = defer.gatherResults([
            link.command("DEL", self.keys.server(self.serverID)),
            link.command("SREM", self.keys.servers, self.serverID),
            link.command("PUBLISH", self.keys.announce, e.encodeLeave(self.serverID))],
            consumeErrors=True)
        d.addErrback(lambda f: None)        # leaving anyway: the entry expires
        return d.addCallback(lambda _: link.stop()).addCallback(lambda _: None)

    # ICluster

    @property
    def available(self) -> bool:
        return self._registered and self._link is not None and self._link.up

    def whenReady(self) -> defer.Deferred[ServerInfo]:
        if self.available and self.leases.left():
            return defer.succeed(self.info())
        d: defer.Deferred[ServerInfo] = defer.Deferred()
        self._waiting.append(d)
        return d

    def getServers(self) -> list[ServerInfo]:
        self._checkAvailable()
        servers = dict(self._servers)
        servers[self.serverID] = self.info()
        return [servers[k] for k in sorted(servers)]

    def locate(self, hostID: int) -> defer.Deferred[ServerInfo | None]:
        if not self.available:
            return defer.fail(self._unavailable())
        if self._engine.holds(hostID):
            return defer.succeed(self.info())
        if hostID in self.movedTo:
            return defer.succeed(self._member(self.movedTo[hostID]))
        return self._link.command("HGET", self.keys.moved, hostID).addCallback(
            self._locateMoved, hostID)

    def _locateMoved(self, movedTo, hostID: int):
        if movedTo is not None:
            return self._member(movedTo.decode())
        block = blockOf(hostID, self.leases.size)
        if block is None:
            return defer.succeed(None)
        owner = self._owners.get(block)
        if owner is not None:
            return defer.succeed(self._member(owner))
        d = self._link.command("HGET", self.keys.leases, block)

        def found(value):
            if value is None:
                return None
            owner = value.decode()
            self._owners[block] = owner
            return self._member(owner)
        return d.addCallback(found)

    def send(self, serverID: str, payload: bytes) -> defer.Deferred[None]:
        self._checkPayload(payload)
        if not self.available:
            return defer.fail(self._unavailable())
        if serverID not in self._servers:
            return defer.fail(UnknownServer(f"no live cluster member {serverID!r}"))
        d = self._link.publish(self.keys.inbox(serverID),
                               e.encodeMessage(self.serverID, "", payload))
        self.stats.messagesSent += 1

        def delivered(receivers):
            if not receivers:
                raise UnknownServer(f"cluster member {serverID!r} is not listening")
        return d.addCallback(delivered)

    def publish(self, channel: str, payload: bytes) -> defer.Deferred[int]:
        self._checkPayload(payload)
        if not self.available:
            return defer.fail(self._unavailable())
        data = e.encodeMessage(self.serverID, channel, payload)
        self.stats.messagesSent += 1
        # Minus this server, which hears its own publications and skips them.
        return self._link.publish(self.keys.broadcast, data).addCallback(
            lambda receivers: max(0, receivers - 1))

    # The server's sends to other servers' clients

    def route(self, hostIDs: Iterable[int], payload: bytes, mode: DeliveryMode,
              priority: Priority, channel: int) -> None:
        """Send C{payload} to clients or groups of other servers (the
        server's C{send} to HostIDs it does not hold), with C{send}'s options."""
        reliable = mode is DeliveryMode.RELIABLE
        byOwner: dict[str, list[int]] = {}
        for hostID in hostIDs:
            owner = self.movedTo.get(hostID) or self.blockOwner(hostID)
            if owner is None or owner == self.serverID or owner not in self._servers:
                raise UnknownHostID(f"no client or P2P group with HostID {hostID} "
                                    "here or on another live server")
            byOwner.setdefault(owner, []).append(hostID)
        if not self.available:
            raise self._unavailable()
        for owner, targets in byOwner.items():
            data = e.encodeRoute(self.serverID, targets, payload, mode, priority, channel)
            if self._full(data):
                if not reliable:
                    self.stats.routedDropped += 1
                    continue
                raise SendQueueFull(f"{self._link.pendingBytes} bytes are waiting for "
                                    f"Redis (at most {self.maxPendingBytes})")
            self.stats.routedOut += 1
            self._link.publishQuietly(self.keys.inbox(owner), data)

    # P2P groups across servers (proud_twisted.server.remote)

    def homeOf(self, hostID: int) -> str | None:
        """The live member, other than this one, that C{hostID} lives on as
        far as this server knows: the one it moved it to, else the one whose
        block holds it (which passes on what is not for it any more)."""
        owner = self.movedTo.get(hostID) or self.blockOwner(hostID)
        return owner if owner in self._servers else None

    def control(self, serverID: str, body: bytes) -> defer.Deferred:
        """Send a control message (groups', moves') to C{serverID}; the
        Deferred fires with how many received it (0 or None: lost, as when
        Redis is away: the groups of each server go on, their remote members
        fall out of step, as the docs say)."""
        if not self.available:
            return defer.succeed(0)
        return self._link.publish(self.keys.inbox(serverID),
                                  e.encodeControl(self.serverID, body)
                                  ).addErrback(self._routeFailed, serverID)

    # Moved clients (proud_twisted.server.moving)

    def member(self, serverID: str) -> ServerInfo | None:
        """The live member C{serverID}, other than this one."""
        return self._servers.get(serverID)

    def blockOwner(self, hostID: int) -> str | None:
        """The server whose leased block holds C{hostID}, if known."""
        block = blockOf(hostID, self.leases.size)
        return self._owners.get(block) if block is not None else None

    def noteMoved(self, hostID: int, serverID: str) -> None:
        """Client C{hostID} of this server now lives on C{serverID}: tell
        L{locate} everywhere (the hash lives as the lease it overrides does)."""
        if self.available:
            self._link.command("HSET", self.keys.moved, hostID, serverID).addErrback(
                self._routeFailed, serverID)

    def forgetMoved(self, hostID: int) -> None:
        if self.available:
            self._link.command("HDEL", self.keys.moved, hostID).addErrback(
                self._routeFailed, self.serverID)

    def frames(self, serverID: str, sender: int, flags: int,
               frames: list[tuple[int, bytes]]) -> None:
        """Relay frames of client C{sender} (C{(target, payload)}) to its
        peers on C{serverID}. Those the pairs' sessions send again if lost
        go straight over UDP while the path is up, together in as few
        datagrams as they fit; the rest go through Redis (dropped, and
        counted, if Redis is away or too much waits for it)."""
        direct = self.direct
        viaRedis = frames
        if (direct is not None and not flags & FLAG_RELIABLE
                and direct.isUp(serverID, self.reactor.seconds())):
            viaRedis, entries = [], []
            for target, payload in frames:
                if direct.fits(payload):
                    entries.append(encodeEntry(sender, target, flags, payload))
                else:
                    viaRedis.append((target, payload))
            datagrams = direct.frames(serverID, entries) or []
            self.stats.framesOut += len(entries)
            self.stats.framesDirect += len(entries)
            self.stats.directDatagrams += len(datagrams)
            for datagram, address in datagrams:
                self._engine.sendUdp(datagram, address)
        for target, payload in viaRedis:
            data = e.encodeFrame(self.serverID, sender, target, flags, payload)
            if not self.available or self._full(data):
                self.stats.framesDropped += 1
                continue
            self.stats.framesOut += 1
            self._link.publishQuietly(self.keys.inbox(serverID), data)

    def datagramReceived(self, data: bytes, addr: tuple[str, int]) -> None:
        """A datagram from another server's UDP port (L{DirectPaths})."""
        if self.direct is None:
            self.stats.directRejected += 1
            self._directRejected(addr, "direct paths are off here")
            return
        try:
            sender, kind, body = self.direct.open(data, self.reactor.seconds())
            if kind == FRAME:
                for frame in decodeFrames(body):
                    self._frameIn(sender, *frame)
            elif kind == PROBE:
                self._sendDirect(self.direct.answer(sender))
                if not self.direct.isUp(sender, self.reactor.seconds()):
                    self._probe((sender,))      # it knows this server: ask in return
        except UnknownSender as claim:
            # A forgery, or a member this server has not heard of yet: the
            # next heartbeat's read of the members tells.
            self.stats.directUnknown += 1
            if len(self._unknownClaims) < MAX_UNKNOWN_CLAIMS:
                self._unknownClaims.setdefault(addr, claim)
        except ProtocolError as error:
            self.stats.directRejected += 1
            self._directRejected(addr, error)

    def _probe(self, serverIDs: Iterable[str]) -> None:
        if self.direct is not None:
            for serverID in serverIDs:
                self._sendDirect(self.direct.probe(serverID))

    def _sendDirect(self, sealed) -> None:
        if sealed is not None:
            self._engine.sendUdp(*sealed)

    def _directRejected(self, addr, error) -> None:
        self.onceLog.warn(("direct", addr), "rejected a datagram from {address} that "
                          "claimed to come from a cluster server: {error} (later ones "
                          "are only counted in stats.directRejected and directUnknown)",
                          address=addr,
                          error=error)

    def gauges(self) -> dict[str, int]:
        """What this member knows now, for metrics read at scrape time."""
        return {"available": int(self.available), "members": len(self._servers),
                "directPaths": sum(1 for s in self._servers if self.isDirect(s)),
                "pendingBytes": self._link.pendingBytes if self._link is not None else 0}

    def isDirect(self, serverID: str) -> bool:
        """Whether frames relayed to C{serverID} go straight over UDP now."""
        return self.direct is not None and self.direct.isUp(serverID, self.reactor.seconds())

    def _lost(self, failure, what: str) -> None:
        """A command nobody waits for failed (Redis went away: the link
        says so, and registering again redoes it)."""
        self.onceLog.warn(("lost", what, failure.type), "{what} failed: {why}", what=what,
                          why=failure.getErrorMessage())

    def _routeFailed(self, failure, owner: str) -> None:
        self.onceLog.warn(("route", owner, failure.type), "sending to clients of "
                          "{owner} failed: {why}", owner=owner,
                          why=failure.getErrorMessage())

    # Membership

    def info(self) -> ServerInfo:
        """This server's L{ServerInfo} now."""
        engine = self._engine
        tcpHost, tcpPort = engine.getTcpAddress()
        udpHost, udpPort = engine.getUdpAddress()
        clients, groups = engine.load()
        return ServerInfo(self.serverID, (self.advertise or tcpHost, tcpPort),
                          (self.advertise or udpHost, udpPort), self.tag, clients, groups,
                          self._cpuShare, self.incarnation, engine.identity is not None,
                          self.direct.relayKey if self.direct is not None else "")

    def _measureCpu(self) -> None:
        """The share of a core this process used since the last heartbeat."""
        times = os.times()
        used, now = times.user + times.system, times.elapsed
        mark, self._cpuMark = self._cpuMark, (used, now)
        if mark is not None and now > mark[1]:
            self._cpuShare = round((used - mark[0]) / (now - mark[1]), 3)

    def _member(self, serverID: str) -> ServerInfo | None:
        if serverID == self.serverID:
            return self.info()
        return self._servers.get(serverID)

    def _linkUp(self) -> None:
        if not self._registering:
            self._registering = True
            self._register().addBoth(self._registrationDone)

    def _registrationDone(self, result) -> None:
        self._registering = False

    @defer.inlineCallbacks
    def _register(self):
        """Claim back the HostID blocks, lease one if needed, read the other
        members, then write this server's entry and announce it: a member
        that hears of it can message it at once."""
        link = self._link
        try:
            lost = yield link.command(
                "EVAL", _RECLAIM_SCRIPT, 2, self.keys.hostIDCounter, self.keys.leases,
                self.serverID, *self.leases.blocks)
            for block in lost or ():
                self.log.error("HostID block {block} of {me} was leased to another "
                               "server while Redis was away: HostIDs may be duplicated",
                               block=int(block), me=self.serverID)
            # Merged: what was learnt before stays unless Redis says otherwise.
            self._owners.update(_decodeOwners((yield link.command("HGETALL", self.keys.leases))))
            # HostIDs before the others hear of this server: it can admit clients then.
            yield self._leaseIfLow(link)
            yield self._poll()
            yield self._writeEntry()
            yield link.command("PUBLISH", self.keys.announce,
                               e.encodeJoin(self.serverID, self.info().toJSON()))
            for block in self.leases.blocks:        # for members that met Redis empty
                link.command("PUBLISH", self.keys.announce, e.encodeLease(
                    self.serverID, block)).addErrback(self._lost, "announcing a block")
        except Exception as error:
            if link is self._link:
                self.log.warn("registering with Redis failed ({error}); trying again at "
                              "the next heartbeat", error=error)
            return
        if link is not self._link or not link.up:
            return
        self._registered = True
        self.stats.registrations += 1
        self.log.info("{me} registered in the cluster at {redis}", me=self.serverID,
                      redis=f"{self.address.host}:{self.address.port}/{self.address.db}")
        self._fireReady()

    def _linkDown(self, why: str) -> None:
        self._registered = False
        if self._link is not None:              # not stopping
            self.stats.redisLost += 1
            self.log.warn("Redis at {redis} unreachable ({why}): cluster calls fail with "
                          "ClusterUnavailable, this server keeps serving its own clients "
                          "and registers again when Redis is back",
                          redis=f"{self.address.host}:{self.address.port}", why=why)

    def _writeEntry(self) -> defer.Deferred:
        link = self._link
        return defer.gatherResults([
            link.command("SET", self.keys.server(self.serverID), self.info().toJSON(),
                         "PX", int(self.ttl * 1000)),
            link.command("SADD", self.keys.servers, self.serverID)], consumeErrors=True)

    def _heartbeat(self) -> None:
        self._measureCpu()
        if self.direct is not None and self.stats.registrations:
            # Once it announced itself (the others know it); on while Redis is away.
            self._probe(self.direct.members())
        if self._link is None or not self._link.up:
            return
        if not self._registered:
            self._linkUp()          # the last attempt failed: again
            return
        d = self._writeEntry()
        d.addCallback(lambda _: self._poll())
        d.addCallback(lambda _: self._leaseIfLow())
        d.addErrback(lambda f: self.onceLog.warn(
            ("heartbeat", f.type), "cluster heartbeat failed: {why}",
            why=f.getErrorMessage()))

    @defer.inlineCallbacks
    def _poll(self):
        """Read every member's entry: who joined, who left (expired)."""
        if self._polling:
            self._pollAgain = True
            return
        self._polling = True
        try:
            while True:
                self._pollAgain = False
                ids = sorted(i.decode() for i in (yield self._link.command(
                    "SMEMBERS", self.keys.servers)) if i.decode() != self.serverID)
                values = (yield self._link.command(
                    "MGET", *[self.keys.server(i) for i in ids])) if ids else []
                found = {}
                for serverID, value in zip(ids, values, strict=True):
                    if value is None:
                        self._link.command("SREM", self.keys.servers, serverID).addErrback(
                            self._lost, "forgetting an expired member")
                        continue
                    info = self._parseInfo(value, serverID)
                    if info is not None:
                        found[serverID] = info
                self._update(found)
                if not self._pollAgain:
                    break
        finally:
            self._polling = False

    def _parseInfo(self, value: bytes, serverID: str) -> ServerInfo | None:
        try:
            info = ServerInfo.fromJSON(value)
        except ProtocolError as error:
            self._malformed(f"the entry of {serverID!r}", error)
            return None
        if info.serverID != serverID:
            self._malformed(f"the entry of {serverID!r}", "it names another server")
            return None
        return info

    def _update(self, found: dict) -> None:
        gone = [i for i in self._servers if i not in found]
        for serverID in gone:
            self._leave(serverID)
        for info in found.values():
            self._join(info)
        claims, self._unknownClaims = self._unknownClaims, {}
        for addr, claim in claims.items():
            if claim.serverID not in self._servers:
                self._directRejected(addr, claim)

    def _join(self, info: ServerInfo) -> None:
        if info.encryption != (self._engine.identity is not None):
            self._disagrees(info)
            return
        known = self._servers.get(info.serverID)
        if known is not None and known.incarnation != info.incarnation:
            self._leave(info.serverID)      # restarted before its entry expired
            known = None
        self._servers[info.serverID] = info
        if self.direct is not None and (known is None or (known.relayKey, known.udpAddress)
                                        != (info.relayKey, info.udpAddress)):
            self.direct.add(info.serverID, info.incarnation, info.relayKey, info.udpAddress)
        if known is None:
            self.log.info("cluster member {serverID} joined ({tag}, {address})",
                          serverID=info.serverID, tag=info.tag, address=info.tcpAddress)
            self.dispatch("onServerJoin", info)

    def _disagrees(self, info: ServerInfo) -> None:
        """C{info}'s server runs encryption the other way: its clients and
        ours could not open each other's frames, so it is kept out (as if
        it were not a member), loudly."""
        self._leave(info.serverID)          # (if it was one, started again)
        self.stats.mismatchedMembers += 1
        ours = "on" if info.encryption is False else "off"
        self.onceLog.warn(("encryption", info.serverID, info.incarnation),
                          "cluster member {serverID} runs with encryption {theirs}, this "
                          "server with it {ours}: kept out of this server's cluster (their "
                          "clients could not open each other's frames); run every server "
                          "of a cluster the same way", serverID=info.serverID, ours=ours,
                          theirs="on" if info.encryption else "off")

    def _leave(self, serverID: str) -> None:
        if self.direct is not None:
            self.direct.remove(serverID)
        if self._servers.pop(serverID, None) is not None:
            self.log.info("cluster member {serverID} left", serverID=serverID)
            self._engine.remote.serverLeft(serverID)
            self.dispatch("onServerLeave", serverID)

    def leaseNow(self) -> bool:
        """Every leased HostID is handed out: lease a block if none is on
        its way; whether one is (the server waits for it, else refuses)."""
        self._leaseIfLow()
        return self._leasing

    @defer.inlineCallbacks
    def _leaseIfLow(self, registering=None):
        """Lease a HostID block if few ids are left (while C{registering} on
        that link, before this server is available)."""
        link = registering or self._link
        if (self._leasing or not self.leases.wantsBlock()
                or not (registering or self.available)):
            return
        self._leasing = True
        try:
            block = yield link.command(
                "EVAL", _LEASE_SCRIPT, 2, self.keys.hostIDCounter, self.keys.leases,
                self.serverID)
            block = int(block)
            if block < 0:
                raise ClusterUnavailable("no free HostID block found in 16 tries")
            self.leases.add(block)
            self._owners[block] = self.serverID
            self.stats.blocksLeased += 1
            link.command("PUBLISH", self.keys.announce, e.encodeLease(
                self.serverID, block)).addErrback(self._lost, "announcing a block")
        except Exception as error:
            self.onceLog.warn(("lease", type(error)), "leasing a HostID block failed: "
                              "{error}", error=error)
            return
        finally:
            self._leasing = False
            self._engine.leaseSettled()
        self._fireReady()

    def _fireReady(self) -> None:
        if not (self.available and self.leases.left()):
            return
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(self.info())

    # Messages from Redis

    def _received(self, channelName: bytes, data: bytes) -> None:
        channel = channelName.decode()
        try:
            message = e.decode(data)
        except ProtocolError as error:
            self._malformed(f"channel {channel}", error)
            return
        if message.sender == self.serverID:
            return                                  # our own announcement or publication
        if channel == self.keys.announce:
            self._announced(message)
            return
        if message.kind not in (e.MESSAGE, e.ROUTE, e.CONTROL, e.FRAME) or (
                message.kind != e.MESSAGE and channel == self.keys.broadcast):
            self._malformed(f"channel {channel}", f"a kind {message.kind} envelope")
            return
        if message.sender not in self._servers:
            self.stats.unknownSender += 1
            self.onceLog.warn(("unknown", message.sender), "rejected a cluster message "
                              "from {sender}, which is not a member (later ones are only "
                              "counted in stats.unknownSender)", sender=message.sender)
            return
        if len(message.payload) > self._engine.maxMessageLength:
            self._malformed(f"server {message.sender}", "a payload over the longest message")
            return
        if message.kind == e.CONTROL:
            try:
                self._engine.remote.controlReceived(message.sender, message.payload)
            except ProtocolError as error:
                self._malformed(f"control from {message.sender}", error)
            return
        if message.kind == e.FRAME:
            self._frameIn(message.sender, message.frameFrom, message.frameTo,
                          message.flags, message.payload)
            return
        if message.kind == e.ROUTE:
            self.stats.routedIn += 1
            self.stats.routedUnknown += self._engine.deliverRouted(
                message.targets, message.payload, message.mode, message.priority,
                message.sendChannel)
            return
        self.stats.messagesReceived += 1
        self.dispatch("onClusterMessage", message.sender,
                      None if channel != self.keys.broadcast else message.channel,
                      message.payload)

    def _frameIn(self, sender: str, frameFrom: int, frameTo: int, flags: int,
                 payload: bytes) -> None:
        """A frame C{sender} relayed here, through Redis or straight."""
        if self._engine.remote.frameReceived(sender, frameFrom, frameTo, flags, payload):
            self.stats.framesIn += 1
        else:
            self.stats.framesRefused += 1

    def _announced(self, message: e.Envelope) -> None:
        if message.kind == e.JOIN:
            info = self._parseInfo(message.payload, message.sender)
            if info is not None:
                self._join(info)
                if self._registered:
                    # Each knows the other: it read the members before
                    # announcing itself, and this server had registered.
                    self._probe((info.serverID,))
        elif message.kind == e.LEAVE:
            self._leave(message.sender)
        elif message.kind == e.LEASE:
            self._owners[message.block] = message.sender
        else:
            self._malformed("the announcements", f"a kind {message.kind} envelope")

    def _malformed(self, where: str, error) -> None:
        self.stats.malformed += 1
        self.onceLog.warn(("malformed", where), "rejected malformed data from Redis in "
                          "{where}: {error} (later ones are only counted in "
                          "stats.malformed)", where=where, error=error)

    # Helpers

    def _full(self, data: bytes) -> bool:
        """Whether C{data} would put more than C{maxPendingBytes} waiting for Redis."""
        return self._link.pendingBytes + len(data) > self.maxPendingBytes

    def _publishFailed(self, count: int, why: str) -> None:
        """Relayed frames or routed sends, sent without a Deferred, failed."""
        self.stats.publishesFailed += count
        self.onceLog.warn(("publish", why), "{count} relayed frames or sends to other "
                          "servers' clients may be lost: {why} (later ones are only "
                          "counted in stats.publishesFailed)", count=count, why=why)

    def _checkPayload(self, payload: bytes) -> None:
        if not isinstance(payload, bytes):
            raise TypeError("a cluster message is bytes")
        limit = self._engine.maxMessageLength if self._engine is not None else 0
        if len(payload) > limit:
            raise MessageTooLong(f"{len(payload)} bytes exceed {limit}")

    def _checkAvailable(self) -> None:
        if not self.available:
            raise self._unavailable()

    def _unavailable(self) -> ClusterUnavailable:
        return ClusterUnavailable(
            f"Redis at {self.address.host}:{self.address.port} is unreachable or this "
            f"server ({self.serverID}) is not registered yet")


def _decodeOwners(pairs) -> dict[int, str]:
    pairs = pairs or []
    if isinstance(pairs, dict):
        pairs = [x for kv in pairs.items() for x in kv]
    owners = {}
    for i in range(0, len(pairs) - 1, 2):
        try:
            owners[int(pairs[i])] = pairs[i + 1].decode()
        except (ValueError, UnicodeDecodeError):
            continue
    return owners

"""Attacks on a live server, each beside an honest pair: does the server stay
up, bounded and fair?

Every scenario starts a fresh server process (``_attack_server.py``, a
NetServer on 127.0.0.1, encryption on) and an honest pair in a process of its
own (``_attack_honest.py``: two NetClients in one P2P group, relayed unless
``--honest-direct``, sending each other 100 timestamped reliable messages a
second each way; the receiver measures the one-way latency). The attackers
and the victim run in this process. For each scenario it prints: the server
up or not, its RSS before and after the attack (VmRSS of its process), its
CPU meanwhile, the honest pair's losses and latency, whether a fresh client
can still join afterwards, and the scenario's own figures:

- ``slow-consumer``: a joined client stops reading its TCP socket (its
  keepalives still go out) while a group member (a relay-only group) relays
  reliable messages to it as fast as the relay limit allows and the server
  sends to it too: the server's RSS over time, and whether and when the
  server disconnected the slow client.
- ``amplification`` (root: a raw socket): attacker clients send their sealed
  UDP_HELLO with a forged source, a victim port of this process; a group
  member of each relays to it (unreliable, reliable, and through the pair's
  session): bytes the victim received against bytes the attackers sent
  (goal at most 1x).
- ``rejected-relay-flood``: a client sends TCP relay requests naming
  thousands of hosts it shares no group with, as fast as its socket takes
  them: the server's CPU and the honest pair's latency.
- ``fragment-exhaustion``: clients feed their reliable-UDP session with the
  server fragments of messages that never complete and reliable fragments
  past a gap: the server's RSS growth.
- ``slowloris``: many TCP connections that dribble a byte a second and never
  finish the handshake: how many the server cut and when; a fresh client
  joins in the middle of it.
- ``login-failures``: clients whose login check raises, fails (a failing
  Deferred) or never answers: how each was refused (the JoinFailed subclass
  and message) and that none was admitted.
- ``join-storm``: ``--clients`` clients joining at once from
  ``--join-processes`` processes: joined, timed out, failed, join times, and
  the kernel's ListenOverflows and ListenDrops (TcpExt) before and after.

The baseline, in the same run: the same honest pair and server with no
attack, for as long (``--seconds``). Each attack's honest p99 and server RSS
print as a ratio to it, next to the absolute figures; a table at the end has
one line per scenario. All traffic stays on 127.0.0.1; every wait is bounded.

    python bench/attacks.py [--scenario NAME ...] [--quick] [--seconds 12]
                            [--clients 2000] [--backlog N] [--timeout 400]
"""

from __future__ import annotations

import argparse
import collections
import itertools
import os
import socket
import struct
import sys
import time

from twisted.internet import defer, protocol, task

import _common
from _common import (
    ATTACK_VERSION as VERSION,
)
from _common import (
    LOOPBACK,
    BenchFailure,
    ChildProcess,
    ms,
)
from _common import (
    clientEngine as engine,
)
from proud_twisted import NetClient, PublicIdentity, ServerUdpState
from proud_twisted._crypto.datagrams import CLIENT_DATAGRAM_HEADER, sealDatagram
from proud_twisted._glue.sessiondriver import DEFAULT_SESSION_CONFIG
from proud_twisted.client.serverpath import HELLO_PADDING as UDP_HELLO_PADDING
from proud_twisted.rudp import frames
from proud_twisted.server.netserver import (
    DEFAULT_HANDSHAKE_TIMEOUT,
    DEFAULT_RELAY_BYTES_PER_SECOND,
    DEFAULT_RELAY_FRAMES_PER_SECOND,
)
from proud_twisted.wire import relay
from proud_twisted.wire.datagrams import encodeDatagram
from proud_twisted.wire.framing import encodeFrame

clock = _common.clock
MB = 1024 * 1024
JOIN_TIMEOUT = 10.0
TICK = 0.01
"""Period of the paced senders."""
SAMPLE = 1.0
"""Seconds between RSS samples."""
SETTLE = 0.5
"""After an attack stops: time for datagrams already sent to arrive (no event says so)."""
LAUNCH_BATCH, LAUNCH_GAP = 25, 0.05
"""Connections opened at once, and the pause between batches (the listen
backlog is 50 unless --backlog says otherwise)."""

SLOW_PAYLOAD = 16 * 1024
RATE_SHARE = 0.95
"""Of the server's relay limit (frames and bytes a second) the feeder uses."""
SERVER_SEND_INTERVAL, SERVER_SEND_SIZE = 0.05, 1024
ATTACKERS = 4
AMPLIFICATION_PAYLOAD = 256
FORGE_INTERVAL = 0.2
RELAY_TARGETS = relay.MAX_RELAY_TARGETS
"""Strangers a relay request names: as many as the server accepts in one."""
STRANGER_SETS = 4
STRANGERS = 0x7F000000
"""HostIDs from here on are no one's (the server allocates from 1000 up)."""
FRAGMENT_CHUNK = 1000
FRAGMENTS_PER_TICK = 10
DRIBBLE_FRAME = encodeFrame(bytes(200))
"""What a slowloris connection dribbles, a byte a second: never a whole frame."""
LOGIN_KINDS = (b"raise", b"fail", b"hang")
SERVER_LOGIN_TIMEOUT = 2.0


# the processes and clients of one scenario

class Arena:
    """One scenario's server process and honest pair, and the clients its
    attack makes (all dropped at the end)."""

    def __init__(self, reactor, budget, args) -> None:
        self.reactor = reactor
        self.budget = budget
        self.args = args
        self.server = self.honest = None
        self.hello = {}
        self.clients = []
        self.cleanups = []

    async def start(self, serverOptions: list) -> None:
        lifetime = max(1.0, self.budget.left()) + 30.0
        self.server = ChildProcess.spawn(self.reactor, "server", "_attack_server.py",
                                         "--lifetime", lifetime, *serverOptions)
        self.hello = await self.server.first(self.reactor, self.budget)
        self.pid = self.hello["pid"]
        self.key = PublicIdentity.fromHex(self.hello["key"])
        for name in self.hello["ignored"]:
            print(f"  (this checkout's NetServer takes no {name}= yet: left out)")
        self.honest = ChildProcess.spawn(self.reactor, "honest pair", "_attack_honest.py",
                                         "--port", self.hello["tcpPort"], "--key",
                                         self.hello["key"], "--lifetime", lifetime,
                                         *(["--direct"] if self.args.honest_direct else []))
        pair = (await self.honest.first(self.reactor, self.budget))["hostIDs"]
        await self.group(pair, direct=self.args.honest_direct)
        await self.honest.ask(self.budget, "paired")

    async def ask(self, command: str) -> dict:
        return await self.server.ask(self.budget, command)

    async def group(self, hostIDs, direct: bool = False) -> int:
        policy = "direct" if direct else "relay"
        return (await self.ask(f"group {policy} {' '.join(map(str, hostIDs))}"))["group"]

    def rss(self) -> int:
        return _common.processRssBytes(self.pid) or 0

    def cpu(self) -> float:
        return _common.processCpuSeconds(self.pid) or 0.0

    def newClient(self, events=None) -> NetClient:
        client = NetClient(events, reactor=self.reactor, serverKey=self.key,
                           udpInterface=LOOPBACK)
        self.clients.append(client)
        return client

    def connect(self, client: NetClient, userData: bytes = b"",
                timeout: float = JOIN_TIMEOUT) -> defer.Deferred:
        return client.connect(LOOPBACK, self.hello["tcpPort"], VERSION, userData, timeout)

    async def joinAll(self, clients) -> list:
        joins = defer.gatherResults([self.connect(c) for c in clients], consumeErrors=True)
        try:
            return await self.budget.wait(joins, JOIN_TIMEOUT + 5, "the attackers to join")
        except defer.FirstError as e:
            raise BenchFailure(
                f"an attacker could not join: {e.subFailure.getErrorMessage()}") from e

    async def udpConfirmed(self, clients) -> None:
        await self.budget.until(
            lambda: all(c.getServerUdpState() is ServerUdpState.CONFIRMED for c in clients),
            JOIN_TIMEOUT, "the attackers' UDP to the server")

    async def sleep(self, seconds: float) -> None:
        await task.deferLater(self.reactor, max(0.0, min(seconds, self.budget.left())),
                              lambda: None)

    def repeat(self, period: float, function) -> task.LoopingCall:
        """Call ``function`` every ``period`` seconds until the scenario ends."""
        loop = task.LoopingCall(function)
        loop.clock = self.reactor
        loop.start(period)
        self.cleanups.append(lambda: loop.running and loop.stop())
        return loop

    async def serverUp(self) -> bool:
        if self.server.ended:
            return False
        try:
            await self.ask("status")
        except BenchFailure:
            return False
        return True

    async def freshJoin(self) -> tuple:
        """(seconds a new client took to join, or None; why not)."""
        client = self.newClient()
        start = clock()
        try:
            await self.budget.wait(self.connect(client), JOIN_TIMEOUT + 5, "a fresh client")
        except Exception as e:
            return None, f"{type(e).__name__}: {e}"
        return clock() - start, ""

    async def close(self) -> None:
        for cleanup in self.cleanups:
            cleanup()
        leaving = [defer.maybeDeferred(c.disconnect, linger=0) for c in self.clients]
        try:
            await defer.DeferredList(leaving).addTimeout(5.0, self.reactor)
        except defer.TimeoutError:
            for client in self.clients:
                connection = engine(client)._connection
                if connection is not None:
                    connection.transport.abortConnection()
        for process in (self.honest, self.server):
            if process is not None:
                await process.stop(self.reactor)


class Pacer:
    """Calls ``send`` ``rate`` times a second, in ticks, while ``alive()``."""

    def __init__(self, arena: Arena, rate: float, send, alive) -> None:
        self.rate = rate
        self.send = send
        self.alive = alive
        self.sent = 0
        self.start = clock()
        self.loop = arena.repeat(TICK, self.tick)

    def tick(self) -> None:
        if not self.alive():
            self.loop.stop()
            return
        due = min(int(self.rate * (clock() - self.start)) - self.sent, int(self.rate * 0.1) + 1)
        for _ in range(due):
            self.send()
        self.sent += max(0, due)

    def stop(self) -> None:
        if self.loop.running:
            self.loop.stop()


class Flood:
    """Calls ``send`` as fast as ``transport`` takes what it writes: its
    streaming producer, paused while its buffer is full."""

    BATCH = 32

    def __init__(self, reactor, transport, send, alive) -> None:
        self.reactor = reactor
        self.transport = transport
        self.send = send
        self.alive = alive
        self.sent = 0
        self.paused = False
        self.running = True
        self.call = None
        self.start = clock()
        self.seconds = 0.0
        transport.registerProducer(self, True)
        self.schedule()

    def schedule(self) -> None:
        if self.running and not self.paused and self.call is None:
            self.call = self.reactor.callLater(0, self.batch)

    def batch(self) -> None:
        self.call = None
        for _ in range(self.BATCH):
            if not self.running or self.paused:
                break
            if not self.alive():
                self.stop()
                return
            self.send()
            self.sent += 1
        self.schedule()

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        self.schedule()

    def stopProducing(self) -> None:
        self.running = False

    def stop(self) -> None:
        if self.call is not None:
            self.call.cancel()
            self.call = None
        if self.running:
            self.running = False
            self.seconds = clock() - self.start
            self.transport.unregisterProducer()


def joined(client: NetClient) -> bool:
    return client.getLocalHostID() != 0


def leaves(status: dict, hostID: int) -> list:
    """The server's [hostID, reason, time, comment] for each time ``hostID`` left."""
    return [leave for leave in status["leaves"] if leave[0] == hostID]


def mb(size: float) -> str:
    return f"{size / MB:.1f} MB"


async def sampleRss(arena: Arena, seconds: float, every=None) -> list:
    """The server's RSS every SAMPLE seconds for ``seconds``; ``every(elapsed)``
    (a coroutine) runs after each sample."""
    samples = []
    start = clock()
    for _ in range(int(seconds / SAMPLE) + 1):
        left = seconds - (clock() - start)
        if left <= 0:
            break
        await arena.sleep(min(SAMPLE, left))
        samples.append(arena.rss())
        if every is not None:
            await every(clock() - start)
    return samples


def rssLine(samples: list) -> str:
    return " ".join(f"{s / MB:.0f}" for s in samples)


# the scenarios: each returns one line for the summary table

async def idle(arena: Arena) -> str:
    """the honest pair alone: no attack"""
    await arena.sleep(arena.args.seconds)
    return "-"


async def slowConsumer(arena: Arena) -> str:
    """a client stops reading TCP; a group member and the server keep sending to it"""
    args = arena.args
    slow, feeder = arena.newClient(), arena.newClient()
    slowID, feederID = await arena.joinAll([slow, feeder])
    await arena.group([slowID, feederID], direct=False)
    await arena.ask(f"send {slowID} {SERVER_SEND_INTERVAL} {SERVER_SEND_SIZE}")
    engine(slow)._connection.transport.pauseProducing()
    rate = RATE_SHARE * min(DEFAULT_RELAY_FRAMES_PER_SECOND,
                            DEFAULT_RELAY_BYTES_PER_SECOND / SLOW_PAYLOAD)
    body = relay.encodeTcpRelayRequest([slowID], relay.FLAG_RELIABLE, bytes(SLOW_PAYLOAD))
    connection = engine(feeder)._connection
    pacer = Pacer(arena, rate, lambda: connection.sendBody(body), lambda: joined(feeder))
    start = time.time()
    cut = []

    async def watch(elapsed: float) -> None:
        if not cut:
            cut.extend(leaves(await arena.ask("status"), slowID))

    print(f"  feeder relays {SLOW_PAYLOAD // 1024} KiB reliable messages to the slow client at"
          f" {rate:.0f}/s ({mb(rate * SLOW_PAYLOAD)}/s, {RATE_SHARE:.0%} of the relay limit);"
          f" the server sends it {SERVER_SEND_SIZE} B every {SERVER_SEND_INTERVAL} s")
    samples = await sampleRss(arena, args.seconds, watch)
    pacer.stop()
    print(f"  server RSS (MB) every {SAMPLE:g} s: {rssLine(samples)}")
    print(f"  feeder sent {pacer.sent} messages ({mb(pacer.sent * SLOW_PAYLOAD)});"
          f" the feeder {'is still' if joined(feeder) else 'is NO LONGER'} joined")
    if cut:
        _hostID, reason, when, comment = cut[0]
        print(f"  the server disconnected the slow client after {when - start:.1f} s: {reason}"
              f" {comment!r}")
        return f"slow client cut after {when - start:.1f} s ({reason}); RSS peak {mb(max(samples))}"
    print(f"  the server did NOT disconnect the slow client within {args.seconds:g} s")
    return f"slow client NOT cut in {args.seconds:g} s; RSS peak {mb(max(samples))}"


def forgedUdp(source, destination, payload: bytes) -> bytes:
    """An IPv4 + UDP packet from ``source`` to ``destination`` (the kernel
    fills in the IP checksum and length; no UDP checksum)."""
    length = 8 + len(payload)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + length, 0, 0, 64, socket.IPPROTO_UDP, 0,
                     socket.inet_aton(source[0]), socket.inet_aton(destination[0]))
    return ip + struct.pack("!HHHH", source[1], destination[1], length, 0) + payload


class Victim(protocol.DatagramProtocol):
    def __init__(self) -> None:
        self.datagrams = self.bytes = 0

    def datagramReceived(self, data: bytes, addr) -> None:
        self.datagrams += 1
        self.bytes += len(data)


async def amplification(arena: Arena) -> str:
    """forged-source UDP_HELLOs point attackers' UDP at a victim; their group members relay to
    them"""
    reactor, args = arena.reactor, arena.args
    victim = Victim()
    port = reactor.listenUDP(0, victim, interface=LOOPBACK)
    arena.cleanups.append(port.stopListening)
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    raw.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
    arena.cleanups.append(raw.close)
    victimAddress = (LOOPBACK, port.getHost().port)
    serverUdp = (LOOPBACK, arena.hello["udpPort"])
    attackers = [arena.newClient() for _ in range(ATTACKERS)]
    members = [arena.newClient() for _ in range(ATTACKERS)]
    ids = await arena.joinAll(attackers + members)
    attackerIDs = ids[:ATTACKERS]
    for a, m in zip(attackerIDs, ids[ATTACKERS:], strict=False):
        await arena.group([a, m], direct=False)
    await arena.udpConfirmed(attackers + members)
    sent = collections.Counter()

    def forge() -> None:
        for a in attackers:
            if not joined(a) or engine(a).udpChannel is None:
                continue
            hello = sealDatagram(engine(a).udpChannel, encodeDatagram(
                "UDP_HELLO", hostID=a.getLocalHostID(), token=engine(a)._udpToken,
                padding=UDP_HELLO_PADDING), CLIENT_DATAGRAM_HEADER)
            raw.sendto(forgedUdp(victimAddress, serverUdp, hello), (LOOPBACK, 0))
            sent["hellos"] += 1
            sent["helloBytes"] += len(hello)

    payload = bytes(AMPLIFICATION_PAYLOAD)

    def relayToAttackers() -> None:
        for m, a in zip(members, attackerIDs, strict=False):
            if not joined(m):
                continue
            for flags in (0, relay.FLAG_RELIABLE):
                body = relay.encodeTcpRelayRequest([a], flags, payload)
                engine(m)._connection.sendBody(body)
                sent["relayBytes"] += len(body)
            if a in m.getPeerHostIDs():
                m.send(a, payload, reliable=False)      # through the pair's session
                sent["relayBytes"] += len(payload)

    arena.repeat(FORGE_INTERVAL, forge)
    arena.repeat(TICK, relayToAttackers)
    await arena.sleep(args.seconds / 2)
    hijacked = 0
    for a in attackerIDs:
        held = (await arena.ask(f"udp {a}"))["udpAddress"]
        hijacked += held is not None and tuple(held) == victimAddress
    await arena.sleep(args.seconds / 2)
    for cleanup in arena.cleanups[-2:]:
        cleanup()           # stop forging and relaying
    await arena.sleep(SETTLE)
    status = await arena.ask("status")
    attackerBytes = sent["helloBytes"] + sent["relayBytes"]
    print(f"  {ATTACKERS} attackers sent {sent['hellos']} forged hellos ({sent['helloBytes']:,} B"
          f" of UDP payload); their group members {sent['relayBytes']:,} B of relay requests")
    print(f"  mid-attack the server held the victim as the UDP address of {hijacked} of"
          f" {ATTACKERS} attackers; it refused {status['stats']['amplificationRefused']} hellos"
          " as amplification, counted"
          f" {status['stats']['spoofedDatagrams']} spoofed datagrams")
    print(f"  the victim received {victim.datagrams} datagrams, {victim.bytes:,} B:"
          f" {victim.bytes / max(1, sent['helloBytes']):.2f} x the forged hellos,"
          f" {victim.bytes / max(1, attackerBytes):.3f} x all the attackers sent")
    _common.report("amplification, bytes the victim received per byte the attackers sent",
                   victim.bytes, attackerBytes, "B", "the attackers' hellos and relay requests",
                   goal=1.0, higherIsBetter=False)
    return (f"victim got {victim.bytes:,} B for {attackerBytes:,} B sent"
            f" ({victim.bytes / max(1, attackerBytes):.2f} x; hellos alone"
            f" {victim.bytes / max(1, sent['helloBytes']):.1f} x); {hijacked}/{ATTACKERS} hijacked")


async def rejectedRelayFlood(arena: Arena) -> str:
    """relay requests naming thousands of hosts the sender shares no group with, flat out"""
    args = arena.args
    flooder = arena.newClient()
    flooderID, = await arena.joinAll([flooder])
    count = args.relay_targets
    bodies = itertools.cycle([
        relay.encodeTcpRelayRequest(range(STRANGERS + i * count, STRANGERS + (i + 1) * count),
                                    relay.FLAG_RELIABLE, b"flood")
        for i in range(STRANGER_SETS)])
    size = len(next(bodies))
    connection = engine(flooder)._connection
    before = (await arena.ask("status"))["stats"]
    cpu0, start, began = arena.cpu(), clock(), time.time()
    flood = Flood(arena.reactor, connection.transport, lambda: connection.sendBody(next(bodies)),
                  lambda: joined(flooder))
    arena.cleanups.append(flood.stop)
    await arena.sleep(args.seconds)
    flood.stop()
    cpu, wall = arena.cpu() - cpu0, clock() - start
    status = await arena.ask("status")
    after = status["stats"]
    rejected = after["relayRejected"] - before["relayRejected"]
    print(f"  the flooder wrote {flood.sent:,} requests of {count} strangers each (of"
          f" {STRANGER_SETS * count} in all; {mb(flood.sent * size)}) in {flood.seconds:.1f} s,"
          f" until"
          f" {'the attack ended' if joined(flooder) else 'its connection closed'}")
    cut = leaves(status, flooderID)
    if cut:
        print(f"  the server disconnected the flooder after {cut[0][2] - began:.2f} s:"
              f" {cut[0][1]} {cut[0][3]!r}")
    limited = after["relayRateLimited"] - before["relayRateLimited"]
    print(f"  the server rejected {rejected:,} targets"
          f" ({rejected / max(1, flood.sent * count):.0%} of those written) and rate-limited"
          f" {limited:,}, used"
          f" {cpu:.2f} s of CPU ({cpu / wall:.0%})")
    fate = (f"flooder cut after {cut[0][2] - began:.2f} s ({cut[0][1]})" if cut
            else "flooder NOT cut")
    return (f"{flood.sent:,} requests x {count} strangers written; server CPU"
            f" {cpu / wall:.0%}; {fate}")


class FragmentFeeder:
    """Session datagrams, as a client's server session sends them (see
    ClientEngine._serverTransmit), that the server can never finish: unreliable
    fragments of messages whose other fragments never come, and reliable
    fragments after a sequence number that is never sent."""

    def __init__(self, client: NetClient) -> None:
        self.client = client
        self.packetNumber = 1
        self.message = 1
        self.reliableSeq = 1        # seq 0 never comes: everything after waits for it
        self.total = DEFAULT_SESSION_CONFIG.maxMessageLength
        self.chunk = bytes(FRAGMENT_CHUNK)
        self.sent = 0

    def frame(self, reliable: bool) -> bytes:
        if reliable:
            seq, self.reliableSeq = self.reliableSeq, self.reliableSeq + 1
            kind = frames.FT_RELIABLE_FRAGMENT
        else:
            seq, self.message = self.message, self.message + 1
            kind = frames.FT_UNRELIABLE_FRAGMENT
        offset = FRAGMENT_CHUNK * (1 + seq % (self.total // FRAGMENT_CHUNK - 1))
        return frames.packFragment(kind, 0, seq, self.chunk, self.total, offset)

    def send(self, count: int) -> None:
        if not joined(self.client):
            return
        for i in range(count):
            datagram = frames.encodeDatagram(self.packetNumber, [self.frame(i % 2 == 0)],
                                             DEFAULT_SESSION_CONFIG.checksum)
            self.packetNumber += 1
            engine(self.client)._sendUdp(relay.encodeUdpUser(self.client.getLocalHostID(),
                                                     relay.FLAG_SESSION, datagram))
            self.sent += 1


async def fragmentExhaustion(arena: Arena) -> str:
    """fragments the server's per-client sessions can never complete"""
    attackers = [arena.newClient() for _ in range(ATTACKERS)]
    await arena.joinAll(attackers)
    await arena.udpConfirmed(attackers)
    feeders = [FragmentFeeder(a) for a in attackers]
    before = arena.rss()
    arena.repeat(TICK, lambda: [f.send(FRAGMENTS_PER_TICK) for f in feeders])
    samples = await sampleRss(arena, arena.args.seconds)
    arena.cleanups.pop()()
    status = await arena.ask("status")
    sent = sum(f.sent for f in feeders)
    print(f"  {ATTACKERS} attackers sent {sent:,} fragment datagrams"
          f" ({mb(sent * FRAGMENT_CHUNK)} of fragments); the server counted"
          f" {status['stats']['malformedDatagrams']} malformed datagrams;"
          f" {sum(joined(a) for a in attackers)} attackers still joined")
    print(f"  server RSS (MB) every {SAMPLE:g} s: {rssLine(samples)}")
    growth = max(samples) - before
    print(f"  RSS growth: {mb(growth)} at the peak ({mb(growth / ATTACKERS)} per attacker)")
    return f"RSS +{mb(growth)} at the peak ({mb(growth / ATTACKERS)} per attacker)"


class Dribbler(protocol.Protocol):
    def connectionMade(self) -> None:
        self.factory.opened(self)

    def connectionLost(self, reason) -> None:
        self.factory.lost(self)


class Dribblers(protocol.ClientFactory):
    protocol = Dribbler

    def __init__(self) -> None:
        self.started = {}       # protocol -> when its connection opened
        self.cut = []           # seconds each lost connection had lived
        self.failed = 0
        self.closing = False

    def opened(self, dribbler) -> None:
        self.started[dribbler] = clock()

    def lost(self, dribbler) -> None:
        began = self.started.pop(dribbler, None)
        if began is not None and not self.closing:
            self.cut.append(clock() - began)

    def clientConnectionFailed(self, connector, reason) -> None:
        self.failed += 1

    def drip(self) -> None:
        now = clock()
        for dribbler, began in self.started.items():
            offset = int(now - began) % len(DRIBBLE_FRAME)
            dribbler.transport.write(DRIBBLE_FRAME[offset:offset + 1])

    def close(self) -> None:
        self.closing = True
        for dribbler in list(self.started):
            dribbler.transport.abortConnection()


async def slowloris(arena: Arena) -> str:
    """many TCP connections dribbling a byte a second, never finishing the handshake"""
    reactor, args = arena.reactor, arena.args
    dribblers = Dribblers()
    arena.cleanups.append(dribblers.close)
    start = clock()
    for first in range(0, args.slowloris, LAUNCH_BATCH):
        for _ in range(min(LAUNCH_BATCH, args.slowloris - first)):
            reactor.connectTCP(LOOPBACK, arena.hello["tcpPort"], dribblers, timeout=5)
        await arena.sleep(LAUNCH_GAP)
    arena.repeat(1.0, dribblers.drip)
    await arena.sleep(args.seconds / 2 - (clock() - start))
    during, why = await arena.freshJoin()
    joinedOrNot = f"joined in {during:.3f} s" if during is not None else f"did NOT join: {why}"
    print(f"  mid-attack, with {len(dribblers.started)} dribbling connections open: a fresh"
          f" client {joinedOrNot}")
    await arena.sleep(args.seconds - (clock() - start))
    cut = sorted(dribblers.cut)
    print(f"  {args.slowloris} connections: {len(cut)} cut by the server, {len(dribblers.started)}"
          f" still open after {clock() - start:.1f} s, {dribblers.failed} failed to connect"
          f" (the server's handshake timeout is {DEFAULT_HANDSHAKE_TIMEOUT:g} s)")
    if cut:
        print(f"  cut after {cut[0]:.1f} s (first), {_common.median(cut):.1f} s (median),"
              f" {cut[-1]:.1f} s (last) of dribbling")
    spans = f" after {cut[0]:.1f}-{cut[-1]:.1f} s" if cut else ""
    joinedMid = f"{during:.3f} s" if during is not None else "FAILED"
    return f"cut {len(cut)}/{args.slowloris}{spans}; mid-attack join {joinedMid}"


async def loginFailures(arena: Arena) -> str:
    """login checks that raise, fail or never answer"""
    args = arena.args
    loginTimeout = arena.hello["options"].get("loginTimeout")
    timeout = loginTimeout + 5.0 if loginTimeout else args.login_join_timeout
    outcomes = {kind: collections.Counter() for kind in LOGIN_KINDS}
    times = {kind: [] for kind in LOGIN_KINDS}
    admitted = []
    joins = []

    def ended(result, kind, client, start) -> None:
        times[kind].append(clock() - start)
        if isinstance(result, int):
            outcomes[kind]["ADMITTED"] += 1
            admitted.append(client)
        else:
            outcomes[kind][f"{result.type.__name__}: {result.getErrorMessage()}"] += 1

    launched = 0
    for kind in LOGIN_KINDS:
        for _ in range(args.login_clients):
            client = arena.newClient()
            d = arena.connect(client, kind, timeout)
            joins.append(d.addBoth(ended, kind, client, clock()))
            launched += 1
            if launched % LAUNCH_BATCH == 0:
                await arena.sleep(LAUNCH_GAP)
    await arena.budget.wait(defer.DeferredList(joins), timeout + 10, "the logins to end")
    status = await arena.ask("status")
    print(f"  {args.login_clients} clients of each kind, join timeout {timeout:g} s;"
          f" server login timeout {loginTimeout or 'none (not an option yet)'}")
    for kind in LOGIN_KINDS:
        name = kind.decode()
        print(f"  {name}: answered in {_common.median(times[kind]):.2f} s median,"
              f" {max(times[kind]):.2f} s max; the server saw"
              f" {status['requests'].get(name, 0)} login checks")
        for outcome, count in outcomes[kind].most_common():
            print(f"    {count:4d} x {outcome}")
    print(f"  server: {status['clients']} clients joined (2 of them the honest pair),"
          f" {status['exceptions']} exceptions reported to onException, log events by level"
          f" {status['logLevels']}")
    return "; ".join(f"{kind.decode()}: {outcomes[kind]['ADMITTED']} admitted, "
                     + ", ".join(f"{n} {o.split(':')[0]}" for o, n in outcomes[kind].items()
                                 if o != "ADMITTED")
                     for kind in LOGIN_KINDS)


async def joinStorm(arena: Arena) -> str:
    """--clients clients joining at once from --join-processes processes"""
    reactor, args, budget = arena.reactor, arena.args, arena.budget
    counters = ("ListenOverflows", "ListenDrops")
    shares = [args.clients // args.join_processes + (i < args.clients % args.join_processes)
              for i in range(args.join_processes)]
    lifetime = max(1.0, budget.left()) + 30.0
    joiners = [ChildProcess.spawn(reactor, f"joiners {i}", "_attack_joiners.py", "--port",
                                  arena.hello["tcpPort"], "--key", arena.hello["key"],
                                  "--clients", n, "--join-timeout", JOIN_TIMEOUT,
                                  "--lifetime", lifetime)
               for i, n in enumerate(shares)]
    arena.cleanups.extend(lambda p=p: defer.ensureDeferred(p.stop(reactor)) for p in joiners)
    for joiner in joiners:
        await joiner.next(budget, "its clients")
    before = _common.tcpExtCounters(*counters)
    start = clock()
    answers = await defer.gatherResults(
        [defer.ensureDeferred(j.ask(budget, "go")) for j in joiners], consumeErrors=True)
    wall = clock() - start
    after = _common.tcpExtCounters(*counters)
    status = await arena.ask("status")
    times = [t for answer in answers for t in answer["times"]]
    joinedCount = sum(a["joined"] for a in answers)
    timeouts = sum(a["timeouts"] for a in answers)
    failures = collections.Counter()
    for answer in answers:
        failures.update(answer["otherFailures"])
    p50, p99 = _common.summarise(times) if times else (None, None)
    delta = {name: after.get(name, 0) - before.get(name, 0) for name in counters}
    print(f"  {args.clients} clients from {args.join_processes} processes, at once: {joinedCount}"
          f" joined, {timeouts} JoinTimeout, {sum(failures.values())} other failures, in"
          f" {wall:.1f} s; the server holds {status['clients']} clients")
    for failure, count in failures.most_common(5):
        print(f"    {count:5d} x {failure}")
    if times:
        print(f"  join time p50 {ms(p50)}, p99 {ms(p99)}, max {ms(max(times))}")
    print("  kernel TcpExt: " + ", ".join(
        f"{name} {before.get(name, '?')} -> {after.get(name, '?')} (+{delta[name]})"
        for name in counters) + f"; server backlog option: "
          f"{arena.hello['options'].get('backlog', 'not set (server default)')}")
    for joiner in joiners:
        await joiner.stop(reactor)
    return (f"{joinedCount}/{args.clients} joined, {timeouts} timeouts, {sum(failures.values())}"
            f" other; join p50 {ms(p50)} p99 {ms(p99)}; ListenOverflows +{delta['ListenOverflows']}"
            f" ListenDrops +{delta['ListenDrops']}")


SCENARIOS = {
    "slow-consumer": slowConsumer,
    "amplification": amplification,
    "rejected-relay-flood": rejectedRelayFlood,
    "fragment-exhaustion": fragmentExhaustion,
    "slowloris": slowloris,
    "login-failures": loginFailures,
    "join-storm": joinStorm,
}


def skipReason(name: str) -> str:
    if name == "amplification" and (not hasattr(os, "geteuid") or os.geteuid() != 0):
        return "needs root for a raw socket (IP_HDRINCL) to forge the source address"
    return ""


def serverOptions(args, name: str) -> list:
    options = []
    if name == "login-failures":
        options += ["--login-timeout", args.server_login_timeout]
    if args.backlog:
        options += ["--backlog", args.backlog]
    return options


# running and reporting

class Outcome:
    def __init__(self, name: str) -> None:
        self.name = name
        self.figure = self.problem = ""
        self.up = None
        self.rssBefore = self.rssAfter = 0
        self.cpuShare = 0.0
        self.honest = {}
        self.fresh = (None, "")


async def runScenario(reactor, budget, args, name: str, scenario) -> Outcome:
    outcome = Outcome(name)
    print(f"\n== {name}: {scenario.__doc__}")
    outcome.problem = skipReason(name)
    if outcome.problem:
        print(f"  SKIPPED: {outcome.problem}")
        return outcome
    arena = Arena(reactor, budget, args)
    try:
        await arena.start(serverOptions(args, name))
        outcome.rssBefore = arena.rss()
        cpu0, start = arena.cpu(), clock()
        outcome.figure = await scenario(arena)
        outcome.cpuShare = (arena.cpu() - cpu0) / (clock() - start)
        outcome.rssAfter = arena.rss()
        outcome.honest = honest = await arena.honest.ask(budget, "stop")
        outcome.up = await arena.serverUp()
        if outcome.up:
            outcome.fresh = await arena.freshJoin()
    except BenchFailure as e:
        outcome.problem = f"FAILED: {e}"
        print(f"  {outcome.problem}")
        return outcome
    finally:
        await arena.close()
    path = "direct" if args.honest_direct else "relayed"
    print(f"  server: {'up' if outcome.up else 'DOWN'}, RSS {mb(outcome.rssBefore)} before,"
          f" {mb(outcome.rssAfter)} after; CPU {outcome.cpuShare:.0%} of one core meanwhile")
    print(f"  honest pair ({path}, {args.rate:g} msgs/s each way): {honest['sent']} sent,"
          f" {honest['received']} received, {honest['lost']} lost ({honest['refused']} refused"
          f" as queue full, {honest['duplicates']} duplicated, {honest['outOfOrder']} out of"
          f" order); one-way p50 {ms(honest['p50'])}, p99 {ms(honest['p99'])}, max"
          f" {ms(honest['max'])}" + (f"; LEFT: {honest['leaves']}" if honest["leaves"] else ""))
    seconds, why = outcome.fresh
    print("  fresh client after the attack: "
          + (f"joined in {seconds:.3f} s" if seconds is not None else f"did NOT join ({why})"))
    return outcome


def ratioLines(outcome: Outcome, baseline: Outcome) -> None:
    if outcome.honest.get("p99") and baseline.honest.get("p99"):
        _common.report(f"{outcome.name}, honest p99 one-way latency during the attack",
                       outcome.honest["p99"] * 1e3, baseline.honest["p99"] * 1e3, "ms",
                       "no attack")
    if outcome.rssAfter and baseline.rssAfter:
        _common.report(f"{outcome.name}, server RSS after the attack", outcome.rssAfter / MB,
                       baseline.rssAfter / MB, "MB", "no attack")


def summaryTable(outcomes: list, baseline: Outcome) -> None:
    print("\nsummary (ratios against the honest pair alone, no attack):")
    print(f"  {'scenario':22s} {'server':6s} {'RSS before -> after (x base)':30s}"
          f" {'CPU':>5s} {'honest p99 (x base)':22s} {'lost':>5s} {'fresh join':11s} figures")
    for o in [baseline, *outcomes]:
        if o.problem and o.up is None:
            print(f"  {o.name:22s} {o.problem}")
            continue
        rssRatio = o.rssAfter / baseline.rssAfter if baseline.rssAfter else 0
        p99 = o.honest.get("p99")
        p99Ratio = p99 / baseline.honest["p99"] if p99 and baseline.honest.get("p99") else 0
        seconds = o.fresh[0]
        print(f"  {o.name:22s} {'up' if o.up else 'DOWN':6s}"
              f" {f'{o.rssBefore / MB:.0f} -> {o.rssAfter / MB:.0f} MB ({rssRatio:.2f}x)':30s}"
              f" {o.cpuShare:5.0%} {f'{ms(p99)} ({p99Ratio:.2f}x)':22s}"
              f" {o.honest.get('lost', '-')!s:>5s}"
              f" {f'{seconds:.3f} s' if seconds is not None else 'NO':11s} {o.figure}")


async def run(reactor, args) -> None:
    budget = _common.Budget(reactor, args.deadline)
    print(f"attacks on a server on 127.0.0.1 (its own process, encryption on); scenarios:"
          f" {', '.join(args.scenario)}; {args.seconds:g} s each; honest pair"
          f" {'direct' if args.honest_direct else 'relayed'}, {args.rate:g} msgs/s each way")
    baseline = await runScenario(reactor, budget, args, "baseline", idle)
    if baseline.problem:
        raise BenchFailure(f"the baseline did not run: {baseline.problem}")
    outcomes = [await runScenario(reactor, budget, args, name, SCENARIOS[name])
                for name in args.scenario]
    print()
    for outcome in outcomes:
        ratioLines(outcome, baseline)
    summaryTable(outcomes, baseline)
    failed = [o.name for o in outcomes if o.problem.startswith("FAILED")]
    if failed:
        raise BenchFailure(f"scenarios that could not run: {', '.join(failed)}")


def parseOptions(argv=None) -> argparse.Namespace:
    parser = _common.scriptParser(__doc__)
    parser.add_argument("--scenario", action="append", choices=list(SCENARIOS),
                        help="run this scenario (repeatable; default all)")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: a few seconds a scenario, small counts")
    parser.add_argument("--seconds", type=float,
                        help="length of each attack and of the baseline (default 12, quick 2)")
    parser.add_argument("--clients", type=int,
                        help="join-storm clients (default 2000, quick 200)")
    parser.add_argument("--join-processes", type=int, default=4,
                        help="processes the join storm comes from (default 4)")
    parser.add_argument("--backlog", type=int, default=0,
                        help="the server's listen backlog, where NetServer takes one"
                             " (default: the server chooses)")
    parser.add_argument("--slowloris", type=int,
                        help="slowloris connections (default 500, quick 100)")
    parser.add_argument("--relay-targets", type=int, default=RELAY_TARGETS,
                        help="strangers each rejected-relay-flood request names (default"
                             f" {RELAY_TARGETS}, the most this server takes in one)")
    parser.add_argument("--login-clients", type=int,
                        help="login-failures clients of each kind (default 40, quick 5)")
    parser.add_argument("--server-login-timeout", type=float, default=SERVER_LOGIN_TIMEOUT,
                        help="the server's loginTimeout in login-failures, where NetServer"
                             f" takes one (default {SERVER_LOGIN_TIMEOUT:g})")
    parser.add_argument("--login-join-timeout", type=float,
                        help="login-failures clients' join timeout where the server has no"
                             " login timeout (default 8, quick 3)")
    parser.add_argument("--honest-direct", action="store_true",
                        help="the honest pair talks directly instead of through the relay")
    parser.add_argument("--rate", type=float, default=100.0,
                        help="honest messages a second each way (default 100)")
    parser.add_argument("--timeout", type=float,
                        help="give up after this many seconds in all (default 400, quick 150)")
    args = parser.parse_args(argv)
    quick = args.quick
    for name, full, small in (("seconds", 12.0, 2.0), ("clients", 2000, 200),
                              ("slowloris", 500, 100), ("login_clients", 40, 5),
                              ("login_join_timeout", 8.0, 3.0), ("timeout", 400.0, 150.0)):
        if getattr(args, name) is None:
            setattr(args, name, small if quick else full)
    args.scenario = args.scenario or list(SCENARIOS)
    if min(args.seconds, args.timeout, args.rate) <= 0 or min(
            args.clients, args.join_processes, args.slowloris, args.login_clients,
            args.relay_targets) < 1:
        parser.error("times, rates and counts must be positive")
    args.deadline = clock() + args.timeout
    return args


def main() -> int:
    _common.printCore()
    args = parseOptions()
    _common.raiseFileLimit()
    _common.runBounded(lambda reactor: run(reactor, args), args, grace=15.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What the benchmark scripts share: result lines, options, a bounded
reactor run, bounded waits, profiling; a pair of reliable UDP sessions on
loopback; event objects and a pair of joined clients to ping-pong between;
the control channel and start of a child process; other processes' figures
from /proc.

Not part of the package. Every script in this folder imports this module
and nothing else of bench/ (nor of tests/, but for the NAT lab and the
fuzzing harness, which the tests own). Loading it imports only the standard
library and Twisted; whatever needs proud_twisted imports it where it is
used, so that a bare Twisted baseline process (``server_gc.py --serve
--bare``) can use the control channel without loading our package.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import functools
import io
import json
import os
import random
import shutil
import socket
import statistics
import struct
import sys
import tempfile
import time
import uuid

from twisted.internet import defer, protocol, stdio, task
from twisted.logger import LogLevel, formatEventAsClassicLogText, globalLogBeginner
from twisted.protocols.basic import LineReceiver

BENCH = os.path.dirname(os.path.abspath(__file__))
# Measure the checkout this folder belongs to, even where an older copy of the
# package is installed.
sys.path.insert(0, os.path.dirname(BENCH))

LOOPBACK = "127.0.0.1"
ENET_SOCKET_BUFFER = 256 * 1024
"""What ENet asks for as socket send and receive buffers (enet_host_create)."""
WINDOW_SAMPLE_INTERVAL = 0.01
STEP_WAIT = 10.0
"""At most this long for any one step of a client pair (a join, a leave, a direct path)."""
POLL = 0.002
WARMUP = 100
"""Round trips made, and not timed, before each timed block of a client pair."""
ATTACK_VERSION = uuid.UUID("0b8f5d2e-7c41-4a39-9e06-d3a1c57f2b94")
"""The protocol version of attacks.py and its child processes."""
ERRORS_PRINTED = 3
"""Error events a child process writes to stderr; it counts the rest."""
_INDEX = struct.Struct("!Q")
_HEADER = struct.Struct("!cIQ")     # kind, round/block, index
MESSAGE_HEADER_SIZE = _HEADER.size
"""The smallest L{message}."""

clock = time.perf_counter
"""Wall clock for the measurements (the reactor's clock drives the sessions)."""
cpuClock = time.process_time
"""This process's CPU time: wall time well above it means waiting (timers,
other processes), not work."""


def printCore() -> None:
    """Print whether the reliable-UDP core this run measures is compiled."""
    from proud_twisted import rudp
    implementation = ("compiled with mypyc" if rudp.COMPILED
                      else "pure Python (python setup.py build_ext --inplace compiles it)")
    print(f"reliable-UDP core: {implementation}", flush=True)


# result lines

def report(name: str, ours: float, baseline: float, unit: str, baselineName: str,
           goal: float | None = None, higherIsBetter: bool = True, note: str = "") -> float:
    """Print a result line ``name: ours=…, baseline=…, ratio=…`` and, with a
    ``goal``, whether the ratio meets it, then ``note``; return the ratio."""
    ratio = ours / baseline if baseline else float("inf")
    verdict = ""
    if goal is not None:
        met = ratio >= goal if higherIsBetter else ratio <= goal
        sign = ">=" if higherIsBetter else "<="
        verdict = f" (goal {sign} {goal:g}: {'met' if met else 'MISSED'})"
    print(f"{name}: ours={ours:,.1f} {unit}, baseline={baseline:,.1f} {unit} ({baselineName}),"
          f" ratio={ratio:.3f}{verdict}{note}")
    return ratio


def reportLimit(name: str, ours: float, baseline: float, unit: str, baselineName: str,
                limit: float, higherIsBetter: bool = False, note: str = "") -> bool:
    """Print a result line like L{report}'s, whose goal is on ``ours`` itself
    (at most, or with ``higherIsBetter`` at least, ``limit`` ``unit``) rather
    than on the ratio; whether the goal is met. The ratio reads ``n/a`` when
    the baseline is 0."""
    met = ours >= limit if higherIsBetter else ours <= limit
    sign = ">=" if higherIsBetter else "<="
    ratio = f"{ours / baseline:.3f}" if baseline else "n/a"
    print(f"{name}: ours={ours:,.1f} {unit}, baseline={baseline:,.1f} {unit} ({baselineName}),"
          f" ratio={ratio} (goal ours {sign} {limit:,g} {unit}: {'met' if met else 'MISSED'})"
          f"{note}")
    return met


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


median = statistics.median


def summarise(values: list[float]) -> tuple[float, float]:
    """(median, p99) of some samples."""
    return statistics.median(values), percentile(values, 0.99)


def ms(seconds: float | None, digits: int = 2) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:.{digits}f} ms"


def us(seconds: float, digits: int = 0) -> str:
    return f"{seconds * 1e6:.{digits}f} us"


def formatStats(stats) -> str:
    """One line of a `SessionStats`, times in milliseconds."""
    parts = []
    for key, value in dataclasses.asdict(stats).items():
        if isinstance(value, float) and key in ("srtt", "rttvar", "rto"):
            shown = f"{value * 1000:.3f}ms"
        elif isinstance(value, float):
            shown = f"{value:.4f}"
        else:
            shown = value
        parts.append(f"{key}={shown}")
    return " ".join(parts)


# options

def scriptParser(doc: str) -> argparse.ArgumentParser:
    """An option parser described by the first paragraph of a script's ``doc``."""
    return argparse.ArgumentParser(description=doc.split("\n\n", maxsplit=1)[0])


def addTimeout(parser: argparse.ArgumentParser, default: float) -> None:
    """``--timeout``: the bound on the whole run."""
    parser.add_argument("--timeout", type=float, default=default,
                        help=f"give up after this many seconds in all (default {default:g})")


def addProfile(parser: argparse.ArgumentParser, what: str) -> None:
    """``--profile`` (cProfile ``what``) and ``--profile-top``."""
    parser.add_argument("--profile", action="store_true", help=f"cProfile {what}")
    parser.add_argument("--profile-top", type=int, default=25,
                        help="functions listed per profile table (default 25)")


def addWaitQuiet(parser: argparse.ArgumentParser, when: str) -> None:
    """``--wait-quiet S``: ``when``, wait at most S seconds for a quiet
    machine (L{waitQuiet})."""
    parser.add_argument("--wait-quiet", type=float, default=0.0,
                        help=f"{when}, wait at most this many seconds until the machine's"
                             " other processes have used under 5 %% of its CPU for 4 s"
                             " (default 0: do not wait)")


def addGroupOptions(parser: argparse.ArgumentParser, clients: int, groupSize: str) -> None:
    """``--clients``, ``--group-size`` (members of ``groupSize``) and ``--no-encryption``."""
    parser.add_argument("--clients", type=int, default=clients,
                        help=f"joined clients (default {clients})")
    parser.add_argument("--group-size", type=int, default=20,
                        help=f"members of {groupSize} (default 20)")
    parser.add_argument("--no-encryption", action="store_true",
                        help="our server and clients without encryption")


def parseOptions(description: str, messages: int, size: int, timeout: float,
                 repeat: int) -> argparse.Namespace:
    """The options of the reliable UDP benchmarks, with their own defaults."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--messages", type=int, default=messages,
                        help=f"messages (or round trips) per measurement (default {messages})")
    parser.add_argument("--size", type=int, default=size,
                        help=f"message size in bytes (default {size})")
    addTimeout(parser, timeout)
    parser.add_argument("--repeat", type=int, default=repeat,
                        help="measure ours and the baseline this many times, alternating,"
                             f" and compare medians (default {repeat})")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument("--rcvbuf", type=int, default=ENET_SOCKET_BUFFER,
                        help="SO_RCVBUF/SO_SNDBUF for our UDP sockets, as ENet sets"
                             f" its own (default {ENET_SOCKET_BUFFER}); 0 keeps the OS default")
    parser.add_argument("--profile", action="store_true",
                        help="profile our session's part and print the top functions")
    args = parser.parse_args()
    if args.messages < 1 or args.repeat < 1 or args.timeout <= 0:
        parser.error("--messages and --repeat must be >= 1 and --timeout > 0")
    if args.size < _INDEX.size:
        parser.error(f"--size must be at least {_INDEX.size}")
    args.deadline = clock() + args.timeout
    return args


# running

class BenchFailure(Exception):
    """The benchmark cannot go on: an expected event is missing, or came wrong."""


def runBounded(main, args: argparse.Namespace, grace: float = 0.0) -> None:
    """Run ``main(reactor)`` (a coroutine or Deferred) on the global reactor,
    then exit: 0 when it finished, 1 with a ``gave up`` line if it raised
    L{BenchFailure} or a timeout, or had not finished ``grace`` seconds after
    ``args.deadline`` (its own bounded waits may end first, more precisely)."""

    def overrun(result, timeout):
        raise BenchFailure(f"not finished within --timeout {args.timeout:g} s")

    def gaveUp(failure):
        failure.trap(BenchFailure, defer.TimeoutError)
        raise SystemExit(f"gave up: {failure.getErrorMessage()}")

    def bounded(reactor):
        d = defer.ensureDeferred(main(reactor))
        return d.addTimeout(max(0.0, args.deadline - clock()) + grace, reactor,
                            onTimeoutCancel=overrun).addErrback(gaveUp)

    task.react(bounded)


def runUntilDeadline(run, args: argparse.Namespace, grace: float) -> int:
    """Run ``run(reactor, args)`` bounded by ``--timeout`` from now (see
    L{runBounded}); the exit status."""
    args.deadline = clock() + args.timeout
    runBounded(lambda reactor: run(reactor, args), args, grace)
    return 0


def runScript(doc: str, run, messages: int, size: int, timeout: float,
              repeat: int = 3) -> None:
    """A reliable UDP benchmark's command line: parse the options (defaults
    as given, description from ``doc``), run ``run(reactor, args, profile)``
    bounded by ``--timeout``, and print the profile if ``--profile`` asked
    for one."""
    printCore()
    args = parseOptions(doc.split("\n\n", maxsplit=1)[0], messages, size, timeout, repeat)
    profile = Profile(args.profile)

    async def main(reactor):
        await run(reactor, args, profile)
        profile.print()

    runBounded(main, args)


class Profile:
    """cProfile around our part of a benchmark, when ``--profile`` asks for it."""

    def __init__(self, enabled: bool) -> None:
        self._profile = None
        if enabled:
            import cProfile
            self._profile = cProfile.Profile()

    @property
    def enabled(self) -> bool:
        return self._profile is not None

    def start(self) -> None:
        if self._profile is not None:
            self._profile.enable()

    def stop(self) -> None:
        if self._profile is not None:
            self._profile.disable()

    def stats(self):
        """The profile's `pstats.Stats`."""
        import pstats
        return pstats.Stats(self._profile)

    def print(self, top: int = 30) -> None:
        if self._profile is None:
            return
        import pstats
        for sortKey in ("tottime", "cumulative"):
            out = io.StringIO()
            stats = pstats.Stats(self._profile, stream=out)
            stats.sort_stats(sortKey).print_stats(top)
            print(f"--- profile, by {sortKey} ---")
            print(out.getvalue())


NO_PROFILE = Profile(False)


class Budget:
    """The whole run's deadline; every wait is clamped to it."""

    def __init__(self, reactor, deadline: float) -> None:
        self.reactor = reactor
        self.deadline = deadline

    def left(self) -> float:
        return self.deadline - clock()

    async def wait(self, d: defer.Deferred, seconds: float, what: str):
        limit = max(0.0, min(seconds, self.left()))
        try:
            return await d.addTimeout(limit, self.reactor)
        except defer.TimeoutError:
            raise BenchFailure(f"timed out after {limit:.1f} s waiting for {what}") from None

    async def until(self, condition, seconds: float, what: str) -> None:
        """Poll C{condition()} every POLL seconds, a bounded number of times."""
        limit = max(0.0, min(seconds, self.left()))
        for _ in range(int(limit / POLL) + 2):
            if condition():
                return
            await task.deferLater(self.reactor, POLL, lambda: None)
        if not condition():
            raise BenchFailure(f"timed out after {limit:.1f} s waiting for {what}")


# payloads

def payload(index: int, filler: bytes) -> bytes:
    """Message ``index``: its number, then filler."""
    return _INDEX.pack(index) + filler


def payloadIndex(data: bytes) -> int:
    return _INDEX.unpack_from(data)[0]


def filler(size: int) -> bytes:
    """What follows the index in a message of ``size`` bytes."""
    return bytes(size - _INDEX.size)


class OrderedCounter:
    """Counts messages that must arrive as 0, 1, 2, ... with the same size,
    and fires ``done`` with the arrival time of the last one."""

    def __init__(self, count: int, size: int) -> None:
        self.count = count
        self.size = size
        self.received = 0
        self.done = defer.Deferred()

    def take(self, data: bytes) -> None:
        if self.done.called:
            return
        if len(data) != self.size or payloadIndex(data) != self.received:
            self.done.errback(AssertionError(
                f"message {self.received}: got index {payloadIndex(data)}, {len(data)} bytes"))
            return
        self.received += 1
        if self.received == self.count:
            self.done.callback(clock())


class Trickle:
    """Calls ``send(index)`` ``rate`` times a second for ``seconds``, paced
    every ``tick`` seconds by the reactor's clock (a late tick catches up);
    ``start()`` gives a Deferred of the number of calls made."""

    def __init__(self, reactor, rate: float, seconds: float, send, tick: float = 0.01) -> None:
        self.reactor = reactor
        self.rate, self.seconds, self.tick = rate, seconds, tick
        self.send = send
        self.sent = 0
        self.started = 0.0
        self.done = defer.Deferred()
        self._loop = task.LoopingCall(self._step)
        self._loop.clock = reactor

    def start(self) -> defer.Deferred:
        self.started = self.reactor.seconds()
        if self.rate <= 0 or self.seconds <= 0:
            self.done.callback(0)
        else:
            self._loop.start(self.tick, now=True)
        return self.done

    def _step(self) -> None:
        elapsed = min(self.seconds, self.reactor.seconds() - self.started)
        for _ in range(int(self.rate * elapsed) - self.sent):
            self.send(self.sent)
            self.sent += 1
        if elapsed >= self.seconds:
            self.stop()

    def stop(self) -> None:
        """Stop now (the Deferred fires with what was sent so far)."""
        if self._loop.running:
            self._loop.stop()
        if not self.done.called:
            self.done.callback(self.sent)


# the session over loopback UDP

class Lossy:
    """A transmit function that drops each datagram with probability ``loss``
    before handing the rest to ``transmit``; counts what it dropped."""

    def __init__(self, transmit, loss: float, rng: random.Random) -> None:
        self.transmit = transmit
        self.loss = loss
        self.random = rng.random
        self.dropped = 0

    def __call__(self, data: bytes) -> None:
        if self.random() < self.loss:
            self.dropped += 1
        else:
            self.transmit(data)


class SessionEndpoint(protocol.DatagramProtocol):
    """One UDP port on loopback with one `SessionDriver` talking to ``peer``."""

    def __init__(self, reactor, deliver, config, loss: float, rng: random.Random) -> None:
        from proud_twisted._glue.sessiondriver import SessionDriver
        self.peer = None
        self.afterDatagram = None
        self.link = Lossy(self._write, loss, rng)
        self.driver = SessionDriver(
            reactor, self.link if loss else self._write, deliver, config)

    def startProtocol(self) -> None:
        # The framework's own UDP write (see proud_twisted._glue.udpwrite).
        from proud_twisted._glue.udpwrite import datagramWriter
        self._send = datagramWriter(self.transport)

    def _write(self, data: bytes) -> None:
        self._send(data, self.peer)

    def datagramReceived(self, data: bytes, addr) -> None:
        self.driver.receiveDatagram(data)
        if self.afterDatagram is not None:
            self.afterDatagram()


def listen(reactor, datagramProtocol, bufferSize: int):
    port = reactor.listenUDP(0, datagramProtocol, interface=LOOPBACK)
    if bufferSize:
        for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            port.socket.setsockopt(socket.SOL_SOCKET, option, bufferSize)
    return port


def connectPair(reactor, a, b, bufferSize: int) -> list:
    """Listen on two loopback ports and point each protocol's ``peer`` at the other."""
    ports = [listen(reactor, a, bufferSize), listen(reactor, b, bufferSize)]
    a.peer = (LOOPBACK, ports[1].getHost().port)
    b.peer = (LOOPBACK, ports[0].getHost().port)
    return ports


def sessionConfig():
    """The sessions as the framework runs them (no CRC of their own: the
    framework seals every datagram, or relies on the UDP checksum)."""
    from proud_twisted._glue.sessiondriver import DEFAULT_SESSION_CONFIG
    return DEFAULT_SESSION_CONFIG


def sessionPair(reactor, deliverA, deliverB, args, loss: float = 0.0, config=None):
    """Two `SessionEndpoint`s on loopback; each drops what it sends with
    probability ``loss`` (separately seeded from ``args.seed``)."""
    config = config or sessionConfig()
    a = SessionEndpoint(reactor, deliverA, config, loss, random.Random(args.seed))
    b = SessionEndpoint(reactor, deliverB, config, loss, random.Random(args.seed + 1))
    return a, b, connectPair(reactor, a, b, args.rcvbuf)


async def closePorts(ports) -> None:
    for port in ports:
        await defer.maybeDeferred(port.stopListening)


async def closePair(a, b, ports) -> None:
    a.driver.close()
    b.driver.close()
    await closePorts(ports)


def onMessage(take):
    """A ``deliver`` callback handing each message's payload to ``take``."""
    from proud_twisted.rudp import MessageReceived

    def deliver(event) -> None:
        if type(event) is MessageReceived:
            take(event.payload)
    return deliver


@dataclasses.dataclass
class StreamResult:
    messages: int
    size: int
    seconds: float
    cpuSeconds: float
    sender: object
    """The sender's `SessionStats` at the end."""
    receiver: object
    dropped: int
    """Datagrams the loss emulation dropped (both directions)."""
    windows: list[int]
    """The sender's congestion window, sampled every `WINDOW_SAMPLE_INTERVAL`."""

    @property
    def messagesPerSecond(self) -> float:
        return self.messages / self.seconds

    @property
    def megabytesPerSecond(self) -> float:
        return self.messages * self.size / self.seconds / 1e6

    def describe(self, label: str) -> None:
        w = self.windows or [self.sender.window]
        lostInKernel = (self.sender.datagramsSent + self.receiver.datagramsSent - self.dropped
                        - self.sender.datagramsReceived - self.receiver.datagramsReceived)
        print(f"  {label}: {self.messages} x {self.size} B in {self.seconds:.3f} s"
              f" (CPU {self.cpuSeconds:.3f} s) = {self.messagesPerSecond:,.0f} msgs/s,"
              f" {self.megabytesPerSecond:.2f} MB/s")
        print(f"    window bytes: min={min(w)} mean={statistics.mean(w):.0f} max={max(w)}"
              f" end={self.sender.window} ({len(w)} samples);"
              f" emulated drops={self.dropped}, lost in the kernel or in flight={lostInKernel}")
        print(f"    sender stats:   {formatStats(self.sender)}")
        print(f"    receiver stats: {formatStats(self.receiver)}")


async def stream(reactor, args, count: int, size: int, loss: float = 0.0,
                 profile: Profile = NO_PROFILE, config=None) -> StreamResult:
    """Send ``count`` reliable messages of ``size`` bytes from one session to
    another over loopback, the sender keeping its send queue full
    (back-pressure), the receiver checking order; time first send to last
    delivery."""
    from proud_twisted.errors import SendQueueFull
    config = config or sessionConfig()
    body = filler(size)
    counter = OrderedCounter(count, size)
    a, b, ports = sessionPair(reactor, lambda event: None, onMessage(counter.take), args, loss,
                              config)
    session = a.driver.session
    sent = 0

    def refill() -> None:
        nonlocal sent
        room = config.maxSendQueueBytes - session.sendQueueBytes
        send = a.driver.send
        while sent < count and room >= size:
            try:
                send(payload(sent, body))
            except SendQueueFull:
                return
            sent += 1
            room -= size

    windows: list[int] = []
    sampler = task.LoopingCall(lambda: windows.append(a.driver.stats.window))
    sampler.clock = reactor
    a.afterDatagram = refill
    profile.start()
    start, cpuStart = clock(), cpuClock()
    sampler.start(WINDOW_SAMPLE_INTERVAL)
    refill()
    try:
        end = await counter.done
    finally:
        profile.stop()
        sampler.stop()
    result = StreamResult(count, size, end - start, cpuClock() - cpuStart,
                          a.driver.stats, b.driver.stats,
                          a.link.dropped + b.link.dropped, windows)
    await closePair(a, b, ports)
    return result


# event objects, and a pair of joined clients

def clientEvents(name: str):
    """A NetClientEvents whose handlers call the hooks a benchmark sets
    (``onJoin(member, group)``, ``onLeave(member, group)``,
    ``onMessage(sender, payload, context)``, ``onRelayState(peer, reason)``)
    and keep what a handler raised in ``failures``."""
    return _eventClasses()[0](name)


def serverEvents():
    """A NetServerEvents that calls ``onAckComplete(group, member, result)``
    when a benchmark sets it, and keeps what a handler raised in ``failures``."""
    return _eventClasses()[1]()


@functools.cache
def _eventClasses():
    from proud_twisted import NetClientEvents, NetServerEvents

    class Events(NetClientEvents):
        def __init__(self, name: str) -> None:
            self.name = name
            self.onJoin = self.onLeave = self.onMessage = self.onRelayState = None
            self.failures = []

        def onP2PMemberJoin(self, memberHostID, groupHostID, memberCount, message):
            if self.onJoin is not None:
                self.onJoin(memberHostID, groupHostID)

        def onP2PMemberLeave(self, memberHostID, groupHostID, memberCount):
            if self.onLeave is not None:
                self.onLeave(memberHostID, groupHostID)

        def onReceiveUserMessage(self, sender, payload, context):
            if self.onMessage is not None:
                self.onMessage(sender, payload, context)

        def onChangeP2PRelayState(self, peerHostID, reason):
            if self.onRelayState is not None:
                self.onRelayState(peerHostID, reason)

        def onException(self, failure):
            # The dispatcher swallows what a handler raises; keep it to fail the run.
            self.failures.append(failure)

    class ServerEvents(NetServerEvents):
        def __init__(self) -> None:
            self.onAckComplete = None
            self.failures = []

        def onP2PGroupJoinMemberAckComplete(self, groupHostID, memberHostID, result):
            if self.onAckComplete is not None:
                self.onAckComplete(groupHostID, memberHostID, result)

        def onException(self, failure):
            self.failures.append(failure)

    return Events, ServerEvents


async def disconnect(reactor, clients, linger: float, timeout: float) -> None:
    """Disconnect ``clients`` together, waiting at most ``timeout`` seconds;
    a failure is printed, not raised (a benchmark's cleanup: report, do not hide)."""
    leaving = [defer.maybeDeferred(client.disconnect, linger=linger) for client in clients]
    try:
        await defer.gatherResults(leaving, consumeErrors=True).addTimeout(timeout, reactor)
    except Exception as e:
        print(f"  (disconnect failed: {e!r})")


def clientEngine(client):
    """The private engine behind a NetClient: what a benchmark that goes past
    the game API (its connection, UDP port, peer table) reaches into."""
    return client._engine


def checkHandlers(events) -> None:
    """Fail the run if a handler of any of ``events`` raised."""
    for each in events:
        if each.failures:
            raise BenchFailure(f"an event handler raised: {each.failures[0].getTraceback()}")


class Setup:
    """Two joined clients A and B of one server, and their event objects."""

    def __init__(self, reactor, server, a, b, eventsA, eventsB, serverEvents, idA, idB):
        self.reactor = reactor
        self.server, self.a, self.b = server, a, b
        self.eventsA, self.eventsB, self.serverEvents = eventsA, eventsB, serverEvents
        self.idA, self.idB = idA, idB

    def checkHandlers(self) -> None:
        checkHandlers((self.eventsA, self.eventsB, self.serverEvents))

    def bothDirect(self) -> bool:
        return (not self.a.getPeerInfo(self.idB).relayed
                and not self.b.getPeerInfo(self.idA).relayed)

    def bothRelayed(self) -> bool:
        return self.a.getPeerInfo(self.idB).relayed and self.b.getPeerInfo(self.idA).relayed

    def staleFrames(self) -> int:
        """Relayed pair frames the clients dropped as not (or no longer) theirs
        (an internal counter, read for diagnosis only; 0 if it is not there)."""
        return sum(getattr(clientEngine(c).peerLinks, "staleFrames", 0) for c in (self.a, self.b))

    def hasPeers(self) -> bool:
        return self.idB in self.a.getPeerHostIDs() and self.idA in self.b.getPeerHostIDs()


def message(kind: bytes, block: int, index: int, size: int) -> bytes:
    """A pair's message of ``size`` bytes: its kind, round or block, and index."""
    head = _HEADER.pack(kind, block, index)
    return head + bytes(max(0, size - len(head)))


def parse(payload: bytes):
    """(kind, block, index) of a L{message}; Nones if it is too short for one."""
    if len(payload) < _HEADER.size:
        return None, None, None
    return _HEADER.unpack_from(payload)


class PingPong:
    """A sends message after message, each when the echo of the one before is back."""

    def __init__(self, count: int, warmup: int, block: int, size: int, send) -> None:
        self.count, self.warmup, self.block, self.size = count, warmup, block, size
        self.send = send
        self.times = []
        self.next = 0
        self.sentAt = 0.0
        self.done = defer.Deferred()

    def start(self) -> defer.Deferred:
        self._send()
        return self.done

    def _send(self) -> None:
        self.sentAt = clock()
        self.send(message(b"P", self.block, self.next, self.size))

    def echoed(self, payload: bytes) -> None:
        now = clock()
        if self.done.called:
            return
        kind, block, index = parse(payload)
        if kind != b"P" or block != self.block or index != self.next:
            self.done.errback(BenchFailure(
                f"echo {self.next}: got {kind!r} block {block} index {index}"))
            return
        if index >= self.warmup:
            self.times.append(now - self.sentAt)
        self.next += 1
        if self.next == self.warmup + self.count:
            self.done.callback(self.times)
        else:
            self._send()


async def pingPongOurs(setup: Setup, budget: Budget, block: int, count: int, size: int,
                       expectRelayed: bool) -> dict:
    """C{count} timed reliable round trips A -> B -> A, after L{WARMUP}
    untimed, on the path C{expectRelayed} says (checked)."""
    a, b, idA, idB = setup.a, setup.b, setup.idA, setup.idB
    wrongPath = [0, 0]      # deliveries whose context says the other path, at A, at B
    pp = PingPong(count, WARMUP, block, size, lambda data: a.send(idB, data))

    def receiveA(sender, payload, context):
        if sender == idB:
            if context.relayed != expectRelayed:
                wrongPath[0] += 1
            pp.echoed(payload)

    def receiveB(sender, payload, context):
        if sender == idA:
            if context.relayed != expectRelayed:
                wrongPath[1] += 1
            b.send(idA, payload)

    stats = setup.server.stats
    relayedBefore = stats.framesRelayed
    setup.eventsA.onMessage, setup.eventsB.onMessage = receiveA, receiveB
    try:
        times = await budget.wait(pp.start(), STEP_WAIT * 2,
                                  f"{count + WARMUP} {'relayed' if expectRelayed else 'direct'}"
                                  " round trips")
    finally:
        setup.eventsA.onMessage = setup.eventsB.onMessage = None
    setup.checkHandlers()
    stillOnPath = setup.bothRelayed() if expectRelayed else setup.bothDirect()
    if not stillOnPath:
        raise BenchFailure(f"the pair left the {'relayed' if expectRelayed else 'direct'}"
                           " path during the ping-pong")
    return {"times": times, "wrongPath": wrongPath,
            "framesRelayed": stats.framesRelayed - relayedBefore}


async def goDirect(setup: Setup, budget: Budget, what: str) -> None:
    a, b, idA, idB = setup.a, setup.b, setup.idA, setup.idB
    await budget.wait(defer.gatherResults([a.whenDirect(idB), b.whenDirect(idA)]),
                      STEP_WAIT, f"{what}: the pair to be direct")
    await budget.until(setup.bothDirect, STEP_WAIT, f"{what}: both sides to report direct")


# child processes: a command a line on stdin, a JSON line an answer on stdout

class JsonControl(LineReceiver):
    """A child's side: commands on stdin (``name arg ...``), a JSON line per
    answer on stdout.

    ``commands`` maps a name to a function of the string arguments returning
    a dict or a Deferred of one; ``quit`` (or stdin closing) stops the reactor.
    """

    delimiter = b"\n"

    def __init__(self, reactor) -> None:
        self.reactor = reactor
        self.commands = {}
        self.stopping = False

    def answer(self, reply: dict) -> None:
        self.sendLine(json.dumps(reply).encode())

    def lineReceived(self, line: bytes) -> None:
        name, *words = line.decode().split() or [""]
        if name == "quit":
            self.answer({"bye": True})
            self.reactor.callLater(0, self.stop)
            return
        command = self.commands.get(name)
        if command is None:
            self.answer({"error": f"unknown command {name!r}"})
            return
        defer.maybeDeferred(command, *words).addCallbacks(
            self.answer, lambda failure: self.answer(
                {"error": f"{name}: {failure.type.__name__}: {failure.getErrorMessage()}"}))

    def stop(self) -> None:
        if not self.stopping:
            self.stopping = True
            self.reactor.stop()

    def connectionLost(self, reason) -> None:
        self.stop()         # stdin closed: the bench process is done, or gone


class ChildProcess(protocol.ProcessProtocol):
    """The bench side of a child process: commands out, JSON answers in."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.buffer = b""
        self.answers = defer.DeferredQueue()
        self.exitCode = None
        self.ended = False
        self.endWaiters = []

    @classmethod
    def spawn(cls, reactor, label: str, script: str, *options) -> ChildProcess:
        """Start ``script`` (a file in this folder) with ``options``."""
        process = cls(label)
        command = [sys.executable, os.path.join(BENCH, script), *map(str, options)]
        reactor.spawnProcess(process, sys.executable, command, env=os.environ.copy(),
                             childFDs={0: "w", 1: "r", 2: 2})
        return process

    @classmethod
    def spawnCommand(cls, reactor, label: str, command: list, env: dict | None = None,
                     path: str | None = None) -> ChildProcess:
        """Start ``command`` (an argument list whose first item is the
        program), with ``env`` (default: this process's) in directory ``path``."""
        process = cls(label)
        command = [str(word) for word in command]
        reactor.spawnProcess(process, command[0], command,
                             env=os.environ.copy() if env is None else env, path=path,
                             childFDs={0: "w", 1: "r", 2: 2})
        return process

    def outReceived(self, data: bytes) -> None:
        *lines, self.buffer = (self.buffer + data).split(b"\n")
        for line in lines:
            if line.startswith(b"{"):
                self.answers.put(json.loads(line))

    def processEnded(self, reason) -> None:
        self.ended = True
        self.exitCode = getattr(reason.value, "exitCode", None)
        self.answers.put({"ended": self.exitCode})
        waiters, self.endWaiters = self.endWaiters, []
        for waiter in waiters:
            waiter.callback(None)

    def whenEnded(self) -> defer.Deferred:
        if self.ended:
            return defer.succeed(None)
        d = defer.Deferred()
        self.endWaiters.append(d)
        return d

    async def next(self, budget: Budget, what: str, seconds: float = 30.0) -> dict:
        answer = await budget.wait(self.answers.get(), seconds, f"{self.label}: {what}")
        if "ended" in answer:
            raise BenchFailure(f"{self.label}: the process exited (status"
                               f" {answer['ended']}) before {what}")
        if answer.get("error"):
            raise BenchFailure(f"{self.label}: {answer['error']}")
        if answer.get("failures"):
            raise BenchFailure(f"{self.label}: it reports {answer['failures'][0]}")
        return answer

    async def first(self, reactor, budget: Budget) -> dict:
        """Its first answer; stopped if that does not come."""
        try:
            return await self.next(budget, "its first answer")
        except BaseException:
            await self.stop(reactor)
            raise

    async def ask(self, budget: Budget, command: str) -> dict:
        if self.ended:
            raise BenchFailure(f"{self.label}: the process has exited"
                               f" (status {self.exitCode})")
        self.transport.write(command.encode() + b"\n")
        return await self.next(budget, f"the answer to {command!r}")

    async def stop(self, reactor) -> None:
        """Ask it to quit; kill it if it has not within a few seconds."""
        if self.ended:
            return
        try:
            self.transport.write(b"quit\n")
            self.transport.closeStdin()
            await self.whenEnded().addTimeout(3.0, reactor)
        except Exception:       # not gone in time (or stdin already closed)
            if not self.ended:
                self.transport.signalProcess("KILL")
                try:
                    await self.whenEnded().addTimeout(3.0, reactor)
                except defer.TimeoutError:
                    print(f"  ({self.label}: process {self.transport.pid} did not"
                          " end after SIGKILL)")


class LogCounter:
    """A child's log observer: counts events by level, writes the first few
    errors to stderr (an attack makes thousands of alike warnings)."""

    def __init__(self) -> None:
        self.levels = collections.Counter()
        self.printed = 0

    def __call__(self, event) -> None:
        level = event.get("log_level", LogLevel.info)
        self.levels[level.name] += 1
        if level in (LogLevel.error, LogLevel.critical) and self.printed < ERRORS_PRINTED:
            self.printed += 1
            text = formatEventAsClassicLogText(event) or ""
            sys.stderr.write(f"[{os.path.basename(sys.argv[0])}] {text[:2000]}")


def childParser(doc: str, joinsServer: bool = True) -> argparse.ArgumentParser:
    """The options every child of attacks.py takes (``--lifetime``), and
    those of a child that joins the server (``--port``, ``--key``) unless
    it is the server."""
    parser = scriptParser(doc)
    parser.add_argument("--lifetime", type=float, required=True,
                        help="stop after this many seconds whatever happens")
    if joinsServer:
        parser.add_argument("--port", type=int, required=True, help="the server's TCP port")
        parser.add_argument("--key", required=True, help="the server's public key (hex)")
    return parser


def runParsed(parser: argparse.ArgumentParser, setupFor) -> int:
    """Parse the command line and run the child ``setupFor(args)`` sets up."""
    args = parser.parse_args()
    return runChild(setupFor(args), args.lifetime)


def runChild(setup, lifetime: float) -> int:
    """Run a child: ``setup(reactor, log)`` (a coroutine) returns its first
    answer and its commands; the child stops after ``lifetime`` seconds
    whatever happens."""
    raiseFileLimit()
    from twisted.internet import reactor
    log = LogCounter()
    # Without an observer Twisted keeps the last 65,536 events in memory.
    globalLogBeginner.beginLoggingTo([log], redirectStandardIO=False)
    control = JsonControl(reactor)

    async def start():
        hello, control.commands = await setup(reactor, log)
        control.answer(hello)

    def started(_) -> None:
        stdio.StandardIO(control, reactor=reactor)
        defer.ensureDeferred(start()).addErrback(lambda failure: control.answer(
            {"error": f"start: {failure.type.__name__}: {failure.getErrorMessage()}"}))

    reactor.callWhenRunning(started, None)
    reactor.callLater(lifetime, control.stop)
    reactor.run()
    return 0


# another process, seen from outside (Linux /proc), and this one's limits

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def processRssBytes(pid: int) -> int | None:
    """The resident set size of process ``pid`` (VmRSS), None once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def processCpuSeconds(pid: int) -> float | None:
    """User plus system CPU seconds process ``pid`` has used, None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            # The command name (field 2) may hold spaces: count from its ")".
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def tcpExtCounters(*names: str) -> dict[str, int]:
    """The kernel's TcpExt counters ``names`` (e.g. ListenOverflows) from
    /proc/net/netstat; a counter it does not have is missing from the result."""
    try:
        with open("/proc/net/netstat") as netstat:
            lines = netstat.read().splitlines()
    except OSError:
        return {}
    for heads, values in zip(lines[::2], lines[1::2], strict=False):
        if heads.startswith("TcpExt:") and values.startswith("TcpExt:"):
            table = dict(zip(heads.split()[1:], values.split()[1:], strict=False))
            return {name: int(table[name]) for name in names if name in table}
    return {}


def openFilesLimit() -> int | None:
    """This process's limit of open files, None if there is none (or no way to know)."""
    try:
        import resource
    except ImportError:
        return None
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return None if soft == resource.RLIM_INFINITY else soft


def raiseFileLimit() -> int | None:
    """Raise this process's open-files limit to its hard limit; the new soft
    limit (None where there is no such limit)."""
    try:
        import resource
    except ImportError:
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return None if hard == resource.RLIM_INFINITY else hard


# bare Twisted UDP baselines, and the precise CPU time of another process

class BareUdpEcho(protocol.DatagramProtocol):
    """The least a UDP echo can do: each datagram goes back where it came from."""

    noisy = False

    def datagramReceived(self, data: bytes, addr) -> None:
        self.transport.write(data, addr)


class BareUdpForwarder(protocol.DatagramProtocol):
    """The least a UDP relay can do: what comes from one of ``ends`` (two
    addresses) goes to the other."""

    noisy = False

    def __init__(self, ends: tuple = ()) -> None:
        self.ends = tuple(ends)

    def datagramReceived(self, data: bytes, addr) -> None:
        first, second = self.ends
        self.transport.write(data, second if addr == first else first)


def processRunSeconds(pid: int) -> float | None:
    """CPU seconds the threads of process ``pid`` have run, to the
    nanosecond: the sum of /proc/<pid>/task/*/schedstat (the run time that
    /proc/<pid>/stat's utime + stime are scaled to, there in 10 ms ticks);
    L{processCpuSeconds} where schedstat is missing, None once it is gone."""
    if not os.path.exists(f"/proc/{pid}/schedstat"):
        return processCpuSeconds(pid)
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    total = 0
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as schedstat:
                total += int(schedstat.read().split()[0])
        except FileNotFoundError:
            continue            # a thread that ended meanwhile
        except (OSError, ValueError, IndexError):
            return processCpuSeconds(pid)
    return total / 1e9


def machineBusySeconds() -> float | None:
    """CPU seconds the whole machine has been busy (every CPU's user, nice,
    system, irq, softirq and steal time in /proc/stat, in 10 ms ticks); None
    where there is no /proc/stat. What other processes take during a
    measurement is this difference less that of the processes measured."""
    try:
        with open("/proc/stat") as stat:
            fields = stat.readline().split()
    except OSError:
        return None
    if fields[:1] != ["cpu"]:
        return None
    user, nice, system, _, _, irq, softirq, steal = (int(f) for f in fields[1:9])
    return (user + nice + system + irq + softirq + steal) / _CLOCK_TICKS


BUSY_MACHINE = 0.5
"""CPU seconds of other processes in a window below which it is not called disturbed
(/proc/stat counts 10 ms ticks)."""


class Machine:
    """What the whole machine did over a window beside our processes: the
    other processes' CPU (/proc/stat busy time less ours), to tell a
    measurement taken on a busy machine."""

    def __init__(self, pids) -> None:
        self.pids = list(pids)
        self.busy = machineBusySeconds()
        self.ours = self._ours()
        self.start = clock()

    def _ours(self) -> float:
        return (sum(processRunSeconds(pid) or 0.0 for pid in self.pids)
                + time.process_time())

    def others(self) -> tuple[float, float]:
        """(CPU seconds of other processes, core-seconds the window had)."""
        busy = machineBusySeconds()
        if busy is None or self.busy is None:
            return 0.0, 0.0
        return (max(0.0, busy - self.busy - (self._ours() - self.ours)),
                (clock() - self.start) * (os.cpu_count() or 1))

    def describe(self) -> str:
        others, available = self.others()
        text = f"other processes on the machine used {others:.1f} s of CPU meanwhile"
        if available and others > max(0.1 * available, BUSY_MACHINE):
            text += (f" ({others / available * 100:.0f} % of the {os.cpu_count()} cores:"
                     " NOT a quiet machine, figures disturbed)")
        return text


QUIET_SAMPLES = 4


async def waitQuiet(reactor, budget, seconds: float) -> None:
    """Wait, at most ``seconds``, until the machine has been under 5 % busy
    for QUIET_SAMPLES samples of a second in a row."""
    limit = max(0.0, min(seconds, budget.left()))
    quiet, busy, start = 0, machineBusySeconds(), clock()
    for _ in range(int(limit) + 1):
        await task.deferLater(reactor, 1.0, lambda: None)
        now = machineBusySeconds()
        if busy is None or now is None:
            return
        share = (now - busy) / (os.cpu_count() or 1)
        busy = now
        quiet = quiet + 1 if share < 0.05 else 0
        if quiet >= QUIET_SAMPLES:
            print(f"  the machine is quiet after {clock() - start:.0f} s", flush=True)
            return
    print(f"  the machine was not quiet within {limit:.0f} s: going on", flush=True)


class JoinClock:
    """Counts joins from a mark, and this process's CPU time at the mark, at
    the C{milestone}-th join and at the last join (scale.py's two servers)."""

    def __init__(self) -> None:
        self.mark()

    def mark(self, milestone: str = "0") -> dict:
        self.joins = 0
        self.milestone = int(milestone)
        self.cpuAtMark = time.process_time()
        self.cpuAtMilestone = self.cpuAtLastJoin = None
        return {"cpu": self.cpuAtMark}

    def joined(self) -> None:
        self.joins += 1
        now = time.process_time()
        if self.joins == self.milestone:
            self.cpuAtMilestone = now
        self.cpuAtLastJoin = now

    def figures(self) -> dict:
        return {"joins": self.joins, "cpu": time.process_time(),
                "cpuAtMark": self.cpuAtMark, "cpuAtMilestone": self.cpuAtMilestone,
                "cpuAtLastJoin": self.cpuAtLastJoin}


# server processes (twistd proudserver and the bare one) and their load processes

PROUDSERVER_EVENTS = "_scale_events.ScaleEvents"
"""The events ``twistd proudserver`` runs for scale.py and cluster.py."""
PROUDSERVER_VERSION = uuid.UUID("4d9a2c61-8e0f-4b73-a5d2-1c6e9f03b7a8")
"""Their protocol version."""
GROUPED_POLL = 0.5
"""Seconds between the polls of L{waitGrouped}."""


class ServerProcess:
    """A server process and its control channel."""

    def __init__(self, process: ChildProcess, hello: dict, workdir: str | None) -> None:
        self.process = process
        self.hello = hello
        self.pid = hello["pid"]
        self.workdir = workdir

    async def ask(self, budget, command: str) -> dict:
        return await self.process.ask(budget, command)

    def cpu(self) -> float:
        value = processRunSeconds(self.pid)
        if value is None:
            raise BenchFailure(f"{self.process.label}: the server process is gone")
        return value

    async def preciseCpu(self, budget) -> float:
        """The server's own CPU time (``time.process_time``, to the
        microsecond, where /proc counts 10 ms ticks), asked over the control
        channel."""
        return (await self.ask(budget, "cpu"))["cpu"]

    def rss(self) -> int:
        return processRssBytes(self.pid) or 0

    async def stop(self, reactor) -> None:
        await self.process.stop(reactor)
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)


def twistdCommand() -> list:
    """How to run this Python's twistd: the script next to the interpreter,
    else the function that script calls."""
    script = os.path.join(os.path.dirname(sys.executable), "twistd")
    if os.path.isfile(script):
        return [sys.executable, script]
    return [sys.executable, "-c",
            "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()"]


def twistdArguments(workdir: str, options=()) -> list:
    """``twistd``'s arguments for a ``proudserver`` on loopback (ports 0,
    L{PROUDSERVER_EVENTS}, its log and key file in ``workdir``) with more
    ``options`` of ``proudserver``."""
    return ["-n", "--logfile", os.path.join(workdir, "proudserver.log"), "--pidfile", "",
            "proudserver", "--tcp", "0", "--udp", "0", "--interface", LOOPBACK,
            "--events", PROUDSERVER_EVENTS, "--protocol-version", str(PROUDSERVER_VERSION),
            "--key-file", os.path.join(workdir, "proudserver.key"), *map(str, options)]


async def startProudserver(reactor, budget: Budget, label: str, options=(),
                           env: dict | None = None) -> ServerProcess:
    """``twistd -n proudserver`` (L{twistdArguments} with ``options``) in a
    temporary directory, ``bench/`` and this checkout on its PYTHONPATH and
    ``env`` added to its environment, once it has answered (its hello: ports,
    key, pid, package)."""
    workdir = tempfile.mkdtemp(prefix="proud-server-")
    root = os.path.dirname(BENCH)
    environment = os.environ.copy()
    environment["PYTHONPATH"] = os.pathsep.join(
        [BENCH, root] + ([environment["PYTHONPATH"]] if environment.get("PYTHONPATH") else []))
    environment["SCALE_LIFETIME"] = str(max(1.0, budget.left()) + 60.0)
    environment.update(env or {})
    process = ChildProcess.spawnCommand(reactor, label,
                                        twistdCommand() + twistdArguments(workdir, options),
                                        env=environment, path=workdir)
    try:
        hello = await process.first(reactor, budget)
    except BaseException:
        printLogTail(workdir)
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    wrong = wrongPackage(hello["package"], root)
    if wrong:
        await process.stop(reactor)
        shutil.rmtree(workdir, ignore_errors=True)
        raise BenchFailure(wrong)
    return ServerProcess(process, hello, workdir)


def wrongPackage(package: str, root: str) -> str:
    """Why the server's ``package`` is not this checkout's; empty if it is."""
    expected = os.path.join(root, "proud_twisted")
    if os.path.realpath(package) == os.path.realpath(expected):
        return ""
    return f"the server runs {package}, not this checkout's {expected}"


def printLogTail(workdir: str, lines: int = 20) -> None:
    try:
        with open(os.path.join(workdir, "proudserver.log")) as log:
            tail = log.readlines()[-lines:]
    except OSError:
        return
    print("  the server's log ends:")
    for line in tail:
        print("    " + line.rstrip())


def loadOptions(server: ServerProcess) -> list:
    """The options of a ``_scale_load.py`` process joining ``server``."""
    return ["--port", server.hello["tcpPort"], "--key", server.hello["key"],
            "--version", PROUDSERVER_VERSION]


def shares(total: int, parts: int) -> list:
    """``total`` split into at most ``parts`` near-equal positive parts."""
    return [n for n in (total // parts + (i < total % parts) for i in range(parts)) if n]


async def firstAnswers(reactor, budget: Budget, processes: list, what: str,
                       seconds: float = 60.0) -> list:
    """Each process's first answer; all of them stopped if one does not come."""
    try:
        return [await process.next(budget, what, seconds=seconds) for process in processes]
    except BaseException:
        await stopAll(reactor, processes)
        raise


async def stopAll(reactor, processes) -> None:
    await defer.gatherResults([defer.ensureDeferred(p.stop(reactor)) for p in processes],
                              consumeErrors=True)


async def askAll(budget, processes, command: str, seconds: float = 30.0) -> list:
    """Send ``command`` to every process in one go; their answers."""
    for process in processes:
        if process.ended:
            raise BenchFailure(f"{process.label}: the process has exited"
                               f" (status {process.exitCode})")
        process.transport.write(command.encode() + b"\n")
    return await defer.gatherResults(
        [defer.ensureDeferred(p.next(budget, f"the answer to {command!r}", seconds))
         for p in processes], consumeErrors=True)


async def waitGrouped(reactor, budget: Budget, servers: list, loads: list, bare: bool,
                      seconds: float) -> list:
    """Poll, at most ``seconds``, until every client still joined (to any of
    ``servers``) is confirmed over UDP and holds every peer entry of the
    servers' groups (ours: and every join is acknowledged); the servers'
    last statuses."""
    limit = max(0.0, min(seconds, budget.left()))
    end = clock() + limit
    detail = ""
    for _ in range(int(limit / GROUPED_POLL) + 2):
        statuses = [await server.ask(budget, "status") for server in servers]
        readies = await askAll(budget, loads, "ready")
        present = sum(r["present"] for r in readies)
        confirmed = sum(r["confirmed"] for r in readies)
        peers = sum(r["peerEntries"] for r in readies)
        for r in readies:
            if r.get("exceptions"):
                raise BenchFailure(f"a client's event handler raised: {r['exceptions'][0]}")
        for status in statuses:
            if status.get("exceptions"):
                raise BenchFailure(f"the server's events raised: {status['exceptions'][0]}")
        acked = sum(s["udp"] if bare else s["acked"] + sum(s["ackFailures"].values())
                    for s in statuses)
        clients = sum(s["clients"] for s in statuses)
        entries = sum(s["peerEntries"] for s in statuses)
        if clients == present == confirmed and peers == entries and acked >= present:
            return statuses
        detail = (f"servers: {clients} clients, {sum(s['groups'] for s in statuses)} groups,"
                  f" {acked} {'UDP addresses' if bare else 'join acks'};"
                  f" clients: {present} joined, {confirmed} UDP confirmed,"
                  f" {peers:,} of {entries:,} peer entries")
        if clock() >= end:
            break
        await task.deferLater(reactor, GROUPED_POLL, lambda: None)
    raise BenchFailure(f"timed out after {limit:.0f} s waiting for the clients to be"
                       f" grouped: {detail}")

"""Shared pieces of the benchmarks: options, result lines, a bounded reactor
run, optional profiling, and a pair of reliable UDP sessions on loopback.

Not part of the package; the scripts next to this file import it directly.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import io
import os
import pstats
import random
import socket
import statistics
import struct
import sys
import time

from twisted.internet import defer, task
from twisted.internet.protocol import DatagramProtocol

# Measure the checkout this folder belongs to, even where an older copy of the
# package is installed.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from proud_twisted._glue.udpwrite import datagramWriter  # noqa: E402
from proud_twisted.errors import SendQueueFull  # noqa: E402
from proud_twisted.rudp import MessageReceived, SessionConfig  # noqa: E402
# The sessions as the framework runs them (no CRC of their own: the framework
# seals every datagram, or relies on the UDP checksum).
from proud_twisted._glue.sessiondriver import DEFAULT_SESSION_CONFIG  # noqa: E402
from proud_twisted import rudp  # noqa: E402

IMPLEMENTATION = ("compiled with mypyc" if rudp.COMPILED
                  else "pure Python (python setup.py build_ext --inplace compiles it)")
print(f"reliable-UDP core: {IMPLEMENTATION}", flush=True)
from proud_twisted._glue.sessiondriver import SessionDriver  # noqa: E402

LOOPBACK = "127.0.0.1"
ENET_SOCKET_BUFFER = 256 * 1024
"""What ENet asks for as socket send and receive buffers (enet_host_create)."""
WINDOW_SAMPLE_INTERVAL = 0.01
_INDEX = struct.Struct("!Q")

clock = time.perf_counter
"""Wall clock for the measurements (the reactor's clock drives the sessions)."""
cpuClock = time.process_time
"""This process's CPU time: wall time well above it means waiting (timers,
other processes), not work."""


# options and output

def parseOptions(description: str, messages: int, size: int, timeout: float,
                 repeat: int) -> argparse.Namespace:
    """The options every benchmark takes, with its own defaults."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--messages", type=int, default=messages,
                        help=f"messages (or round trips) per measurement (default {messages})")
    parser.add_argument("--size", type=int, default=size,
                        help=f"message size in bytes (default {size})")
    parser.add_argument("--timeout", type=float, default=timeout,
                        help=f"give up after this many seconds in all (default {timeout:g})")
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


def report(name: str, ours: float, baseline: float, unit: str, baselineName: str,
           goal: float | None = None, higherIsBetter: bool = True) -> float:
    """Print a result line ``name: ours=…, baseline=…, ratio=…`` and, with a
    ``goal``, whether the ratio meets it; return the ratio."""
    ratio = ours / baseline if baseline else float("inf")
    verdict = ""
    if goal is not None:
        met = ratio >= goal if higherIsBetter else ratio <= goal
        sign = ">=" if higherIsBetter else "<="
        verdict = f" (goal {sign} {goal:g}: {'met' if met else 'MISSED'})"
    print(f"{name}: ours={ours:,.1f} {unit}, baseline={baseline:,.1f} {unit} ({baselineName}),"
          f" ratio={ratio:.3f}{verdict}")
    return ratio


def formatStats(stats) -> str:
    """One line of a `SessionStats`, times in milliseconds."""
    parts = []
    for key, value in dataclasses.asdict(stats).items():
        if isinstance(value, float) and key in ("srtt", "rttvar", "rto"):
            value = f"{value * 1000:.3f}ms"
        elif isinstance(value, float):
            value = f"{value:.4f}"
        parts.append(f"{key}={value}")
    return " ".join(parts)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def median(values: list[float]) -> float:
    return statistics.median(values)


def summarise(values: list[float]) -> tuple[float, float]:
    """(median, p99) of some samples."""
    return statistics.median(values), percentile(values, 0.99)


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


def runScript(doc: str, run, messages: int, size: int, timeout: float,
              repeat: int = 3) -> None:
    """A benchmark's command line: parse the options (defaults as given,
    description from ``doc``), run ``run(reactor, args, profile)`` bounded by
    ``--timeout``, and print the profile if ``--profile`` asked for one."""
    args = parseOptions(doc.split("\n\n")[0], messages, size, timeout, repeat)
    profile = Profile(args.profile)

    async def main(reactor):
        await run(reactor, args, profile)
        profile.print()

    runBounded(main, args)


class Profile:
    """cProfile around our session's part, when ``--profile`` asks for it."""

    def __init__(self, enabled: bool) -> None:
        self._profile = cProfile.Profile() if enabled else None

    def start(self) -> None:
        if self._profile is not None:
            self._profile.enable()

    def stop(self) -> None:
        if self._profile is not None:
            self._profile.disable()

    def print(self, top: int = 30) -> None:
        if self._profile is None:
            return
        for sortKey in ("tottime", "cumulative"):
            out = io.StringIO()
            stats = pstats.Stats(self._profile, stream=out)
            stats.sort_stats(sortKey).print_stats(top)
            print(f"--- profile, by {sortKey} ---")
            print(out.getvalue())


NO_PROFILE = Profile(False)


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


class SessionEndpoint(DatagramProtocol):
    """One UDP port on loopback with one `SessionDriver` talking to ``peer``."""

    def __init__(self, reactor, deliver, config: SessionConfig, loss: float,
                 rng: random.Random) -> None:
        self.peer = None
        self.afterDatagram = None
        self.link = Lossy(self._write, loss, rng)
        self.driver = SessionDriver(
            reactor, self.link if loss else self._write, deliver, config)

    def startProtocol(self) -> None:
        # The framework's own UDP write (see proud_twisted._glue.udpwrite).
        self._send = datagramWriter(self.transport)

    def _write(self, data: bytes) -> None:
        self._send(data, self.peer)

    def datagramReceived(self, data: bytes, addr) -> None:
        self.driver.receiveDatagram(data)
        if self.afterDatagram is not None:
            self.afterDatagram()


def listen(reactor, protocol, bufferSize: int):
    port = reactor.listenUDP(0, protocol, interface=LOOPBACK)
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


def sessionPair(reactor, deliverA, deliverB, args, loss: float = 0.0,
                config: SessionConfig = DEFAULT_SESSION_CONFIG):
    """Two `SessionEndpoint`s on loopback; each drops what it sends with
    probability ``loss`` (separately seeded from ``args.seed``)."""
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
                 profile: Profile = NO_PROFILE,
                 config: SessionConfig = DEFAULT_SESSION_CONFIG) -> StreamResult:
    """Send ``count`` reliable messages of ``size`` bytes from one session to
    another over loopback, the sender keeping its send queue full
    (back-pressure), the receiver checking order; time first send to last
    delivery."""
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


# another process, seen from outside (Linux /proc)

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
    for heads, values in zip(lines[::2], lines[1::2]):
        if heads.startswith("TcpExt:") and values.startswith("TcpExt:"):
            table = dict(zip(heads.split()[1:], values.split()[1:]))
            return {name: int(table[name]) for name in names if name in table}
    return {}


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

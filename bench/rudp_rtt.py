"""Round trip of a 64-byte reliable message over loopback UDP through our
session (A sends, B echoes reliably, A times it; one at a time) against a
bare Twisted DatagramProtocol ping-pong in the same run.  Goal: median
ours/bare <= 1.5.

    python bench/rudp_rtt.py [--messages 2000] [--size 64] [--repeat 3]
"""

from __future__ import annotations

from twisted.internet.protocol import DatagramProtocol

import _common

GOAL = 1.5
WARMUP_ROUND_TRIPS = 100
"""Round trips made, and not timed, before each measurement."""


class PingPong:
    """Sends message after message through ``send``, each once the echo of
    the one before has come back (``echoed``); fires ``done`` with the round
    trip times in seconds."""

    def __init__(self, count: int, size: int, warmup: int) -> None:
        self.counter = _common.OrderedCounter(warmup + count, size)
        self.warmup = warmup
        self.times: list[float] = []
        self.body = _common.filler(size)
        self.send = None
        self._sentAt = 0.0

    def start(self, send):
        self.send = send
        self._next()
        return self.counter.done.addCallback(lambda _: self.times)

    def _next(self) -> None:
        self._sentAt = _common.clock()
        self.send(_common.payload(self.counter.received, self.body))

    def echoed(self, data: bytes) -> None:
        elapsed = _common.clock() - self._sentAt
        self.counter.take(data)
        if self.counter.received > self.warmup:
            self.times.append(elapsed)
        if not self.counter.done.called:
            self._next()


class Echo(DatagramProtocol):
    def datagramReceived(self, data: bytes, addr) -> None:
        self.transport.write(data, addr)


class Pinger(DatagramProtocol):
    def __init__(self, pingPong: PingPong) -> None:
        self.pingPong = pingPong

    def datagramReceived(self, data: bytes, addr) -> None:
        self.pingPong.echoed(data)


async def bare(reactor, args) -> list[float]:
    pingPong = PingPong(args.messages, args.size, WARMUP_ROUND_TRIPS)
    pinger = Pinger(pingPong)
    ports = _common.connectPair(reactor, pinger, Echo(), args.rcvbuf)
    try:
        return await pingPong.start(lambda data: pinger.transport.write(data, pinger.peer))
    finally:
        await _common.closePorts(ports)


async def ours(reactor, args, profile: _common.Profile) -> tuple[list[float], object]:
    pingPong = PingPong(args.messages, args.size, WARMUP_ROUND_TRIPS)
    a, b, ports = _common.sessionPair(reactor, _common.onMessage(pingPong.echoed), None, args)
    b.driver.deliver = _common.onMessage(b.driver.send)
    profile.start()
    try:
        times = await pingPong.start(a.driver.send)
    finally:
        profile.stop()
    stats = a.driver.stats, b.driver.stats
    await _common.closePair(a, b, ports)
    return times, stats


def microseconds(times: list[float]) -> str:
    med, p99 = _common.summarise(times)
    return f"median {med * 1e6:.1f} us, p99 {p99 * 1e6:.1f} us"


async def run(reactor, args, profile) -> None:
    print(f"round trips of a {args.size} B message over loopback UDP, {args.messages}"
          f" timed (after {WARMUP_ROUND_TRIPS} untimed) per run, {args.repeat} runs each")
    allOurs, allBare = [], []
    for i in range(1, args.repeat + 1):
        bareTimes = await bare(reactor, args)
        ourTimes, (statsA, statsB) = await ours(reactor, args, profile)
        print(f"  run #{i}: bare {microseconds(bareTimes)}; ours {microseconds(ourTimes)}")
        print(f"    A stats: {_common.formatStats(statsA)}")
        print(f"    B stats: {_common.formatStats(statsB)}")
        allBare += bareTimes
        allOurs += ourTimes
    (oursMedian, oursP99), (bareMedian, bareP99) = (
        _common.summarise(allOurs), _common.summarise(allBare))
    baseline = "bare Twisted UDP echo"
    _common.report("round trip p99 (information)", oursP99 * 1e6, bareP99 * 1e6, "us",
                   baseline)
    _common.report("round trip median", oursMedian * 1e6, bareMedian * 1e6, "us",
                   baseline, GOAL, higherIsBetter=False)


if __name__ == "__main__":
    _common.runScript(__doc__, run, messages=2000, size=64, timeout=120.0)

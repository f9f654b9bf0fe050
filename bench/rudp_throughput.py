"""Reliable ordered throughput of 1 KiB messages over loopback UDP: our
session (two SessionDrivers on two Twisted UDP ports) against ENet (pyenet),
same messages, same process, one after the other.  Goal: ours/ENet >= 0.5.

    python bench/rudp_throughput.py [--messages 20000] [--size 1024] [--repeat 3] [--profile]
"""

from __future__ import annotations

import enet

import _common
from proud_twisted.rudp import SessionConfig  # after _common: this checkout's package

GOAL = 0.5
CONNECT_TIMEOUT = 5.0
WARMUP_MESSAGES = 2000
"""Sent once through each, unmeasured, before the measured runs."""


def serviceAll(host, onReceive=None) -> None:
    """Let an ENet host send and receive until it has no event left (each
    call handles what is already queued; none blocks)."""
    event = host.service(0)
    while event.type != enet.EVENT_TYPE_NONE:
        if event.type == enet.EVENT_TYPE_RECEIVE and onReceive is not None:
            onReceive(event.packet.data)
        event = host.service(0)


def enetStream(args, count: int) -> tuple[float, float]:
    """ENet's seconds (wall, CPU) from first send to last delivery for the
    same stream, with as many bytes outstanding as our session's send queue
    holds."""
    size = args.size
    address = _common.LOOPBACK.encode()
    server = enet.Host(enet.Address(address, 0), 1, 1, 0, 0)
    client = enet.Host(None, 1, 1, 0, 0)
    peer = client.connect(enet.Address(address, server.address.port), 1, 0)
    deadline = min(args.deadline, _common.clock() + CONNECT_TIMEOUT)
    while peer.state != enet.PEER_STATE_CONNECTED and _common.clock() < deadline:
        serviceAll(client)
        serviceAll(server)
    if peer.state != enet.PEER_STATE_CONNECTED:
        raise RuntimeError("ENet: no connection on loopback")
    body = _common.filler(size)
    counter = _common.OrderedCounter(count, size)
    outstanding = SessionConfig().maxSendQueueBytes // size
    flags = enet.PACKET_FLAG_RELIABLE
    sent = 0
    start, cpuStart = _common.clock(), _common.cpuClock()
    while not counter.done.called and _common.clock() < args.deadline:
        while sent < count and sent - counter.received < outstanding:
            peer.send(0, enet.Packet(_common.payload(sent, body), flags))
            sent += 1
        serviceAll(client)
        serviceAll(server, counter.take)
    peer.disconnect_now(0)
    if not counter.done.called:
        raise RuntimeError(f"ENet: only {counter.received} of {count} messages in time")
    outcome = []
    counter.done.addBoth(outcome.append)
    if not isinstance(outcome[0], float):
        outcome[0].raiseException()
    return outcome[0] - start, _common.cpuClock() - cpuStart


async def run(reactor, args, profile) -> None:
    count, size = args.messages, args.size
    print(f"throughput of {count} reliable ordered messages of {size} B"
          f" over loopback UDP, {args.repeat} times each, after a warm-up")
    warmup = min(count, WARMUP_MESSAGES)
    enetStream(args, warmup)
    await _common.stream(reactor, args, warmup, size)
    ours, theirs, oursCpu, theirsCpu = [], [], [], []
    for i in range(1, args.repeat + 1):
        enetSeconds, enetCpu = enetStream(args, count)
        result = await _common.stream(reactor, args, count, size, profile=profile)
        result.describe(f"ours #{i}")
        ours.append(result.messagesPerSecond)
        theirs.append(count / enetSeconds)
        oursCpu.append(count / result.cpuSeconds)
        theirsCpu.append(count / enetCpu)
        print(f"  ENet #{i}: {enetSeconds:.3f} s (CPU {enetCpu:.3f} s) ="
              f" {theirs[-1]:,.0f} msgs/s, {theirs[-1] * size / 1e6:.2f} MB/s;"
              f" ours/ENet = {ours[-1] / theirs[-1]:.3f}")
    median = _common.median
    print(f"medians: ours {median(ours):,.0f} msgs/s, ENet {median(theirs):,.0f} msgs/s")
    _common.report("messages per CPU second (information)", median(oursCpu),
                   median(theirsCpu), "msgs/s", "ENet")
    _common.report("throughput", median(ours) * size / 1e6, median(theirs) * size / 1e6,
                   "MB/s", "ENet", GOAL)


if __name__ == "__main__":
    _common.runScript(__doc__, run, messages=20000, size=1024, timeout=120.0)

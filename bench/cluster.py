"""The cluster (issue #18): a cross-process message round trip through
Redis against a bare Redis pub/sub round trip with the same client library,
and the clients two server processes hold at a fixed CPU budget against
those one holds; beside them (information) the CPU a frame crossing servers
costs.

**The round trip.** This process runs a cluster server (a NetServer with a
Cluster) and a child process (_cluster_echo.py) another one that sends every
cluster message back to its sender: a round trip is
``cluster.send("echo", payload)`` here, the echo's ``onClusterMessage`` and
``cluster.send`` back, and this server's ``onClusterMessage``, one message
in flight. The baseline, in the same layout: bare txredisapi protocols
publish on a channel, the child's bare subscriber publishes each message
back on another, this process's bare subscriber receives it. Both sides run
their own redis-server (no persistence, loopback) started by this script.
``--round-trips`` timed ones after 100 untimed, alternated ``--repeat``
times; medians and p99 over all runs, and this process's CPU time per round
trip (information). Goal: the cluster's median at most 1.5 x the bare one.
The bare protocols are txredisapi's defaults (hiredis-based when hiredis is
installed, as it is with the cluster).

**A frame crossing servers** (information). In this process, ``--frames``
frames (``FRAMES_PER_TURN`` a reactor turn) of ``--size`` bytes go through
one Redis between two of the cluster's links: encoded as the cluster's
frame envelope, published with ``RedisLink.publishQuietly``, handed over by
the other link's subscriber and decoded. The baseline: the same bytes, no
envelope, through txredisapi's default protocol's ``PUBLISH`` and its
subscriber's ``messageReceived``. The CPU, from the first publication until
every frame is received and every reply read, per frame; medians of
``--repeat`` runs alternated. Beside it, the same frames straight over UDP
(a pair session's frames go that way between servers that answer each
other's probes): each turn's frames sealed together by one server's
``DirectPaths``, as the cluster seals the frames of one client's relay
request (a message to 20 players of the other server), written on one
loopback UDP port, read on another and opened by the other server's
``DirectPaths``; the baseline writes and reads the bare bytes, a datagram
each, on the same Twisted ports.

**Clients at a fixed CPU budget.** Two layouts, each on fresh processes:

- one process: ``twistd -n proudserver`` (no cluster: what a game would run
  alone) holding ``--clients`` (1,000) NetClients;
- two processes: two ``twistd -n proudserver --cluster redis://...
  --server-id bench-0|1 --advertise 127.0.0.1`` on a redis-server this
  script starts, each holding ``--clients`` NetClients (2,000 in all).

Each process holds as many clients as the lone one, so that both layouts
are measured at the same load per process (a server's CPU per client falls
as its load grows: more datagrams per reactor wake-up), and the difference
is what the cluster costs. The servers run production's service (the
``_scale_events.ScaleEvents`` events of scale.py, encryption on, gc
freeze); the clients are scale.py's load processes (``_scale_load.py``,
``--load-processes`` per server). Once all have joined, the script puts
them into relay-only P2P groups of ``--group-size`` (10) through the
events' ``group`` command: with two processes, ``--cross-share`` (20 %) of
the groups take half their members from each process (owned by each in
turn), so that about 20 % x 5/9 = 11 % of the relayed frames cross between
the processes: straight over UDP once the servers' direct paths are up
(the servers run with the defaults), else through Redis; every other group
holds clients of one process. Then, for ``--hold`` seconds (20), every
client sends ``--rate`` (1) reliable 32-byte message a second, each to the
next of its peers, through the relay; each server's CPU over the window
(/proc schedstat) divided by its clients and the window's length is its CPU
per client-second (keepalives, the once-a-second sweep and, with a cluster, its
heartbeats included). The layouts alternate ``--hold-repeat`` (3) times;
the medians make the figure.

A process holds ``B / (CPU per client-second)`` clients at a budget of
``B`` cores (``--cpu-budget``, half a core: a linear extrapolation from
the measured load, the same for both layouts, so the ratio does not depend
on B). The result line reads: the clients two cluster processes hold at B
each against those one process holds at B; goal at least 1.8. Redis's CPU,
the frames crossing (``cluster.stats.framesOut``, and of them those sent
straight, ``framesDirect``) and each
window's other processes on the machine (a 2-core machine: the load
processes share it with the servers, hence CPU time, not wall time) print
beside it. The bare Twisted server of scale.py is not run here: it has no
cluster, and scale.py already compares our server's CPU per relayed frame
with it.

``--profile`` profiles the last server of each layout over its windows
(that run's figures are then not the ones to quote); ``--wait-quiet S``
first waits, at most S seconds, for the machine to be quiet.

Measured (2 cores, pure-Python core, other helpers' test suites on the
machine meanwhile), two default runs: round trip 1.18 and 1.24; clients at
the budget 1.456 and 1.277 (MISSED): one process 63.2 and 56.4 us per
client-second, two cluster processes 87.2/86.5 and 89.5/87.0 us, the
control 62.3/65.8 and 58.2/58.2 us (1.977 and 1.937); 455 and 490 frames a
second crossed through Redis (11.4 and 11.9 % of those relayed), none
dropped, none lost; Redis 0.5 % of a core. With ``--cross-share 0``: 2.073,
control 2.139. Compiled core, quiet machine, after the subscriber reads a
burst in one call (eight runs, some with ``--no-control --hold-repeat 1``):
1.12 to 1.89, median 1.4 (MISSED); the two layouts' CPU per client-second
moved with the machine's state between runs (one process 42 to 70 us, two
cluster processes 54 to 101 us). After one watchdog replaced a timer per
Redis command, two full runs: 1.665 and 1.642 (MISSED; one process 61.3
and 53.2 us per client-second, two cluster processes 74.2/73.0 and
64.6/65.1 us, the control 53.3/54.8 and 52.4/53.3 us).

After hiredis parses and encodes and relayed frames are published without
a Deferred (compiled core; each run on whatever the machine was doing):
a frame crossing servers 4.6 to 8.0 us of CPU against 8.7 to 17.4 bare
(0.35 to 0.59); round trip 1.13 to 1.18 (the bare side now parses with
hiredis too: it was 0.87 to 0.99 against txredisapi's Python parser). Clients
at the budget, twelve runs: 1.48 to 2.13, median 1.72 (met in 3 of 12,
MISSED), two cluster processes 0.80 to 0.97 of the control, median 0.89
(0.74 to 0.81 before); the control itself 1.66 to 2.41, so the figure
moves with it. Six of the runs with the defaults above (medians of three
windows): 1.737, 1.484, 1.845, 1.612, 2.129, 1.706 (control 2.055, 1.831,
2.097, 1.701, 2.414, 2.048; against it 0.845, 0.811, 0.880, 0.948, 0.882,
0.833). With ``--clients 3000`` (more frames cross per reactor turn, each
costing less): 1.97, 2.26 and 1.51 (0.94, 0.99 and 0.91 of the control).
What the crossing frames cost: docs/cluster.rst, "What a second process
buys".

With direct paths between the servers (the crossing frames go straight over
UDP; compiled core, 2 cores, 2026-12-05), seventeen runs: 1.909, 1.750,
1.884, 1.863 (``--frames 0 --round-trips 200 --repeat 1``), 2.012, 1.840,
1.793, 2.374, 1.983 (defaults), 1.698, 1.506, 1.956 (alternated with three
of the build before, through Redis: 1.566, 1.982, 1.979), 1.591, 1.833,
2.061, 1.913, 2.087 (defaults, frames of one request sealed together):
median 1.884, met in 12 (two cluster processes 0.72 to 1.09 of the
control, median 0.93; the build before 0.76 to 0.85 in the alternated
runs). ``--hold-repeat 5``: 2.253, 2.069, 1.960 (0.970, 0.815 and 0.781
of the control). A frame straight over UDP, 20 a request: 1.8 us of CPU
against 6.4 for bare Twisted UDP ports.

    python bench/cluster.py [--round-trips 2000] [--size 64] [--repeat 3]
        [--clients 1000] [--group-size 10] [--rate 1] [--hold 20]
        [--hold-repeat 3] [--cross-share 0.2] [--cpu-budget 0.5] [--frames 20000]
        [--load-processes 1] [--wait-quiet S] [--profile] [--timeout 300] [--quick]
"""

from __future__ import annotations

import dataclasses
import math

from twisted.internet import defer, task

from _cluster_echo import PING, PONG, bareConnection
from _common import (
    LOOPBACK,
    BenchFailure,
    Budget,
    ChildProcess,
    Machine,
    addProfile,
    addTimeout,
    addWaitQuiet,
    askAll,
    clock,
    cpuClock,
    firstAnswers,
    loadOptions,
    median,
    processRunSeconds,
    report,
    runUntilDeadline,
    scriptParser,
    shares,
    startProudserver,
    stopAll,
    summarise,
    us,
    waitGrouped,
    waitQuiet,
)
from tests.redisserver import RedisServer

WARMUP = 100
FRAMES = "bench:frames"
FRAMES_PER_TURN = 20
"""Frames sent a reactor turn in the frame-cost figure (a server relays
the frames of a batch of datagrams in one turn)."""
JOIN_TIMEOUT = 40.0
"""The load processes' join timeout: as scale.py's STORM_JOIN_TIMEOUT, the
load processes share the 2 cores with the servers."""
GROUP_RETRIES = 40
"""Tries of a group whose members' server is not known yet, POLL apart."""
POLL = 0.25
DRAIN_WAIT = 15.0
"""After the window: at most this long for the last messages to arrive."""


class RoundTrips:
    """One message in flight: C{send(payload)} then wait for its echo."""

    def __init__(self, send) -> None:
        self.send = send
        self.waiting = None

    def echoed(self, payload: bytes) -> None:
        waiting, self.waiting = self.waiting, None
        if waiting is not None:
            waiting.callback(payload)

    async def run(self, budget: Budget, count: int, size: int) -> tuple[list, float]:
        """C{count} round trips; their times and the CPU seconds they took."""
        times = []
        cpu = cpuClock()
        for index in range(count):
            payload = index.to_bytes(8, "big") + b"x" * max(0, size - 8)
            self.waiting = defer.Deferred()
            start = clock()
            self.send(payload)
            echoed = await budget.wait(self.waiting, 10.0, f"echo {index}")
            times.append(clock() - start)
            if echoed != payload:
                raise AssertionError(f"echo {index} came back as another message")
        return times, cpuClock() - cpu


async def clusterSide(reactor, url):
    from proud_twisted import Cluster, ClusterEvents, NetServer, NetServerEvents

    class Pinger(NetServerEvents, ClusterEvents):
        def onClusterMessage(self, serverID, channel, payload):
            trips.echoed(payload)

    server = NetServer(Pinger(), interface=LOOPBACK, encryption=False,
                       cluster=Cluster(url, "pinger"))
    trips = RoundTrips(lambda payload: server.cluster.send("echo", payload))
    server.startService()
    await server.cluster.whenReady()
    return trips, server.stopService


async def bareSide(reactor, url):
    import txredisapi

    publisher = await bareConnection(reactor, url, txredisapi.RedisProtocol)

    class Pong(txredisapi.SubscriberProtocol):
        def messageReceived(self, pattern, channel, message):
            trips.echoed(message)

    subscriber = await bareConnection(reactor, url, Pong)
    await subscriber.subscribe(PONG)
    trips = RoundTrips(lambda payload: publisher.execute_command("PUBLISH", PING, payload))

    def stop():
        for connection in (publisher, subscriber):
            connection.transport.loseConnection()
    return trips, stop


async def measure(reactor, budget, mode, args):
    """One side's round trips against its own Redis and echo process."""
    redis = RedisServer().start()
    echo = ChildProcess.spawn(reactor, f"{mode} echo", "_cluster_echo.py", "--mode", mode,
                              "--redis", redis.url, "--lifetime", args.timeout)
    try:
        await echo.first(reactor, budget)
        side = clusterSide if mode == "cluster" else bareSide
        trips, stop = await side(reactor, redis.url)
        try:
            await trips.run(budget, WARMUP, args.size)
            return await trips.run(budget, args.round_trips, args.size)
        finally:
            await defer.maybeDeferred(stop)
    finally:
        await echo.stop(reactor)
        redis.close()


# information: the CPU a frame crossing servers costs, sent and received


class FrameBurst:
    """Sends ``count`` frames, ``FRAMES_PER_TURN`` a reactor turn (then
    calls ``turnEnd``), and fires ``done`` once the receiver has counted
    them all."""

    def __init__(self, reactor, count: int, publish, turnEnd=lambda: None) -> None:
        self.reactor = reactor
        self.count = count
        self.publish = publish
        self.turnEnd = turnEnd
        self.sent = self.received = 0
        self.done = defer.Deferred()

    def start(self) -> None:
        for _ in range(min(FRAMES_PER_TURN, self.count - self.sent)):
            self.publish(self.sent)
            self.sent += 1
        self.turnEnd()
        if self.sent < self.count:
            self.reactor.callLater(0, self.start)

    def receivedOne(self) -> None:
        self.received += 1
        if self.received == self.count:
            self.done.callback(None)


async def ourFrames(reactor, budget, url: str, count: int, size: int) -> float:
    """CPU per frame through two of the cluster's Redis links: the
    sender's C{publishQuietly} of an encoded frame, the receiver's link
    handing it over, decoded."""
    from proud_twisted.cluster import envelope
    from proud_twisted.cluster.link import RedisLink
    from proud_twisted.cluster.redisurl import parseRedisURL

    payload = b"f" * size
    links, ups = [], []

    def received(channel, data):
        envelope.decode(data)
        burst.receivedOne()

    for channels, onMessage in ((["bench:unused"], None), ([FRAMES], received)):
        up = defer.Deferred()
        ups.append(up)
        links.append(RedisLink(parseRedisURL(url), reactor, channels, onMessage,
                               lambda up=up: up.called or up.callback(None), lambda why: None))
        links[-1].start()
    sender = links[0]
    burst = FrameBurst(reactor, count, lambda index: sender.publishQuietly(
        FRAMES, envelope.encodeFrame("bench-0", 1, 2, 0, payload)))
    try:
        await budget.wait(defer.gatherResults(ups), 10.0, "the links up")
        # (Redis answers in order: PING's reply comes after every publication's.)
        return await timedBurst(budget, burst, lambda: sender.command("PING"))
    finally:
        await defer.gatherResults([link.stop() for link in links])


async def bareFrames(reactor, budget, url: str, count: int, size: int) -> float:
    """CPU per frame through bare txredisapi: C{PUBLISH} on its default
    protocol, its subscriber's C{messageReceived}."""
    import txredisapi

    payload = b"f" * size

    class Counting(txredisapi.SubscriberProtocol):
        def messageReceived(self, pattern, channel, message):
            burst.receivedOne()

    publisher = await bareConnection(reactor, url, txredisapi.RedisProtocol)
    subscriber = await bareConnection(reactor, url, Counting)
    await subscriber.subscribe(FRAMES)
    replies = []
    burst = FrameBurst(reactor, count, lambda index: replies.append(
        publisher.execute_command("PUBLISH", FRAMES, payload)))
    try:
        return await timedBurst(budget, burst, lambda: replies[-1])
    finally:
        for connection in (publisher, subscriber):
            connection.transport.loseConnection()


async def timedBurst(budget, burst: FrameBurst, lastReply=None) -> float:
    """CPU per frame from the first one sent until every frame is received
    and, through Redis, its reply to every publication read (``lastReply()``
    fires then)."""
    cpu = cpuClock()
    burst.start()
    await budget.wait(burst.done, 60.0, f"{burst.count} frames")
    if lastReply is not None:
        await budget.wait(lastReply(), 10.0, "Redis's last reply")
    return (cpuClock() - cpu) / burst.count


async def udpFrames(reactor, budget, count: int, size: int, direct: bool) -> float:
    """CPU per frame from one loopback UDP port to another: with
    C{direct}, a turn's frames sealed together by one server's
    L{DirectPaths} (as the cluster sends them) and opened by the other's;
    else the bare bytes, a datagram each."""
    from twisted.internet.protocol import DatagramProtocol

    from proud_twisted.cluster.direct import DirectPaths, decodeFrames, encodeEntry

    payload = b"f" * size
    a, b = DirectPaths("bench-0", "i-0", 60.0), DirectPaths("bench-1", "i-1", 60.0)

    class Receiver(DatagramProtocol):
        def datagramReceived(self, data, addr):
            if not direct:
                burst.receivedOne()
                return
            for _ in decodeFrames(b.open(data, 0.0)[2]):
                burst.receivedOne()

    sender = reactor.listenUDP(0, DatagramProtocol(), interface=LOOPBACK)
    receiver = reactor.listenUDP(0, Receiver(), interface=LOOPBACK)
    to = (LOOPBACK, receiver.getHost().port)
    for one, other, address in ((a, b, to), (b, a, (LOOPBACK, sender.getHost().port))):
        one.add(other.serverID, other.incarnation, other.relayKey, address)
    b.open(a.probe("bench-1")[0], 0.0)
    a.open(b.answer("bench-0")[0], 0.0)         # (what the probes do)
    write = sender.write
    if direct:
        turn: list = []

        def flush():
            for datagram, address in a.frames("bench-1", turn):
                write(datagram, address)
            turn.clear()
        burst = FrameBurst(reactor, count, lambda index: turn.append(
            encodeEntry(1, 2, 0, payload)), flush)
    else:
        burst = FrameBurst(reactor, count, lambda index: write(payload, to))
    try:
        return await timedBurst(budget, burst)
    finally:
        await defer.gatherResults([defer.maybeDeferred(p.stopListening)
                                   for p in (sender, receiver)])


async def frameCost(reactor, budget, args) -> None:
    redis = RedisServer().start()
    results: dict = {"ours": [], "bare": [], "direct": [], "udp": []}
    sides = (("ours", lambda: ourFrames(reactor, budget, redis.url, args.frames, args.size)),
             ("bare", lambda: bareFrames(reactor, budget, redis.url, args.frames, args.size)),
             ("direct", lambda: udpFrames(reactor, budget, args.frames, args.size, True)),
             ("udp", lambda: udpFrames(reactor, budget, args.frames, args.size, False)))
    try:
        for _ in range(args.repeat):
            for side, measureSide in sides:
                results[side].append(await measureSide())
    finally:
        redis.close()
    report("CPU per frame crossing servers through Redis, sent and received in this process"
           f" (median of {args.repeat})", median(results["ours"]) * 1e6,
           median(results["bare"]) * 1e6, "us",
           "bare txredisapi PUBLISH and subscriber, no envelope")
    report("CPU per frame crossing servers straight over UDP, sent and received in this"
           f" process (median of {args.repeat})", median(results["direct"]) * 1e6,
           median(results["udp"]) * 1e6, "us",
           "bare Twisted UDP ports, the same bytes unsealed")


# the second figure: clients held at a fixed CPU budget, one process and two


@dataclasses.dataclass
class Held:
    """One server process over the window."""

    label: str
    clients: int
    cpu: float
    seconds: float
    before: dict
    after: dict

    def perClientSecond(self) -> float:
        """Server CPU seconds per client per second."""
        return self.cpu / (self.clients * self.seconds)

    def counted(self, key: str) -> int:
        """A ``cluster.stats`` counter's growth over the window."""
        before, after = self.before["cluster"], self.after["cluster"]
        return after[key] - before[key] if before and after else 0


def groupPlan(homes: list, size: int, crossShare: float) -> list:
    """(owner, members) of every group: ``homes`` lists each server's clients'
    HostIDs. With two servers, ``crossShare`` of the groups take half their
    members from each (owned by each server in turn, its own clients first);
    the rest, as every group of a lone server, hold clients of their owner."""
    left = [list(ids) for ids in homes]
    plan = []
    if len(homes) == 2:
        groups = math.ceil(sum(map(len, homes)) / size)
        for index in range(round(groups * crossShare)):
            owner, other = index % 2, 1 - index % 2
            half = size // 2
            members = left[owner][:size - half] + left[other][:half]
            del left[owner][:size - half], left[other][:half]
            plan.append((owner, members))
    for owner, ids in enumerate(left):
        plan += [(owner, ids[i:i + size]) for i in range(0, len(ids), size)]
    return [(owner, members) for owner, members in plan if members]


async def makeGroups(reactor, budget, servers: list, plan: list) -> None:
    for owner, members in plan:
        for _ in range(GROUP_RETRIES):
            answer = await servers[owner].ask(budget, "group " + ",".join(map(str, members)))
            if answer["group"] is not None:
                break
            await task.deferLater(reactor, POLL, lambda: None)
        else:
            raise BenchFailure(f"server {owner} did not learn the home of {answer['unknown']}"
                               f" of a group's members within {GROUP_RETRIES * POLL:g} s")


@dataclasses.dataclass
class Holding:
    """One layout's window: each server's L{Held}, Redis's CPU seconds (two
    processes), the messages sent and lost, how many groups (span both)."""

    held: list
    redisCpu: float | None
    sent: int
    lost: int
    machine: str
    profile: str = ""
    groups: int = 0
    crossing: int = 0


async def window(reactor, budget, args, servers: list, loads: list, redisPid) -> Holding:
    """Every client sends ``--rate`` messages a second for ``--hold`` seconds."""
    readies = await askAll(budget, loads, "ready")
    counts = await askAll(budget, loads, "counts")
    before = [await server.ask(budget, "status") for server in servers]
    cpu = [server.cpu() for server in servers]
    redis = processRunSeconds(redisPid) if redisPid else None
    machine = Machine([server.pid for server in servers] + [load.transport.pid for load in loads]
                      + ([redisPid] if redisPid else []))
    if args.profile:
        await servers[-1].ask(budget, "profile-start")
    start = clock()
    answers = await defer.gatherResults([
        defer.ensureDeferred(load.ask(budget, f"trickle {ready['present'] * args.rate:.3f}"
                                              f" {args.hold:g}"))
        for load, ready in zip(loads, readies, strict=True)], consumeErrors=True)
    seconds = clock() - start
    machineLine = machine.describe()
    cpu = [server.cpu() - c for server, c in zip(servers, cpu, strict=True)]
    redis = processRunSeconds(redisPid) - redis if redisPid else None
    after = [await server.ask(budget, "status") for server in servers]
    profile = ((await servers[-1].ask(budget, f"profile-stop {args.profile_top}"))["profile"]
               if args.profile else "")
    sent = sum(a["sent"] for a in answers)
    received = 0
    for _ in range(int(min(DRAIN_WAIT, max(0.0, budget.left())) / POLL) + 2):
        now = await askAll(budget, loads, "counts")
        received = sum(n["received"] - c["received"] for n, c in zip(now, counts, strict=True))
        if received >= sent:
            break
        await task.deferLater(reactor, POLL, lambda: None)
    held = [Held(server.process.label, b["clients"], c, seconds, b, a)
            for server, b, c, a in zip(servers, before, cpu, after, strict=True)]
    return Holding(held, redis, sent, sent - received, machineLine, profile)


@dataclasses.dataclass(frozen=True)
class Layout:
    name: str
    processes: int
    cluster: bool


ONE = Layout("one process", 1, False)
TWO = Layout("two cluster processes", 2, True)
CONTROL = Layout("two processes, no cluster (control)", 2, False)


async def holdClients(reactor, budget, args, layout: Layout) -> Holding:
    """``--clients`` clients on each server process of ``layout`` (with a
    cluster, on a Redis of its own), grouped and sending for the window."""
    redis = RedisServer().start() if layout.cluster else None
    servers, loads = [], []
    try:
        for index in range(layout.processes):
            options = ([] if redis is None else
                       ["--cluster", redis.url, "--server-id", f"bench-{index}",
                        "--advertise", LOOPBACK])
            servers.append(await startProudserver(
                reactor, budget, f"{layout.name}: server {index}", options,
                {"SCALE_GROUP_SIZE": "0"}))
        lifetime = max(1.0, budget.left()) + 60.0
        perServer = []
        for index, server in enumerate(servers):
            mine = [ChildProcess.spawn(reactor, f"{layout.name}: load {index}.{i}",
                                       "_scale_load.py", *loadOptions(server), "--clients", n,
                                       "--join-timeout", JOIN_TIMEOUT, "--lifetime", lifetime)
                    for i, n in enumerate(shares(args.clients, args.load_processes))]
            loads += mine
            perServer.append(mine)
        await firstAnswers(reactor, budget, loads, "its clients")
        total = args.clients * layout.processes
        joined = await askAll(budget, loads, "go", JOIN_TIMEOUT + 60.0)
        if sum(a["joined"] for a in joined) != total:
            clusters = [(await server.ask(budget, "status"))["cluster"] for server in servers]
            raise BenchFailure(f"{layout.name}: {sum(a['joined'] for a in joined)} of {total}"
                               f" joined; failures {[a['joinFailures'] for a in joined]};"
                               f" the servers' cluster.stats {clusters}")
        homes = [[h for answer in await askAll(budget, mine, "hostids")
                  for h in answer["hostIDs"]] for mine in perServer]
        plan = groupPlan(homes, args.group_size, args.cross_share if layout.cluster else 0.0)
        await makeGroups(reactor, budget, servers, plan)
        await waitGrouped(reactor, budget, servers, loads, False, 60.0 + total / 100)
        run = await window(reactor, budget, args, servers, loads,
                           redis.process.pid if redis is not None else None)
        home = {hostID: index for index, ids in enumerate(homes) for hostID in ids}
        run.groups = len(plan)
        run.crossing = sum(1 for _, members in plan if len({home[m] for m in members}) > 1)
        await askAll(budget, loads, "leave")
        return run
    finally:
        await stopAll(reactor, loads)
        await stopAll(reactor, servers)
        if redis is not None:
            redis.close()


def perClient(runs: list) -> list:
    """Each server's median CPU per client-second over ``runs``."""
    return [median([run.held[i].perClientSecond() for run in runs])
            for i in range(len(runs[0].held))]


def held(args, perServer: list) -> float:
    """Clients the servers hold at ``--cpu-budget`` each."""
    return sum(args.cpu_budget / c for c in perServer)


async def clientsAtBudget(reactor, budget, args) -> None:
    if args.wait_quiet:
        await waitQuiet(reactor, budget, args.wait_quiet)
    layouts = [ONE, TWO] + ([CONTROL] if args.control else [])
    runs = {layout: [] for layout in layouts}
    for _ in range(args.hold_repeat):
        for layout in layouts:
            run = await holdClients(reactor, budget, args, layout)
            runs[layout].append(run)
            print(f"  {layout.name}, CPU per client-second:"
                  f" {', '.join(us(h.perClientSecond(), 2) for h in run.held)}"
                  f" ({sum(h.clients for h in run.held):,} clients, {run.sent:,} messages sent,"
                  f" {run.lost} lost); {run.machine}", flush=True)
    one, two = perClient(runs[ONE]), perClient(runs[TWO])
    report(f"clients held at {args.cpu_budget * 100:g} % of a core per process, two cluster"
           " processes vs one", held(args, two), held(args, one), "clients",
           "one process, no cluster", goal=1.8)
    print(f"  server CPU per client-second (medians of {args.hold_repeat}): one process"
          f" {us(one[0], 2)}, two cluster processes {us(two[0], 2)} and {us(two[1], 2)}"
          f" ({args.clients:,} clients on each, {args.rate:g} message/s each, groups of"
          f" {args.group_size}, {args.hold:g} s windows)")
    if args.control:
        control = perClient(runs[CONTROL])
        report("clients held at the same budget, two processes without a cluster vs one"
               " (information: what splitting costs on this machine)", held(args, control),
               held(args, one), "clients", "one process, no cluster")
        print(f"  control's CPU per client-second: {us(control[0], 2)} and {us(control[1], 2)};"
              f" two cluster processes vs the control: {held(args, two) / held(args, control):.3f}")
    pair = runs[TWO][-1]
    seconds = pair.held[0].seconds
    out = sum(h.counted("framesOut") for h in pair.held)
    direct = sum(h.counted("framesDirect") for h in pair.held)
    relayed = sum(h.after["stats"]["framesRelayed"] - h.before["stats"]["framesRelayed"]
                  for h in pair.held)
    print(f"  two cluster processes (last run): {pair.crossing} of {pair.groups} groups span"
          f" both; frames crossing {out / seconds:,.0f}/s"
          f" ({out / max(1, relayed) * 100:.1f} % of the {relayed / seconds:,.0f}/s relayed;"
          f" {direct / max(1, out) * 100:.1f} % straight over UDP, the rest through Redis),"
          f" dropped {sum(h.counted('framesDropped') for h in pair.held)}, refused"
          f" {sum(h.counted('framesRefused') for h in pair.held)}; Redis CPU"
          f" {pair.redisCpu / seconds * 100:.1f} % of a core"
          f" ({us(pair.redisCpu / (sum(h.clients for h in pair.held) * seconds), 2)}"
          " per client-second)")
    for layout, each in runs.items():
        if each[-1].profile:
            print(f"--- the last server's profile over the last window of {layout.name}, by"
                  " own time (cProfile timed by its CPU clock; it slows what it profiles:"
                  " this run's figures are not the ones to quote) ---")
            print(each[-1].profile)


async def run(reactor, args):
    budget = Budget(reactor, args.deadline)
    results = {"cluster": ([], 0.0), "bare": ([], 0.0)}
    for _ in range(args.repeat):
        for mode in ("cluster", "bare"):
            times, cpu = await measure(reactor, budget, mode, args)
            results[mode] = (results[mode][0] + times, results[mode][1] + cpu)
    (ours, oursCpu), (bare, bareCpu) = results["cluster"], results["bare"]
    oursMedian, oursP99 = summarise(ours)
    bareMedian, bareP99 = summarise(bare)
    report("cross-process round trip through the cluster (median)", oursMedian * 1e6,
           bareMedian * 1e6, "us", "bare txredisapi pub/sub round trip", goal=1.5,
           higherIsBetter=False)
    print(f"  p99: cluster {us(oursP99)}, bare {us(bareP99)}")
    print(f"  this process's CPU per round trip: cluster {us(oursCpu / len(ours), 1)}, "
          f"bare {us(bareCpu / len(bare), 1)}", flush=True)
    if args.frames:
        await frameCost(reactor, budget, args)
    if args.hold > 0:
        await clientsAtBudget(reactor, budget, args)


def main() -> int:
    parser = scriptParser(__doc__)
    parser.add_argument("--round-trips", type=int, default=2000,
                        help="timed round trips per run (default 2000)")
    parser.add_argument("--size", type=int, default=64, help="payload bytes (default 64)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of each side, alternated (default 3)")
    parser.add_argument("--frames", type=int,
                        help="frames of each run of the frame-cost figure, 0: none"
                             " (default 20,000; quick 500)")
    parser.add_argument("--clients", type=int,
                        help="clients of the second figure (default 1,000; quick 40)")
    parser.add_argument("--group-size", type=int, default=10,
                        help="members of each relay-only P2P group (default 10)")
    parser.add_argument("--rate", type=float, default=1.0,
                        help="reliable 32-byte messages each client sends a second, each to"
                             " the next of its peers (default 1)")
    parser.add_argument("--hold", type=float,
                        help="seconds of the measured window, 0: no second figure"
                             " (default 15; quick 3)")
    parser.add_argument("--hold-repeat", type=int,
                        help="windows of each layout, alternated (default 3; quick 1)")
    parser.add_argument("--cross-share", type=float, default=0.2,
                        help="share of the groups that span both processes (default 0.2)")
    parser.add_argument("--cpu-budget", type=float, default=0.5,
                        help="the budget, cores per process (default 0.5)")
    parser.add_argument("--no-control", dest="control", action="store_false",
                        help="leave out the control layout (two processes without a cluster)")
    parser.add_argument("--load-processes", type=int, default=1,
                        help="client processes per server process (default 1)")
    addWaitQuiet(parser, "before the second figure")
    addProfile(parser, "the (last) server process over each window of the second figure")
    parser.add_argument("--quick", action="store_true",
                        help="200 round trips, one run of each side; 40 clients for 3 s")
    addTimeout(parser, 300)
    args = parser.parse_args()
    if args.quick:
        args.round_trips, args.repeat = 200, 1
    for name, default, quick in (("frames", 20000, 500), ("clients", 1000, 40),
                                 ("hold", 15.0, 3.0),
                                 ("hold_repeat", 3, 1)):
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else default)
    if args.round_trips < 1 or args.repeat < 1 or args.size < 8 or args.frames < 0:
        parser.error("--round-trips and --repeat must be >= 1, --size >= 8, --frames >= 0")
    if (args.clients < 2 * args.group_size or args.group_size < 2 or args.rate <= 0
            or args.hold < 0 or not 0 <= args.cross_share <= 1 or args.cpu_budget <= 0
            or args.load_processes < 1 or args.hold_repeat < 1):
        parser.error("need --clients >= 2 x --group-size >= 4, --rate and --cpu-budget > 0,"
                     " --hold >= 0, --cross-share in [0, 1], --load-processes and --hold-repeat"
                     " >= 1")
    return runUntilDeadline(run, args, grace=10)


if __name__ == "__main__":
    raise SystemExit(main())

"""10,000 players on one server process (issue #15): the join storm, memory
per client, CPU per idle client and CPU per relayed message of one server
process run as ``twistd -n proudserver`` runs it, beside a bare Twisted
TCP+UDP server process holding as many clients in the same run.

Ours: ``twistd -n proudserver`` itself, a child process (the ``twistd`` next
to this Python, or ``twisted.scripts.twistd.run``), with its defaults but
for ports 0 on 127.0.0.1, a key file and log file in a temporary directory,
and ``--events _scale_events.ScaleEvents`` (``bench/`` on PYTHONPATH): the
same service, options, encryption and gc freeze as production. The events
put the clients into relay-only P2P groups of ``--group-size`` (default 10)
as they join and answer scale.py over the process's stdin and stdout. The
clients are real NetClients (encryption on, the server's key pinned) in
``--load-processes`` (default 4) processes of ``_scale_load.py``.

The baseline: ``_scale_bare.py --serve``, an ``Int32StringReceiver`` TCP
port and one UDP port (Twisted only, gc frozen once listening), and its load
processes (``_scale_bare.py --load``): one TCP connection and one UDP socket
per client, the HostID, group and member notices over TCP, a UDP HELLO that
is acknowledged, and keepalives on NetClient's schedule (read from this
checkout's client engine: a UDP PING every third of the server's 20 s
client timeout, a TCP PING at the first and then once a minute) that the
server answers; its trickle sends UDP
RELAY datagrams that the server forwards to a member of the sender's group
(the bare forwarder). The module docstring of ``_scale_bare.py`` has it all.

Each side in turn, ours first:

1. Join storm: ``--clients`` clients, split among the load processes; each
   load process calls connect for all of its clients in the same reactor
   turn, every process told ``go`` together. Figures: joined, failures by
   kind (``JoinTimeout`` etc.), join times from that turn (p50, p99, max),
   joins per second (joined / the last join's time), the kernel's TcpExt
   ListenOverflows and ListenDrops before and after (SYNs dropped), and
   server CPU per join: the server's own ``time.process_time()`` from the
   storm's start to the 10 %-th join and to the last join, divided by those
   joins. The server's and the load processes' CPU over the whole storm
   (/proc) also print. Ours first runs a storm of N/10 on a fresh server:
   its CPU per join is the goal's reference (CPU per join must not grow
   with N). The storm runs with a listen queue of ``--backlog`` (at least
   N; as root the run raises the kernel's caps to it, see ListenQueue) and
   a join timeout of 40 s (STORM_JOIN_TIMEOUT says why; the joins within
   NetClient's 10 s print beside it). Clients whose join failed then join again, ``--top-up`` (100)
   at a time per load process, so that what follows measures N clients.
2. Grouped: a bounded wait until every client still joined has its UDP
   path to the server confirmed and every peer entry its groups give it,
   and (ours) every member's join is acknowledged
   (``onP2PGroupJoinMemberAckComplete``). Memory per client: the server's
   RSS (VmRSS) then minus its RSS before any client connected (after the
   gc freeze), divided by the clients it holds; the goal's figure is the
   same after the idle window (an idle grouped client: the server may give
   back what it only needed while the clients were busy).
3. Idle: ``--idle`` seconds (default 20; keep it a multiple of the
   keepalive period, printed first, which the storm lines up) with nothing
   sent by the application: the server's CPU over the window (its
   ``process_time``, asked over the control channel at both ends, where
   /proc counts 10 ms ticks) per client per second. Only the keepalives
   run (ours: a UDP_PING and its answer per client every 6.7 s, a TCP PING
   once a minute) and the server's once-a-second sweep.
4. Hold: ``--trickle`` reliable 32-byte messages a second in all (default
   1,000; split among the load processes by their share of clients) for
   ``--hold`` seconds (default 60), each from the next joined client to the
   next of its peers, through the relay. Server CPU per relayed frame: its
   CPU (``process_time`` as above) over the hold divided by
   ``stats.framesRelayed`` over the hold (frames include the pair
   sessions' acknowledgements; per user message also prints, and both net
   of the idle CPU rate). Messages sent against received (each load
   process counts what its clients received; after the hold, a bounded
   wait for the last ones), clients dropped (the server's
   ``stats.clientsLeft`` and connection count, the clients'
   ``onLeaveServer``).

Every window also prints what other processes on the machine used
meanwhile (/proc/stat less ours), marked ``NOT a quiet machine`` past 10 %
of its cores; ``--wait-quiet S`` first waits, at most S seconds, until the
machine is quiet.

Result lines read ours / baseline; goals (``met``/``MISSED``): all N joined
and no SYN dropped; CPU per join at N within 20 % of at N/10; memory per
idle grouped client <= 8 KiB; idle CPU <= 10 us per client per second;
CPU per relayed frame <= 1x the bare forwarder's per forwarded datagram
(ours opens and seals, the bare one does not); none dropped and none lost
in the hold.

``--profile-server`` runs cProfile (timed by the CPU clock) in our server
during the storm and during a second idle window after the measured one,
``--profile-load`` in the first load process during the storm, and prints
the top ``--profile-top`` functions by own time. The profiler slows what
it profiles: the storm's figures of such a run are not the ones to quote.
Calls into the mypyc-compiled core show as built-in calls.

Needs: N clients take about 2N descriptors across the load processes (one
TCP and one UDP socket each) and N+ in the server, and N TCP and N UDP
loopback ports from the ephemeral range (32768-60999 by default: some
28,000); it checks both before starting. Every process raises its
open-files limit to the hard limit.

    python bench/scale.py [--clients 10000] [--group-size 10] [--load-processes 4]
                          [--trickle 1000] [--hold 60] [--idle 20] [--quick]
                          [--top-up 100] [--join-timeout 40] [--backlog N] [--wait-quiet S]
                          [--profile-server] [--profile-load] [--timeout 1500]
"""

from __future__ import annotations

import collections
import dataclasses
import math
import os
import sys

from twisted.internet import defer, task

import _common
from _common import (
    BenchFailure,
    ChildProcess,
    ServerProcess,
    askAll,
    clock,
    firstAnswers,
    ms,
    stopAll,
    twistdArguments,
    twistdCommand,
)

COUNTERS = ("ListenOverflows", "ListenDrops")
POLL = 0.5
"""Seconds between the polls of a bounded wait."""
STORM_SLACK = 60.0
"""Past the join timeout, how long a load process may take to answer ``go``."""
DRAIN_WAIT = 15.0
"""After the hold: at most this long for the last messages to arrive."""
FD_MARGIN = 200
QUICK = {"clients": 200, "idle": 4.0, "hold": 3.0, "trickle": 200.0, "load_processes": 2}
DEFAULTS = {"clients": 10000, "idle": 20.0, "hold": 60.0, "trickle": 1000.0,
            "load_processes": 4}
KIB = 1024
STORM_JOIN_TIMEOUT = 40.0
"""The bench's join timeout: NetClient's 10 s is for one player's machine,
but here the load processes share 2 cores with the server and spend about
2 ms of CPU on each NetClient's join (key agreement, a peer session and a
pair key per member), some 20 s for 10,000: a 10 s timeout would measure the
load generator. The joins within NetClient's default print beside it."""


# the figures of one side

@dataclasses.dataclass
class Storm:
    clients: int
    joined: int
    failures: collections.Counter
    times: list
    serverJoins: int
    """Joins the server counted from the storm's start (its onClientJoin)."""
    milestone: int
    cpuToMilestone: float | None
    cpuToLastJoin: float | None
    procCpu: float
    """The server's CPU (/proc) from go to every load process's answer."""
    loadCpu: float
    """The load processes' CPU (/proc, summed) over the same time."""
    machine: str
    """What other processes did meanwhile."""
    wall: float
    kernel: dict
    profile: str = ""
    """The first load process's profile of the storm (``--profile-load``)."""

    def joinedWithin(self, seconds: float) -> int:
        return sum(1 for t in self.times if t <= seconds)

    def joinsPerSecond(self) -> float:
        return self.joined / max(self.times) if self.times else 0.0

    def cpuPerJoin(self) -> float:
        """Server CPU seconds per join, storm start to last join (0 if none)."""
        if not self.serverJoins or self.cpuToLastJoin is None:
            return 0.0
        return self.cpuToLastJoin / self.serverJoins

    def cpuPerJoinFirstTenth(self) -> float:
        if not self.milestone or self.cpuToMilestone is None:
            return 0.0
        return self.cpuToMilestone / self.milestone

    def synDrops(self) -> int:
        return max(self.kernel.get(name, 0) for name in COUNTERS)


@dataclasses.dataclass
class Side:
    label: str
    storm: Storm | None = None
    small: Storm | None = None
    rssEmpty: int = 0
    rssGrouped: int = 0
    rssAfterIdle: int = 0
    rssAfterHold: int = 0
    held: int = 0
    groupedAfter: float = 0.0
    idleCpu: float = 0.0
    idleSeconds: float = 0.0
    idleFrames: int = 0
    holdCpu: float = 0.0
    holdSeconds: float = 0.0
    holdFrames: int = 0
    sent: int = 0
    received: int = 0
    refused: int = 0
    droppedServer: int = 0
    droppedClients: int = 0
    connectionsBefore: int = 0
    connectionsAfter: int = 0
    profiles: dict = dataclasses.field(default_factory=dict)

    def memoryPerClient(self, rss: int | None = None) -> float:
        """RSS per client over what the server held before any: after the
        idle window, or at ``rss``."""
        rss = self.rssAfterIdle if rss is None else rss
        return (rss - self.rssEmpty) / self.held if self.held else 0.0

    def idleRate(self) -> float:
        """Server CPU seconds per second while idle."""
        return self.idleCpu / self.idleSeconds if self.idleSeconds else 0.0

    def idlePerClient(self) -> float:
        """Server CPU seconds per client per second while idle."""
        return self.idleRate() / self.held if self.held else 0.0

    def perFrame(self, net: bool = False) -> float:
        cpu = self.holdCpu - (self.idleRate() * self.holdSeconds if net else 0.0)
        return cpu / self.holdFrames if self.holdFrames else 0.0

    def perMessage(self, net: bool = False) -> float:
        cpu = self.holdCpu - (self.idleRate() * self.holdSeconds if net else 0.0)
        return cpu / self.sent if self.sent else 0.0

    def lost(self) -> int:
        return self.sent - self.received


def pidsOf(server, loads) -> list:
    return [server.pid] + [load.transport.pid for load in loads]


# processes

async def startOurs(reactor, budget, args, label: str) -> ServerProcess:
    env = {"SCALE_GROUP_SIZE": str(args.group_size)}
    if args.profile_memory:
        env["PYTHONTRACEMALLOC"] = "8"
    return await _common.startProudserver(reactor, budget, label, ["--backlog", args.backlog],
                                          env)


async def startBare(reactor, budget, args) -> ServerProcess:
    process = ChildProcess.spawn(reactor, "bare server", "_scale_bare.py", "--serve",
                                 "--group-size", args.group_size, "--backlog", args.backlog,
                                 "--udp-buffer", args.server_udp_buffer,
                                 "--lifetime", max(1.0, budget.left()) + 60.0)
    return ServerProcess(process, await process.first(reactor, budget), None)


async def startLoads(reactor, budget, args, server: ServerProcess, count: int, bare: bool,
                     label: str) -> list:
    lifetime = max(1.0, budget.left()) + 60.0
    loads = []
    for i, n in enumerate(_common.shares(count, args.load_processes)):
        if bare:
            options = ["--load", "--port", server.hello["tcpPort"],
                       "--udp-port", server.hello["udpPort"], "--keepalive", args.keepalive,
                       "--tcp-keepalive", args.tcp_keepalive,
                       "--udp-buffer", args.client_udp_buffer]
            script = "_scale_bare.py"
        else:
            options = _common.loadOptions(server)
            if args.profile_load and i == 0 and count == args.clients:
                options += ["--profile", "--profile-top", args.profile_top]
            script = "_scale_load.py"
        loads.append(ChildProcess.spawn(reactor, f"{label} load {i}", script, *options,
                                        "--clients", n, "--join-timeout", args.join_timeout,
                                        "--lifetime", lifetime))
    await firstAnswers(reactor, budget, loads, "its clients")
    return loads


# the steps

async def storm(reactor, budget, args, server: ServerProcess, loads: list, count: int) -> Storm:
    milestone = max(1, count // 10)
    await server.ask(budget, f"mark {milestone}")
    before = _common.tcpExtCounters(*COUNTERS)
    cpu, loadCpu = server.cpu(), loadsCpu(loads)
    machine = _common.Machine(pidsOf(server, loads))
    start = clock()
    answers = await askAll(budget, loads, "go", args.join_timeout + STORM_SLACK)
    wall = clock() - start
    cpu, loadCpu = server.cpu() - cpu, loadsCpu(loads) - loadCpu
    machineLine = machine.describe()
    after = _common.tcpExtCounters(*COUNTERS)
    status = await server.ask(budget, "status")
    failures = collections.Counter()
    for answer in answers:
        failures.update(answer["joinFailures"])
    mark = status["cpuAtMark"]
    return Storm(
        clients=count, joined=sum(a["joined"] for a in answers), failures=failures,
        times=[t for a in answers for t in a["times"]], serverJoins=status["joins"],
        milestone=milestone if status["cpuAtMilestone"] is not None else 0,
        cpuToMilestone=(status["cpuAtMilestone"] - mark
                        if status["cpuAtMilestone"] is not None else None),
        cpuToLastJoin=(status["cpuAtLastJoin"] - mark
                       if status["cpuAtLastJoin"] is not None else None),
        procCpu=cpu, loadCpu=loadCpu, wall=wall, machine=machineLine,
        profile=answers[0].get("profile", ""),
        kernel={name: after.get(name, 0) - before.get(name, 0) for name in COUNTERS})


def loadsCpu(loads: list) -> float:
    return sum(_common.processRunSeconds(load.transport.pid) or 0.0 for load in loads)


def describeStorm(label: str, s: Storm) -> None:
    failures = ", ".join(f"{n} x {kind}" for kind, n in s.failures.most_common()) or "none"
    print(f"  {label}: {s.joined:,} of {s.clients:,} joined; failures: {failures}")
    if s.times:
        p50, p99 = _common.summarise(s.times)
        print(f"    join time from the storm's turn: p50 {ms(p50, 0)}, p99 {ms(p99, 0)},"
              f" max {ms(max(s.times), 0)}; {s.joinsPerSecond():,.0f} joins/s")
    print("    kernel TcpExt during the storm: " + ", ".join(
        f"{name} +{s.kernel.get(name, 0)}" for name in COUNTERS))
    print(f"    server CPU per join: {s.cpuPerJoin() * 1e6:,.0f} us over all"
          f" {s.serverJoins:,} joins, {s.cpuPerJoinFirstTenth() * 1e6:,.0f} us over the"
          f" first {s.milestone:,}")
    print(f"    CPU from go to the last load process's answer ({s.wall:.1f} s, /proc):"
          f" server {s.procCpu:.2f} s, load processes {s.loadCpu:.2f} s"
          f" ({os.cpu_count()} cores); {s.machine}")


async def topUp(budget, args, loads: list, s: Storm) -> None:
    """Join the clients whose join failed in the storm again, in batches, so
    that what follows measures N clients."""
    failed = s.clients - s.joined
    if not failed or not args.top_up:
        return
    batches = math.ceil(failed / len(loads) / args.top_up) + 1
    answers = await askAll(budget, loads, f"rejoin {args.top_up}",
                           batches * (args.join_timeout + 5.0) + 30.0)
    again = sum(a["joined"] for a in answers)
    failures = collections.Counter()
    for answer in answers:
        failures.update(answer["joinFailures"])
    print(f"  top-up: the {failed:,} clients whose join failed connect again,"
          f" {args.top_up} at a time per load process: {again:,} joined in"
          f" {max(a['seconds'] for a in answers):.1f} s; failures: "
          + (", ".join(f"{n} x {kind}" for kind, n in failures.most_common()) or "none"))


async def sumCounts(budget, loads: list) -> dict:
    answers = await askAll(budget, loads, "counts")
    left = collections.Counter()
    for answer in answers:
        left.update(answer["left"])
        if answer.get("exceptions"):
            raise BenchFailure(f"a client's event handler raised: {answer['exceptions'][0]}")
    return {"sent": sum(a["sent"] for a in answers),
            "refused": sum(a["refused"] for a in answers),
            "received": sum(a["received"] for a in answers),
            "wrongSize": sum(a["wrongSize"] for a in answers),
            "left": left}


async def idle(reactor, budget, args, side: Side, server: ServerProcess, loads: list) -> None:
    before = await server.ask(budget, "status")
    machine = _common.Machine(pidsOf(server, loads))
    cpu, start = await server.preciseCpu(budget), clock()
    await task.deferLater(reactor, min(args.idle, max(0.0, budget.left())), lambda: None)
    side.idleCpu = await server.preciseCpu(budget) - cpu
    side.idleSeconds = clock() - start
    machineLine = machine.describe()
    after = await server.ask(budget, "status")
    side.idleFrames = after["stats"]["framesRelayed"] - before["stats"]["framesRelayed"]
    side.rssAfterIdle = server.rss()
    print(f"  idle {side.idleSeconds:.1f} s: server CPU {side.idleCpu:.2f} s"
          f" ({side.idleRate() * 100:.1f} % of a core), frames relayed meanwhile"
          f" {side.idleFrames}; RSS {side.rssAfterIdle / 2**20:,.1f} MiB"
          f" ({side.memoryPerClient() / KIB:,.2f} KiB per client); {machineLine}")


async def hold(reactor, budget, args, side: Side, server: ServerProcess, loads: list,
               bare: bool) -> None:
    counts = await sumCounts(budget, loads)
    before = await server.ask(budget, "status")
    perLoad = await presentPerLoad(budget, loads)
    shareOf = [n / max(1, sum(perLoad)) for n in perLoad]
    machine = _common.Machine(pidsOf(server, loads))
    cpu, start = await server.preciseCpu(budget), clock()
    for load, share in zip(loads, shareOf, strict=True):
        if load.ended:
            raise BenchFailure(f"{load.label}: the process has exited")
        load.transport.write(f"trickle {args.trickle * share:.3f} {args.hold:g}\n".encode())
    answers = await defer.gatherResults(
        [defer.ensureDeferred(load.next(budget, "the trickle's end", args.hold + 30.0))
         for load in loads], consumeErrors=True)
    side.holdCpu = await server.preciseCpu(budget) - cpu
    side.holdSeconds = clock() - start
    machineLine = machine.describe()
    during = await server.ask(budget, "status")
    side.holdFrames = during["stats"]["framesRelayed"] - before["stats"]["framesRelayed"]
    sent = sum(a["sent"] for a in answers)
    # The last messages: wait (bounded) until every one is in, or (the bare
    # forwarder's are unreliable) until the count stands still.
    last = None
    limit = max(0.0, min(DRAIN_WAIT, budget.left()))
    for _ in range(int(limit / POLL) + 2):
        now = await sumCounts(budget, loads)
        received = now["received"] - counts["received"]
        if received >= sent or (bare and received == last):
            break
        last = received
        await task.deferLater(reactor, POLL, lambda: None)
    after = await server.ask(budget, "status")
    side.sent, side.received = sent, received
    side.refused = now["refused"] - counts["refused"]
    side.droppedServer = after["stats"]["clientsLeft"] - before["stats"]["clientsLeft"]
    side.droppedClients = sum(now["left"].values()) - sum(counts["left"].values())
    side.connectionsBefore, side.connectionsAfter = before["connections"], after["connections"]
    side.rssAfterHold = server.rss()
    senders = sum(a["senders"] for a in answers)
    wrongSize = f", {now['wrongSize']} of the wrong size" if now["wrongSize"] else ""
    reasons = f" {dict(now['left'] - counts['left'])}" if side.droppedClients else ""
    load = side.holdCpu / max(side.holdSeconds, 1e-9) * 100
    print(f"  hold {side.holdSeconds:.1f} s at {args.trickle:g} messages/s from {senders:,}"
          f" senders: {sent:,} sent ({side.refused} refused by send), {received:,} received"
          f" ({side.lost():,} lost{wrongSize}); server CPU {side.holdCpu:.2f} s ({load:.1f} %"
          f" of a core), {side.holdFrames:,} frames relayed"
          f" ({side.holdFrames / max(sent, 1):.2f} a message)")
    print(f"    dropped during the hold: server clientsLeft +{side.droppedServer},"
          f" connections {side.connectionsBefore:,} -> {side.connectionsAfter:,},"
          f" clients told they left {side.droppedClients}{reasons};"
          f" RSS after the hold {side.rssAfterHold / 2**20:,.1f} MiB; {machineLine}")


async def presentPerLoad(budget, loads: list) -> list:
    return [r["present"] for r in await askAll(budget, loads, "ready")]


async def profileStart(budget, args, server: ServerProcess, bare: bool) -> None:
    if args.profile_server and not bare:
        await server.ask(budget, "profile-start")


async def profileStop(budget, args, server: ServerProcess, bare: bool, side: Side,
                      what: str) -> None:
    if args.profile_server and not bare:
        side.profiles[what] = (await server.ask(budget, f"profile-stop {args.profile_top}"))[
            "profile"]


async def runSide(reactor, budget, args, bare: bool) -> Side:
    side = Side("baseline" if bare else "ours")
    N = args.clients
    if not bare:
        small = max(1, N // 10)
        print(f"ours, a storm of N/10 = {small:,} on a fresh server:", flush=True)
        server = await startOurs(reactor, budget, args, "ours (N/10) server")
        loads = []
        try:
            loads = await startLoads(reactor, budget, args, server, small, bare, "N/10")
            side.small = await storm(reactor, budget, args, server, loads, small)
            describeStorm("storm of N/10", side.small)
            await askAll(budget, loads, "leave")
        finally:
            await stopAll(reactor, loads)
            await server.stop(reactor)
    print(f"{side.label}:", flush=True)
    server = await (startBare(reactor, budget, args) if bare
                    else startOurs(reactor, budget, args, "ours server"))
    loads = []
    try:
        hello = server.hello
        if bare:
            print(f"  server: bare Twisted (_scale_bare.py --serve), pid {server.pid},"
                  f" {hello['frozen']:,} objects frozen by gc.freeze")
        else:
            print(f"  server: twistd -n proudserver, pid {server.pid}, running"
                  f" {hello['package']} (reliable-UDP core"
                  f" {'compiled' if hello['compiled'] else 'pure Python'}),"
                  f" {hello['frozen']:,} objects frozen by its gc freeze, encryption"
                  f" {'on' if hello['key'] else 'OFF'}, groups of {hello['groupSize']}")
        loads = await startLoads(reactor, budget, args, server, N, bare, side.label)
        side.rssEmpty = server.rss()
        await profileStart(budget, args, server, bare)
        start = clock()
        side.storm = await storm(reactor, budget, args, server, loads, N)
        await profileStop(budget, args, server, bare, side, "the storm (go to every join ended)")
        describeStorm(f"storm of N = {N:,}", side.storm)
        await topUp(budget, args, loads, side.storm)
        (status,) = await _common.waitGrouped(reactor, budget, [server], loads, bare,
                                              60.0 + args.clients / 100)
        side.groupedAfter = clock() - start
        side.held = status["clients"]
        side.rssGrouped = server.rss()
        print(f"  grouped {side.groupedAfter:.1f} s after the storm's start:"
              f" {side.held:,} clients in {status['groups']:,} groups,"
              f" {status['peerEntries']:,} peer entries; server RSS"
              f" {side.rssEmpty / 2**20:,.1f} MiB before any client,"
              f" {side.rssGrouped / 2**20:,.1f} MiB now:"
              f" {side.memoryPerClient(side.rssGrouped) / KIB:,.2f} KiB per client")
        await idle(reactor, budget, args, side, server, loads)
        if args.profile_memory and not bare:
            side.profiles["the idle window's end: the Python heap it holds"] = (
                await server.ask(budget, f"memory-top {args.profile_top}"))["memory"]
        if args.profile_server and not bare:
            # A window of its own, so that the measured one runs unprofiled.
            await profileStart(budget, args, server, bare)
            await task.deferLater(reactor, min(args.idle, max(0.0, budget.left())),
                                  lambda: None)
            await profileStop(budget, args, server, bare, side,
                              f"a second idle window of {args.idle:g} s")
        if args.trickle > 0 and args.hold > 0:
            await hold(reactor, budget, args, side, server, loads, bare)
        await askAll(budget, loads, "leave")
    finally:
        await stopAll(reactor, loads)
        await server.stop(reactor)
    return side


# the whole run

def printResults(args, ours: Side, bare: Side) -> None:
    N = args.clients
    baseline = "bare Twisted TCP+UDP server"
    print("results:")
    for what, text in ours.profiles.items():
        print(f"--- our server's profile during {what}, by own time (cProfile timed by"
              " the process's CPU clock; a profiled storm runs several times slower) ---")
        print(text)
    if ours.storm.profile:
        print("--- the first load process's profile of the storm (its NetClients' joins),"
              " by own time ---")
        print(ours.storm.profile)
    o, b = ours.storm, bare.storm
    _common.reportLimit("clients joined in the storm", o.joined, b.joined, "clients", baseline,
                        N, higherIsBetter=True,
                        note=f"; failures: {sum(o.failures.values())} ours,"
                             f" {sum(b.failures.values())} baseline; joined within"
                             f" NetClient's default {args.defaultJoinTimeout:g} s:"
                             f" {o.joinedWithin(args.defaultJoinTimeout):,} ours,"
                             f" {b.joinedWithin(args.defaultJoinTimeout):,} baseline")
    _common.reportLimit("SYNs dropped in the storm (TcpExt ListenDrops/ListenOverflows)",
                        o.synDrops(), b.synDrops(), "SYNs", baseline, 0)
    small = ours.small
    _common.report(f"server CPU per join, storm of {N:,} vs of {small.clients:,}",
                   o.cpuPerJoin() * 1e6, small.cpuPerJoin() * 1e6, "us",
                   f"ours, a storm of {small.clients:,} on a fresh server", goal=1.2,
                   higherIsBetter=False)
    _common.report(f"server CPU per join, whole storm of {N:,} vs its first 10 % (information)",
                   o.cpuPerJoin() * 1e6, o.cpuPerJoinFirstTenth() * 1e6, "us",
                   f"ours, first {o.milestone:,} joins", higherIsBetter=False)
    _common.report("server CPU per join (information)", o.cpuPerJoin() * 1e6,
                   b.cpuPerJoin() * 1e6, "us", baseline, higherIsBetter=False)
    _common.report("joins per second in the storm (information)", o.joinsPerSecond(),
                   b.joinsPerSecond(), "joins/s", baseline)
    if o.times and b.times:
        _common.report("join time p99 in the storm (information)",
                       _common.percentile(o.times, 0.99) * 1e3,
                       _common.percentile(b.times, 0.99) * 1e3, "ms", baseline,
                       higherIsBetter=False)
    _common.reportLimit("server memory per idle grouped client (RSS after the idle window)",
                        ours.memoryPerClient() / KIB, bare.memoryPerClient() / KIB, "KiB",
                        baseline, 8)
    _common.report("server memory per client just grouped (information)",
                   ours.memoryPerClient(ours.rssGrouped) / KIB,
                   bare.memoryPerClient(bare.rssGrouped) / KIB, "KiB", baseline,
                   higherIsBetter=False)
    _common.reportLimit("server CPU per idle client per second", ours.idlePerClient() * 1e6,
                        bare.idlePerClient() * 1e6, "us", baseline, 10)
    if args.trickle > 0 and args.hold > 0:
        _common.report("server CPU per relayed frame under the trickle", ours.perFrame() * 1e6,
                       bare.perFrame() * 1e6, "us", "bare forwarder, per forwarded datagram",
                       goal=1.0, higherIsBetter=False)
        _common.report("server CPU per relayed user message (information)",
                       ours.perMessage() * 1e6, bare.perMessage() * 1e6, "us",
                       "bare forwarder", higherIsBetter=False)
        _common.report("server CPU per relayed frame, net of the idle rate (information)",
                       ours.perFrame(net=True) * 1e6, bare.perFrame(net=True) * 1e6, "us",
                       "bare forwarder", higherIsBetter=False)
        _common.reportLimit("messages lost in the hold", ours.lost(), bare.lost(), "messages",
                            "bare forwarder, unreliable UDP", 0,
                            note=f"; {ours.sent:,} sent, {ours.received:,} received")
        _common.reportLimit("clients dropped during the hold",
                            max(ours.droppedServer, ours.droppedClients),
                            max(bare.droppedServer, bare.droppedClients), "clients", baseline, 0)


async def run(reactor, args) -> None:
    budget = _common.Budget(reactor, args.deadline)
    N = args.clients
    groups = math.ceil(N / args.group_size)
    print(f"scale: {N:,} clients in {groups:,} relay-only P2P groups of {args.group_size}, from"
          f" {args.load_processes} load processes; idle window {args.idle:g} s, hold"
          f" {args.hold:g} s at {args.trickle:g} relayed messages/s; join timeout"
          f" {args.join_timeout:g} s; {os.cpu_count()} cores; keepalives (NetClient's, and"
          f" the bare clients'): UDP every {args.keepalive:.1f} s, TCP every"
          f" {args.tcp_keepalive:g} s")
    print(f"  ours: PYTHONPATH=bench:. {' '.join(twistdCommand()[1:] or ['twistd'])}"
          f" {' '.join(twistdArguments('<tmp>', ['--backlog', args.backlog]))}"
          f" (env SCALE_GROUP_SIZE={args.group_size})")
    print(f"  {args.plan}", flush=True)
    if args.wait_quiet:
        await _common.waitQuiet(reactor, budget, args.wait_quiet)
    ours = await runSide(reactor, budget, args, bare=False)
    bare = await runSide(reactor, budget, args, bare=True)
    printResults(args, ours, bare)


def keepaliveSchedule(clientTimeout: float) -> tuple[float, float]:
    """(seconds between a NetClient's keepalives over UDP, at least how many
    between those over TCP), as this checkout's client engine schedules them
    (before it kept TCP quiet: both every fifth of the timeout)."""
    from proud_twisted.client import engine
    perTimeout = getattr(engine, "KEEPALIVES_PER_TIMEOUT", 5)
    interval = clientTimeout / perTimeout
    return interval, getattr(engine, "TCP_KEEPALIVE_WHILE_UDP", interval)


def portRange() -> tuple[int, int] | None:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as ports:
            low, high = map(int, ports.read().split())
    except (OSError, ValueError):
        return None
    return low, high


def readSysctl(name: str) -> str:
    try:
        with open(f"/proc/sys/{name.replace('.', '/')}") as value:
            return value.read().strip()
    except OSError:
        return "?"


class ListenQueue:
    """The kernel's caps on a listen queue, raised to ``length`` for the run
    where this process may (root) and put back after; ``said`` tells what it
    did or what the run needs. Linux caps listen(2)'s backlog at
    net.core.somaxconn and half-open connections at tcp_max_syn_backlog: a
    storm of N connects at once needs both at N, or SYNs are dropped (each
    then waits a 1 s SYN retransmission) whatever the server does."""

    NAMES = ("net.core.somaxconn", "net.ipv4.tcp_max_syn_backlog")

    def __init__(self, length: int, needed: int) -> None:
        self.length = length
        self.needed = min(length, needed)
        self.saved: dict = {}
        self.said = ""

    def __enter__(self):
        low = {name: value for name in self.NAMES
               if (value := readSysctl(name)).isdigit() and int(value) < self.needed}
        for name, value in low.items():
            try:
                writeSysctl(name, str(self.length))
            except OSError:
                continue
            self.saved[name] = value
        missing = sorted(set(low) - set(self.saved))
        raised = ", ".join(f"{name} {value} -> {self.length}" for name, value in self.saved.items())
        self.said = (f"raised for this run: {raised}" if raised else "listen queue caps as found")
        if missing:
            self.said += (f"; run as root or set {', '.join(missing)} >= {self.length}"
                          " (sysctl -w) or SYNs will be dropped")
        return self

    def __exit__(self, *exc_info) -> None:
        for name, value in self.saved.items():
            writeSysctl(name, value)


def writeSysctl(name: str, value: str) -> None:
    with open(f"/proc/sys/{name.replace('.', '/')}", "w") as setting:
        setting.write(value)


def checkResources(parser, args) -> str:
    """Refuse an N this machine cannot hold; a line saying what it takes."""
    N = args.clients
    limit = _common.raiseFileLimit()
    perLoad = 2 * math.ceil(N / args.load_processes) + FD_MARGIN
    server = N + FD_MARGIN
    if limit is not None and max(perLoad, server) > limit:
        parser.error(f"--clients {N} needs {server:,} open files in the server and {perLoad:,}"
                     f" in each of {args.load_processes} load processes; the hard limit is"
                     f" {limit:,} (raise it: ulimit -Hn, or /etc/security/limits.conf; or"
                     " use more --load-processes)")
    ports = portRange()
    if ports is not None:
        available = ports[1] - ports[0] + 1
        if available < N + FD_MARGIN:
            parser.error(f"--clients {N} needs {N:,} loopback TCP ports and {N:,} UDP ports"
                         f" at once; the ephemeral range {ports[0]}-{ports[1]} has"
                         f" {available:,} (widen net.ipv4.ip_local_port_range, or fewer"
                         " clients)")
    return (f"needs: {server:,} descriptors in the server, {perLoad:,} in each load process"
            f" (limit {limit or 'none':,}); {N:,} TCP and {N:,} UDP ephemeral ports of"
            f" {'?' if ports is None else f'{ports[1] - ports[0] + 1:,}'}"
            f" ({'?' if ports is None else f'{ports[0]}-{ports[1]}'}); listen backlog"
            f" {args.backlog} (net.core.somaxconn {readSysctl('net.core.somaxconn')},"
            f" tcp_max_syn_backlog {readSysctl('net.ipv4.tcp_max_syn_backlog')},"
            f" syncookies {readSysctl('net.ipv4.tcp_syncookies')})")


def main() -> int:
    from proud_twisted._glue.udpbuffers import (
        DEFAULT_CLIENT_UDP_BUFFER,
        DEFAULT_SERVER_UDP_BUFFER,
    )
    from proud_twisted.client.netclient import DEFAULT_JOIN_TIMEOUT
    from proud_twisted.server.netserver import DEFAULT_BACKLOG, DEFAULT_CLIENT_TIMEOUT

    _common.printCore()
    parser = _common.scriptParser(__doc__)
    parser.add_argument("--clients", type=int, help="clients (default 10,000; quick 200)")
    parser.add_argument("--group-size", type=int, default=10,
                        help="members of each P2P group (default 10)")
    parser.add_argument("--load-processes", type=int,
                        help="processes the clients run in (default 4; quick 2)")
    parser.add_argument("--trickle", type=float,
                        help="relayed messages a second in all during the hold, 0: none"
                             " (default 1,000; quick 200)")
    parser.add_argument("--hold", type=float,
                        help="seconds of the trickle (default 60; quick 3)")
    parser.add_argument("--idle", type=float,
                        help="seconds of the idle window (default 20; quick 4)")
    parser.add_argument("--join-timeout", type=float, default=STORM_JOIN_TIMEOUT,
                        help=f"each client's join timeout (default {STORM_JOIN_TIMEOUT:g}:"
                             f" NetClient's {DEFAULT_JOIN_TIMEOUT:g} plus the load processes'"
                             " own CPU for a storm of 10,000 on 2 cores; the joins within"
                             f" {DEFAULT_JOIN_TIMEOUT:g} s print beside it)")
    parser.add_argument("--backlog", type=int,
                        help="both servers' TCP listen queue (default: at least --clients, at"
                             f" least {DEFAULT_BACKLOG:,}); as root the run raises"
                             " net.core.somaxconn and net.ipv4.tcp_max_syn_backlog to it"
                             " and puts them back at the end")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 200 clients, 2 load processes, short windows")
    parser.add_argument("--profile-server", action="store_true",
                        help="cProfile our server during the storm and a second idle window")
    parser.add_argument("--profile-load", action="store_true",
                        help="cProfile the first load process's NetClients during the storm")
    parser.add_argument("--profile-memory", action="store_true",
                        help="trace our server's Python allocations (tracemalloc) and list"
                             " what it holds per client after the idle window; its RSS"
                             " figures then include tracemalloc's own traces")
    parser.add_argument("--profile-top", type=int, default=25,
                        help="functions listed per profile (default 25)")
    parser.add_argument("--top-up", type=int, default=100,
                        help="after the storm, join the clients whose join failed again,"
                             " this many at a time per load process, so that the rest"
                             " measures N clients (default 100; 0: go on with those joined)")
    _common.addWaitQuiet(parser, "first")
    _common.addTimeout(parser, 1500.0)
    args = parser.parse_args()
    for name, value in (QUICK if args.quick else DEFAULTS).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.backlog is None:
        args.backlog = max(DEFAULT_BACKLOG, args.clients)
    args.defaultJoinTimeout = DEFAULT_JOIN_TIMEOUT
    args.server_udp_buffer = DEFAULT_SERVER_UDP_BUFFER
    args.client_udp_buffer = DEFAULT_CLIENT_UDP_BUFFER
    args.keepalive, args.tcp_keepalive = keepaliveSchedule(DEFAULT_CLIENT_TIMEOUT)
    if (args.clients < 1 or args.group_size < 1 or args.load_processes < 1
            or args.idle <= 0 or args.hold < 0 or args.trickle < 0 or args.timeout <= 0
            or args.top_up < 0 or args.wait_quiet < 0 or args.backlog < 1):
        parser.error("need --clients, --group-size, --load-processes, --backlog >= 1, --idle > 0,"
                     " --hold and --trickle >= 0, --timeout > 0")
    args.plan = checkResources(parser, args)
    with ListenQueue(args.backlog, args.clients) as queue:
        args.plan += f"; {queue.said}"
        return _common.runUntilDeadline(run, args, grace=30.0)


if __name__ == "__main__":
    sys.exit(main())

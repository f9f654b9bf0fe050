"""The whole framework (a NetServer, clients A and B, encryption on) against
bare Twisted in the same layout: same-process round trips, direct and
relayed, and the CPU time each process spends per message of a windowed
stream with the server and both clients in processes of their own.

Part 1, one process, one reactor (as p2p_times.py): A sends a 64-byte
reliable message to B, B echoes it reliably, A times the round trip and
sends the next; ``--round-trips`` timed ones after 100 untimed, direct
(once the pair punched: whenDirect on both sides) and relayed (forceRelay
on both sides). Baselines in the same run and process: a bare Twisted UDP
echo (two DatagramProtocols, A -> B -> A) for direct, a bare Twisted UDP
relay (A -> forwarder -> B -> forwarder -> A) for relayed. Alternated
``--repeat`` times; medians and p99 over all runs, and the CPU time of the
process per round trip (time.process_time; it holds every party, so it
counts the server's and both clients' work). Goals: direct <= 1.5 x the bare
echo, relayed <= 2 x the bare relay (medians).

Part 2, three processes (_frtt_server.py, _frtt_client.py as A and B, each
with a JSON control channel): A keeps ``--window`` reliable messages in
flight to B, B echoes each reliably, A sends the next as each echo comes
back, until ``--messages`` echoes are back (after an untimed warm-up of a
tenth as many). The bench process reads each process's CPU time from /proc
before and after (the sum of /proc/<pid>/task/*/schedstat: the run time
that /proc/<pid>/stat's utime + stime are scaled to, in nanoseconds rather
than 10 ms ticks; stat's sum is printed beside it as a check) and divides
by the messages: a message is one sent by A and echoed by B, so each end
sends one and receives one, and the relay forwards both. Direct and
relayed, beside bare Twisted in the same layout: a bare UDP streamer
process and a bare echo process (A -> B), and a bare forwarder process
between them (A -> F -> B). Goals: CPU per direct message at each end <= 2 x
bare Twisted's; the server's CPU per relayed message <= 1 x the bare
forwarder's. The windowed rate (messages a second, A's wall clock) is
information. Our session packs the messages of a reactor turn into shared
datagrams (about 11 of 64 B here), the bare processes send a datagram a
message: the windowed figures are what a game pays per message, and the
stream lines give our datagrams and relayed frames per message. Then
``--one-in-flight`` messages (default a quarter of ``--messages``) go one at
a time, where nothing coalesces: CPU per datagram, information only, since
every datagram also wakes a sleeping process and that cost varies with how
idle the machine is (a bare end took 16 us a message on a busy machine, 36
on a quiet one). Cross-process round trips (and that stream's rate) are not
reported: on this machine kind they measure how the guest idles more than
the code. A line per part gives what other processes took of the machine
meanwhile (/proc/stat).

The server punches every pair at once (HolePunchPolicy.ALWAYS) and its relay
rate limits are out of the way (a windowed stream passes the default 10,000
frames a second a client; checking a limit costs the same whatever it is).

``--profile`` runs one more direct and one more relayed block of part 1
under cProfile (not the timed ones) and prints, for each, the top functions
by own time and the own time by source file. The mypyc-compiled core shows
as built-in calls; everything else is Python.

    python bench/framework_rtt.py [--round-trips 2000] [--messages 20000]
        [--window 32] [--one-in-flight 5000] [--repeat 3] [--timeout 300]
        [--profile] [--quick]
"""

from __future__ import annotations

import collections
import os
import sys
import uuid

from twisted.internet import defer
from twisted.internet.protocol import DatagramProtocol

import _common
from _common import (
    LOOPBACK,
    STEP_WAIT,
    WARMUP,
    BenchFailure,
    Budget,
    ChildProcess,
    Profile,
    Setup,
    clock,
    cpuClock,
    report,
    us,
)

VERSION = uuid.UUID("3d6b9f12-8c4e-4a7b-b5d0-6e2f1a9c8b47")
DIRECT_GOAL = 1.5
RELAYED_GOAL = 2.0
CPU_DIRECT_GOAL = 2.0
CPU_RELAY_GOAL = 1.0
UNLIMITED = 1e12
STREAM_WAIT = 120.0
"""At most this long for one windowed stream."""
CHILD_GRACE = 30.0
"""A child process outlives --timeout by this much at most."""


# Part 1: one process

async def startSameProcess(reactor, budget: Budget) -> Setup:
    from proud_twisted import HolePunchPolicy, NetClient, NetServer, ServerUdpState
    serverEvents = _common.serverEvents()
    server = NetServer(serverEvents, VERSION, tcpPort=0, udpPort=0, interface=LOOPBACK,
                       reactor=reactor, holePunchPolicy=HolePunchPolicy.ALWAYS,
                       relayFramesPerSecond=UNLIMITED, relayBytesPerSecond=UNLIMITED)
    server.startService()
    key = server.identity.publicKey()
    port = server.getTcpAddress()[1]
    eventsA, eventsB = _common.clientEvents("A"), _common.clientEvents("B")
    a = NetClient(eventsA, reactor=reactor, udpInterface=LOOPBACK, serverKey=key)
    b = NetClient(eventsB, reactor=reactor, udpInterface=LOOPBACK, serverKey=key)
    setup = Setup(reactor, server, a, b, eventsA, eventsB, serverEvents, None, None)
    try:
        setup.idA = await budget.wait(a.connect(LOOPBACK, port, VERSION), STEP_WAIT, "A to join")
        setup.idB = await budget.wait(b.connect(LOOPBACK, port, VERSION), STEP_WAIT, "B to join")
        await budget.until(lambda: (a.getServerUdpState() is ServerUdpState.CONFIRMED
                                    and b.getServerUdpState() is ServerUdpState.CONFIRMED),
                           STEP_WAIT, "both clients' UDP to the server")
        server.createP2PGroup([setup.idA, setup.idB])
        await budget.until(lambda: (setup.hasPeers()
                                    and a.getPeerInfo(setup.idB).stats is not None
                                    and b.getPeerInfo(setup.idA).stats is not None),
                           STEP_WAIT, "the pair to be introduced")
    except BaseException:
        await stopSameProcess(setup)
        raise
    return setup


async def stopSameProcess(setup: Setup) -> None:
    await _common.disconnect(setup.reactor, (setup.a, setup.b), 0.1, 5.0)
    await setup.server.stopService()


async def setPath(setup: Setup, budget: Budget, relayed: bool, what: str) -> None:
    setup.a.forceRelay(setup.idB, relayed)
    setup.b.forceRelay(setup.idA, relayed)
    if relayed:
        await budget.until(setup.bothRelayed, STEP_WAIT, f"{what}: both sides relayed")
    else:
        await _common.goDirect(setup, budget, what)


class Pinger(DatagramProtocol):
    noisy = False

    def __init__(self) -> None:
        self.pp = None

    def datagramReceived(self, data, addr):
        self.pp.echoed(data)


async def bareRoundTrips(reactor, budget: Budget, count: int, size: int,
                         relayed: bool) -> dict:
    """C{count} timed bare UDP round trips (after L{WARMUP}), through a
    forwarder if C{relayed}; their times and the CPU time per round trip."""
    pinger = Pinger()
    ports = [reactor.listenUDP(0, p, interface=LOOPBACK) for p in (pinger, _common.BareUdpEcho())]
    ends = tuple((LOOPBACK, port.getHost().port) for port in ports)
    target = ends[1]
    if relayed:
        ports.append(reactor.listenUDP(0, _common.BareUdpForwarder(ends), interface=LOOPBACK))
        target = (LOOPBACK, ports[-1].getHost().port)
    write = pinger.transport.write
    pinger.pp = _common.PingPong(count, WARMUP, 0, size, lambda data: write(data, target))
    try:
        cpu = cpuClock()
        times = await budget.wait(pinger.pp.start(), STEP_WAIT * 2,
                                  f"bare {'relayed' if relayed else 'direct'} round trips")
        cpu = cpuClock() - cpu
    finally:
        await _common.closePorts(ports)
    return {"times": times, "cpu": cpu / (count + WARMUP)}


async def oursRoundTrips(setup: Setup, budget: Budget, block: int, count: int, size: int,
                         relayed: bool, profile: Profile = _common.NO_PROFILE) -> dict:
    await setPath(setup, budget, relayed, f"block {block}")
    profile.start()
    cpu = cpuClock()
    try:
        result = await _common.pingPongOurs(setup, budget, block, count, size, relayed)
    finally:
        cpu = cpuClock() - cpu
        profile.stop()
    if any(result["wrongPath"]):
        raise BenchFailure(f"block {block}: deliveries on the wrong path (A, B):"
                           f" {result['wrongPath']}")
    if not relayed and result["framesRelayed"]:
        raise BenchFailure(f"block {block}: the server relayed {result['framesRelayed']}"
                           " frames of the direct pair")
    return {"times": result["times"], "cpu": cpu / (count + WARMUP),
            "framesRelayed": result["framesRelayed"]}


async def sameProcess(reactor, budget: Budget, args) -> dict:
    print(f"part 1: one process, one reactor ({type(reactor).__name__}): reliable"
          f" {args.size} B ping-pong A -> B -> A, {args.round_trips} timed round trips"
          f" (after {WARMUP} untimed) per path per repeat, x {args.repeat}", flush=True)
    names = ("bareDirect", "direct", "relayed", "bareRelayed")
    results = {name: {"times": [], "cpu": []} for name in names}
    profiles = {}
    setup = await startSameProcess(reactor, budget)
    spans = []
    try:
        for rep in range(args.repeat):
            others = Others()
            runs = {
                "bareDirect": await bareRoundTrips(reactor, budget, args.round_trips,
                                                   args.size, relayed=False),
                "direct": await oursRoundTrips(setup, budget, 2 * rep, args.round_trips,
                                               args.size, relayed=False),
                "relayed": await oursRoundTrips(setup, budget, 2 * rep + 1,
                                                args.round_trips, args.size, relayed=True),
                "bareRelayed": await bareRoundTrips(reactor, budget, args.round_trips,
                                                    args.size, relayed=True),
            }
            spans.append(others.end())
            for name, run in runs.items():
                results[name]["times"] += run["times"]
                results[name]["cpu"].append(run["cpu"])
            print(f"  repeat {rep + 1}: median (CPU per round trip) ours direct"
                  f" {us(_common.median(runs['direct']['times']))}"
                  f" ({us(runs['direct']['cpu'], 1)}), bare echo"
                  f" {us(_common.median(runs['bareDirect']['times']))}"
                  f" ({us(runs['bareDirect']['cpu'], 1)}); ours relayed"
                  f" {us(_common.median(runs['relayed']['times']))}"
                  f" ({us(runs['relayed']['cpu'], 1)}), bare relay"
                  f" {us(_common.median(runs['bareRelayed']['times']))}"
                  f" ({us(runs['bareRelayed']['cpu'], 1)}); server relayed"
                  f" {runs['relayed']['framesRelayed']} frames", flush=True)
        if args.profile:
            for offset, name in enumerate(("direct", "relayed")):
                profiles[name] = Profile(True)
                await oursRoundTrips(setup, budget, 2 * args.repeat + offset, args.round_trips,
                                     args.size, relayed=name == "relayed",
                                     profile=profiles[name])
        await setPath(setup, budget, False, "the end")
        setup.checkHandlers()
    finally:
        await stopSameProcess(setup)
    return {"results": results, "profiles": profiles, "others": spans}


# Part 2: three processes

class Layout:
    """The middle process (our server, or a bare forwarder) and the two ends."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.middle = self.a = self.b = None
        self.hellos = {}

    def processes(self) -> dict:
        return {"server": self.middle, "A": self.a, "B": self.b}

    def pids(self) -> dict:
        return {name: self.hellos[name]["pid"] for name in ("server", "A", "B")}

    async def stop(self, reactor) -> None:
        for process in (self.a, self.b, self.middle):
            if process is not None:
                await process.stop(reactor)


async def spawn(reactor, budget: Budget, layout: Layout, name: str, script: str, *options):
    process = ChildProcess.spawn(reactor, f"{layout.label} {name}", script,
                                 "--lifetime", f"{budget.left() + CHILD_GRACE:.0f}", *options)
    setattr(layout, {"server": "middle", "A": "a", "B": "b"}[name], process)
    layout.hellos[name] = await process.first(reactor, budget)
    return layout.hellos[name]


async def startOurs(reactor, budget: Budget) -> Layout:
    layout = Layout("ours")
    try:
        server = await spawn(reactor, budget, layout, "server", "_frtt_server.py")
        options = ("--port", server["tcpPort"], "--key", server["key"],
                   "--version", server["version"])
        idA = (await spawn(reactor, budget, layout, "A", "_frtt_client.py", *options))["hostID"]
        idB = (await spawn(reactor, budget, layout, "B", "_frtt_client.py", *options))["hostID"]
        await layout.middle.ask(budget, f"group {idA} {idB}")
        await layout.a.ask(budget, f"peer {idB}")
        await layout.b.ask(budget, f"peer {idA}")
    except BaseException:
        await layout.stop(reactor)
        raise
    return layout


async def startBare(reactor, budget: Budget) -> Layout:
    layout = Layout("bare")
    try:
        await spawn(reactor, budget, layout, "server", "_frtt_server.py", "--bare")
        a = await spawn(reactor, budget, layout, "A", "_frtt_client.py", "--bare", "stream")
        b = await spawn(reactor, budget, layout, "B", "_frtt_client.py", "--bare", "echo")
        await layout.middle.ask(budget, f"ends {a['udpPort']} {b['udpPort']}")
    except BaseException:
        await layout.stop(reactor)
        raise
    return layout


async def askLong(process: ChildProcess, budget: Budget, command: str, seconds: float) -> dict:
    """L{ChildProcess.ask}, waiting up to C{seconds} for the answer."""
    if process.ended:
        raise BenchFailure(f"{process.label}: the process has exited"
                           f" (status {process.exitCode})")
    process.transport.write(command.encode() + b"\n")
    return await process.next(budget, f"the answer to {command!r}", seconds)


def cpuNow(layout: Layout) -> dict:
    """Each process's CPU seconds: (precise, from /proc/<pid>/stat)."""
    figures = {}
    for name, pid in layout.pids().items():
        precise, ticks = _common.processRunSeconds(pid), _common.processCpuSeconds(pid)
        if precise is None or ticks is None:
            raise BenchFailure(f"{layout.label} {name}: process {pid} is gone")
        figures[name] = (precise, ticks)
    return figures


class Others:
    """What other processes take of the machine meanwhile: its busy time
    (/proc/stat) less this process's CPU time and that of the processes
    measured (10 ms ticks: a figure for long stretches only)."""

    def __init__(self) -> None:
        self.busy, self.cpu, self.wall = _common.machineBusySeconds(), cpuClock(), clock()

    def end(self, measured: float = 0.0) -> tuple:
        """(CPU seconds of other processes, wall seconds) since this began."""
        busy = _common.machineBusySeconds()
        if busy is None or self.busy is None:
            return (0.0, 0.0)
        own = cpuClock() - self.cpu
        return (max(0.0, busy - self.busy - own - measured), clock() - self.wall)


def othersLine(spans: list) -> str:
    cpu, wall = sum(s[0] for s in spans), sum(s[1] for s in spans)
    share = cpu / wall * 100 if wall else 0.0
    return (f"other processes on the machine meanwhile: {cpu:.2f} CPU s in {wall:.2f} s"
            f" ({share:.0f} % of a core; /proc/stat, 10 ms ticks)")


class Blocks:
    """Block numbers, fresh for every stream (a late echo is never taken for a new one)."""

    def __init__(self) -> None:
        self.next = 0

    def take(self) -> int:
        self.next += 1
        return self.next


async def stream(layout: Layout, budget: Budget, args, blocks: Blocks, relayed: bool,
                 mode: Mode) -> dict:
    """One stream of C{mode} through C{layout} (after an untimed warm-up):
    its figures and each process's CPU seconds during it."""
    ours = layout.label == "ours"
    if ours:
        # Both ends at once: an end forced onto the relay answers no probes.
        which = "relayed" if relayed else "direct"
        await defer.gatherResults([defer.ensureDeferred(end.ask(budget, f"path {which}"))
                                   for end in (layout.a, layout.b)], consumeErrors=True)
        statsBefore = (await layout.middle.ask(budget, "stats"))["stats"]
        target = ""
    else:
        hello = layout.hellos["server" if relayed else "B"]
        target = f" {hello['udpPort']}"
    seconds = max(1.0, min(STREAM_WAIT, budget.left()))

    async def one(count: int) -> dict:
        return await askLong(layout.a, budget,
                             f"stream {count} {mode.window} {args.size} {blocks.take()}"
                             f" {seconds:.1f}{target}", seconds + 5.0)

    await one(mode.warmup)
    others = Others()
    before = cpuNow(layout)
    result = await one(mode.messages)
    after = cpuNow(layout)
    result["cpu"] = {name: after[name][0] - before[name][0] for name in after}
    result["ticks"] = {name: after[name][1] - before[name][1] for name in after}
    result["others"] = others.end(sum(result["cpu"].values()))
    if result["messages"] != mode.messages:
        raise BenchFailure(f"{layout.label}: {result['messages']} of {mode.messages} echoes")
    if ours:
        statsAfter = (await layout.middle.ask(budget, "stats"))["stats"]
        result["server"] = {k: statsAfter[k] - statsBefore[k] for k in
                            ("framesRelayed", "relayRequests", "relayRateLimited",
                             "spoofedDatagrams", "malformedDatagrams")}
        if result["wrongPath"]:
            raise BenchFailure(f"{result['wrongPath']} echoes at A came on the wrong path")
        if not relayed and result["server"]["framesRelayed"]:
            raise BenchFailure(f"the server relayed {result['server']['framesRelayed']}"
                               " frames of the direct pair")
    return result


class Mode:
    """A stream's shape: messages in flight, timed messages, untimed warm-up."""

    def __init__(self, name: str, window: int, messages: int) -> None:
        self.name, self.window, self.messages = name, window, messages
        self.warmup = max(2 * window, messages // 10)
        self.rated = window > 1
        """Whether its rate means anything: with one message in flight, the
        processes idle between datagrams, and the rate is how the guest idles."""


def modes(args) -> list:
    """The windowed stream (the goals), then one message in flight (information)."""
    chosen = [Mode("windowed", args.window, args.messages)]
    if args.one_in_flight:
        chosen.append(Mode("one in flight", 1, args.one_in_flight))
    return chosen


def describeStream(label: str, result: dict, mode: Mode) -> str:
    count = mode.messages
    perMessage = {name: cpu / count for name, cpu in result["cpu"].items()}
    line = f"{label:16s} {count} "
    if mode.rated:
        line += f"in {result['seconds']:.3f} s = {count / result['seconds']:>9,.0f} msg/s"
    else:
        line += "(wall time not compared: one in flight measures how the guest idles)"
    line += (f"; CPU per message: server/forwarder"
            f" {us(perMessage['server'], 2)}, A {us(perMessage['A'], 2)},"
            f" B {us(perMessage['B'], 2)}")
    if "session" in result:
        session, server = result["session"], result["server"]
        line += (f"; A's datagrams per message: sent {session['datagramsSent'] / count:.2f},"
                 f" received {session['datagramsReceived'] / count:.2f};"
                 f" retransmissions {session['retransmissions']};"
                 f" server frames relayed per message {server['framesRelayed'] / count:.2f}")
    return line


async def processes(reactor, budget: Budget, args) -> dict:
    print(f"part 2: server, A and B in three processes; a windowed stream of {args.messages}"
          f" reliable {args.size} B messages, {args.window} in flight, echoed reliably"
          f" (after {max(2 * args.window, args.messages // 10)} untimed), x {args.repeat}"
          + (f"; then {args.one_in_flight} with one in flight" if args.one_in_flight else ""),
          flush=True)
    names = ("direct", "relayed", "bareDirect", "bareRelayed")
    runs = {(mode.name, name): [] for mode in modes(args) for name in names}
    blocks = Blocks()
    ours = bare = None
    try:
        ours = await startOurs(reactor, budget)
        bare = await startBare(reactor, budget)
        for rep in range(args.repeat):
            order = (("bareDirect", bare, False), ("direct", ours, False),
                     ("relayed", ours, True), ("bareRelayed", bare, True))
            for mode in modes(args):
                for name, layout, relayed in order:
                    result = await stream(layout, budget, args, blocks, relayed, mode)
                    runs[(mode.name, name)].append(result)
                    print(f"  repeat {rep + 1}, {mode.name}: " + describeStream(
                        LABELS[name], result, mode), flush=True)
        status = {name: await process.ask(budget, "status" if name != "server" else "stats")
                  for name, process in ours.processes().items()}
    finally:
        for layout in (ours, bare):
            if layout is not None:
                await layout.stop(reactor)
    return {"runs": runs, "status": status}


LABELS = {"direct": "ours, direct", "relayed": "ours, relayed",
          "bareDirect": "bare, direct", "bareRelayed": "bare, relayed"}


# Output

def rttLine(label: str, times: list, cpu: list) -> str:
    med, p99 = _common.summarise(times)
    return (f"{label:28s} median {us(med):>8s}  p99 {us(p99):>8s}  CPU per round trip"
            f" {us(_common.median(cpu), 1):>9s}  (n={len(times)})")


def shortPath(path: str) -> str:
    for marker in ("/proud_twisted/", "/twisted/", "/bench/", "/lib/python3"):
        at = path.rfind(marker)
        if at >= 0:
            return path[at + 1:]
    return os.path.basename(path)


def functionName(key: tuple) -> str:
    path, line, name = key
    if path == "~":
        return name
    return f"{shortPath(path)}:{line}({name})"


def printProfile(label: str, profile: Profile, roundTrips: int, top: int) -> None:
    stats = profile.stats().stats      # {(file, line, name): (cc, nc, tt, ct, callers)}
    total = sum(tt for _, _, tt, _, _ in stats.values())
    print(f"--- profile, {label}: {roundTrips + WARMUP} round trips, {total * 1e3:.1f} ms"
          f" of own time in all ({total / (roundTrips + WARMUP) * 1e6:.1f} us per round trip"
          " under the profiler); top functions by own time ---")
    print(f"  {'own ms':>8s} {'own %':>6s} {'calls':>8s} {'us/call':>8s} {'cum ms':>8s}  function")
    ranked = sorted(stats.items(), key=lambda item: item[1][2], reverse=True)
    for key, (_, calls, tt, ct, _) in ranked[:top]:
        print(f"  {tt * 1e3:8.2f} {tt / total * 100:6.1f} {calls:8d} {tt / calls * 1e6:8.2f}"
              f" {ct * 1e3:8.2f}  {functionName(key)}")
    byFile = collections.Counter()
    for (path, _, name), (_, _, tt, _, _) in stats.items():
        byFile["(built-in) " + name if path == "~" else shortPath(path)] += tt
    print(f"--- profile, {label}: own time by source file (built-ins each apart) ---")
    for name, tt in byFile.most_common(top):
        print(f"  {tt * 1e3:8.2f} ms {tt / total * 100:6.1f} %  {name}")


def summariseSame(same: dict, args) -> None:
    res = same["results"]
    print()
    print("==== part 1: one process (all parties on one reactor) ====")
    print(f"round trips, {args.size} B reliable, echoed reliably:")
    for name, label in (("direct", "ours, direct"), ("bareDirect", "bare Twisted UDP echo"),
                        ("relayed", "ours, relayed (forceRelay)"),
                        ("bareRelayed", "bare Twisted UDP relay")):
        print("  " + rttLine(label, res[name]["times"], res[name]["cpu"]))
    print("  " + othersLine(same["others"]))
    med = {name: _common.summarise(r["times"]) for name, r in res.items()}
    cpu = {name: _common.median(r["cpu"]) for name, r in res.items()}
    report("round trip direct, median", med["direct"][0] * 1e6, med["bareDirect"][0] * 1e6,
           "us", "bare Twisted UDP echo, median", goal=DIRECT_GOAL, higherIsBetter=False)
    report("round trip relayed, median", med["relayed"][0] * 1e6, med["bareRelayed"][0] * 1e6,
           "us", "bare Twisted UDP relay, median", goal=RELAYED_GOAL, higherIsBetter=False)
    report("round trip direct, p99 (information)", med["direct"][1] * 1e6,
           med["bareDirect"][1] * 1e6, "us", "bare Twisted UDP echo, p99")
    report("round trip relayed, p99 (information)", med["relayed"][1] * 1e6,
           med["bareRelayed"][1] * 1e6, "us", "bare Twisted UDP relay, p99")
    report("CPU per round trip direct, one process (information)", cpu["direct"] * 1e6,
           cpu["bareDirect"] * 1e6, "us", "bare Twisted UDP echo")
    report("CPU per round trip relayed, one process (information)", cpu["relayed"] * 1e6,
           cpu["bareRelayed"] * 1e6, "us", "bare Twisted UDP relay")


def summariseProcesses(procs: dict, args) -> None:
    runs = procs["runs"]
    print()
    print("==== part 2: three processes (CPU from /proc, per message sent by A and echoed"
          " by B) ====")

    def perMessage(mode: Mode, name: str, process: str) -> float:
        return _common.median([r["cpu"][process] / mode.messages
                               for r in runs[(mode.name, name)]]) * 1e6

    def rate(mode: Mode, name: str) -> float:
        return _common.median([mode.messages / r["seconds"] for r in runs[(mode.name, name)]])

    def datagrams(mode: Mode, name: str) -> str:
        results = runs[(mode.name, name)]
        if "session" not in results[0]:
            return "1 each way a hop (by construction)"
        sent = _common.median([r["session"]["datagramsSent"] for r in results])
        received = _common.median([r["session"]["datagramsReceived"] for r in results])
        relayed = _common.median([r["server"]["framesRelayed"] for r in results])
        return (f"A sent {sent / mode.messages:.2f}, received {received / mode.messages:.2f};"
                f" server relayed {relayed / mode.messages:.2f} frames")

    for mode in modes(args):
        print(f"  {mode.name}: {mode.messages} messages, {mode.window} in flight;"
              f" medians of {args.repeat}")
        for name in ("direct", "bareDirect", "relayed", "bareRelayed"):
            shown = f"{rate(mode, name):>9,.0f} msg/s; " if mode.rated else ""
            print(f"    {LABELS[name]:16s} {shown}CPU us per message:"
                  f" server/forwarder {perMessage(mode, name, 'server'):6.2f},"
                  f" A {perMessage(mode, name, 'A'):6.2f}, B {perMessage(mode, name, 'B'):6.2f};"
                  f" datagrams per message: {datagrams(mode, name)}")
    precise = collections.Counter()
    ticks = collections.Counter()
    for (_, name), results in runs.items():
        for r in results:
            for process in r["cpu"]:
                precise[(name.startswith("bare"), process)] += r["cpu"][process]
                ticks[(name.startswith("bare"), process)] += r["ticks"][process]
    print("  check, CPU seconds over all timed streams, schedstat / stat utime+stime (10 ms"
          " ticks): " + "; ".join(
              f"{'bare' if bare else 'ours'} {process} {precise[(bare, process)]:.3f}"
              f" / {ticks[(bare, process)]:.2f}" for bare, process in sorted(precise)))
    print("  " + othersLine([r["others"] for results in runs.values() for r in results]))
    status = procs["status"]
    print(f"  ours at the end: server log events {status['server']['logLevels']},"
          f" rate-limited {status['server']['stats']['relayRateLimited']};"
          f" A log events {status['A']['logLevels']}; B echoed {status['B']['echoed']},"
          f" log events {status['B']['logLevels']}, deliveries on the wrong path"
          f" {status['B']['wrongPath']}")
    ends = {"A": ("the sender", "streamer"), "B": ("the echo", "echo")}
    for mode in modes(args):
        windowed = mode.window == args.window and mode.name == "windowed"
        tag = "" if windowed else f", {mode.name} (information)"
        for end, (role, bare) in ends.items():
            report(f"CPU per direct message, {end} ({role}){tag}",
                   perMessage(mode, "direct", end), perMessage(mode, "bareDirect", end), "us",
                   f"bare Twisted UDP {bare} process",
                   goal=CPU_DIRECT_GOAL if windowed else None, higherIsBetter=False)
        report(f"CPU per relayed message, server{tag}", perMessage(mode, "relayed", "server"),
               perMessage(mode, "bareRelayed", "server"), "us",
               "bare Twisted UDP forwarder process",
               goal=CPU_RELAY_GOAL if windowed else None, higherIsBetter=False)
        for end, (role, bare) in ends.items():
            report(f"CPU per relayed message, {end} ({role}){tag or ' (information)'}",
                   perMessage(mode, "relayed", end), perMessage(mode, "bareRelayed", end),
                   "us", f"bare Twisted UDP {bare} process")
        if windowed:
            report("windowed rate direct (information)", rate(mode, "direct"),
                   rate(mode, "bareDirect"), "msg/s",
                   "bare Twisted UDP, streamer and echo processes")
            report("windowed rate relayed (information)", rate(mode, "relayed"),
                   rate(mode, "bareRelayed"), "msg/s",
                   "bare Twisted UDP, through a forwarder process")


async def run(reactor, args) -> None:
    budget = Budget(reactor, args.deadline)
    same = await sameProcess(reactor, budget, args)
    procs = await processes(reactor, budget, args)
    summariseSame(same, args)
    summariseProcesses(procs, args)
    for name, profile in same["profiles"].items():
        print()
        printProfile(f"same process, {name}", profile, args.round_trips, args.profile_top)


def main() -> int:
    _common.printCore()
    parser = _common.scriptParser(__doc__)
    parser.add_argument("--round-trips", type=int, default=2000,
                        help=f"part 1: timed round trips per path per repeat, after {WARMUP}"
                             " untimed (default 2000)")
    parser.add_argument("--messages", type=int, default=20000,
                        help="part 2: messages per windowed stream (default 20000)")
    parser.add_argument("--window", type=int, default=32,
                        help="part 2: messages in flight (default 32)")
    parser.add_argument("--one-in-flight", type=int, default=None,
                        help="part 2: then a stream of this many messages with one in flight"
                             " (no coalescing: CPU per datagram; default a quarter of"
                             " --messages, 0 skips it)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="alternate ours and the baselines this many times (default 3)")
    parser.add_argument("--size", type=int, default=64, help="message size (default 64)")
    _common.addTimeout(parser, 300.0)
    _common.addProfile(parser, "one more direct and relayed block of part 1")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 100 round trips, 300 messages, 1 repeat")
    args = parser.parse_args()
    if args.quick:
        args.round_trips, args.messages, args.repeat = 100, 300, 1
    if args.one_in_flight is None:
        args.one_in_flight = max(100, args.messages // 4)
    if (min(args.round_trips, args.messages, args.window, args.repeat) < 1
            or args.one_in_flight < 0 or args.timeout <= 0):
        parser.error("--round-trips, --messages, --window and --repeat must be >= 1"
                     " and --timeout > 0")
    if args.size < _common.MESSAGE_HEADER_SIZE:
        parser.error(f"--size must be at least {_common.MESSAGE_HEADER_SIZE}")
    return _common.runUntilDeadline(run, args, grace=10.0)


if __name__ == "__main__":
    sys.exit(main())

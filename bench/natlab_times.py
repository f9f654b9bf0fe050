"""How long a pair behind two cone NATs takes, in the real NAT lab, from the
server's createP2PGroup to (1) the first message delivered between them, and
through which path it came, and (2) the pair being direct. Needs root and
iptables (see tests/natlab.py).

The first messages are the agents' hellos (tests/natlab_agent.py): each client
sends its reliable "hello from NAME" as soon as onP2PMemberJoin announces the
other, through the relay, since no direct path exists yet. Inside the lab
punching takes only a few milliseconds, so the pair can go direct while a
hello is still on its way through the server; the sender's session then
resends what is in flight on the new direct path, and that copy can arrive
first (the relayed one is then a duplicate). Every hello is reported with the
path it actually came by, and the relay figure is taken only over hellos that
did come through the relay.

Times are C{time.monotonic()} stamps taken inside the server and client
processes (one clock for the whole machine). The baseline, measured in the
same lab in the same run, is a bare Twisted UDP echo round trip from a host
behind a NAT to the public segment: the least a relayed message can cost.
Result lines read ours / baseline, lower is better.

Every wait is bounded (each by C{WAIT}, all of them by C{--timeout}: exit
status 1 and a C{gave up} line when it runs out); each run builds its own lab
and deletes it again, also when the run fails.

    python bench/natlab_times.py [--runs 5] [--timeout 300]
"""

from __future__ import annotations

import json
import os
import select
import statistics
import subprocess
import sys
import time

import _common
from _common import ms

# The NAT lab belongs to the tests (tests/test_natlab.py drives the same lab,
# and its agents are tests/natlab_agent.py): the one thing of tests/ a
# benchmark uses.
from tests.natlab import LabError, LabTimeout, NatLab, labAvailable

WAIT = 30.0
"""At most this long for any one step (a start, a join, a message, a direct path)."""
ECHO_PORT = 33334
SERVER_PORT = 33333
PINGS = 50
BASELINE_NAME = "bare Twisted UDP echo round trip behind a NAT"

ECHO_SERVER = f"""
import sys
from twisted.internet import reactor
from twisted.internet.protocol import DatagramProtocol
class Echo(DatagramProtocol):
    def datagramReceived(self, data, addr):
        self.transport.write(data, addr)
reactor.listenUDP({ECHO_PORT}, Echo())
reactor.callWhenRunning(lambda: (print("ready", flush=True)))
reactor.callLater({WAIT:g}, reactor.stop)
reactor.run()
"""

ECHO_CLIENT = """
import json, sys, time
from twisted.internet import reactor
from twisted.internet.protocol import DatagramProtocol
target, count = (sys.argv[1], int(sys.argv[2])), int(sys.argv[3])
class Ping(DatagramProtocol):
    rtts = []
    def startProtocol(self):
        self.send()
    def send(self):
        self.sent = time.monotonic()
        self.transport.write(b"ping", target)
    def datagramReceived(self, data, addr):
        self.rtts.append(time.monotonic() - self.sent)
        if len(self.rtts) < count:
            self.send()
        else:
            print(json.dumps(self.rtts), flush=True)
            reactor.stop()
reactor.listenUDP(0, Ping())
reactor.callLater(20, reactor.stop)
reactor.run()
"""


class GaveUp(Exception):
    """The whole run's --timeout ran out."""


class Budget:
    """The whole run's deadline; every wait is clamped to it."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds

    def wait(self, step: float = WAIT) -> float:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise GaveUp(f"not finished within --timeout {self.seconds:g} s")
        return min(step, remaining)

    def waitFor(self, agent, name, **match) -> dict:
        timeout = self.wait()
        try:
            return agent.waitFor(name, timeout, **match)
        except LabTimeout:
            if timeout < WAIT:
                raise GaveUp(f"not finished within --timeout {self.seconds:g} s (waiting "
                             f"for {name!r} from {agent.name})") from None
            raise


def readLine(process: subprocess.Popen, timeout: float) -> bytes:
    """The first line C{process} writes to its stdout, waiting at most C{timeout}."""
    deadline = time.monotonic() + timeout
    fd = process.stdout.fileno()
    data = b""
    while b"\n" not in data:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise LabTimeout(f"no line from process {process.pid} within {timeout:g} s")
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk:
                raise LabError(f"process {process.pid} exited (code {process.poll()}) "
                               f"before writing a line; wrote {data!r}")
            data += chunk
    return data.split(b"\n", 1)[0]


def baseline(lab: NatLab, host, budget: Budget) -> float:
    """Median round trip of a bare Twisted UDP echo from C{host} to the public segment."""
    server = lab.run(lab.pub, [sys.executable, "-c", ECHO_SERVER], stdin=subprocess.DEVNULL)
    if readLine(server, budget.wait()).strip() != b"ready":
        raise LabError("the echo server did not start")
    client = lab.run(host.namespace, [sys.executable, "-c", ECHO_CLIENT, lab.serverAddress,
                                      str(ECHO_PORT), str(PINGS)], stdin=subprocess.DEVNULL)
    try:
        out, _ = client.communicate(timeout=budget.wait())
    except subprocess.TimeoutExpired:
        raise LabTimeout("the echo client did not finish in time") from None
    finally:
        server.terminate()      # the lab kills whatever is left on close
    if not out.strip():
        raise LabError(f"the echo client got fewer than {PINGS} replies within 20 s")
    rtts = json.loads(out)
    # The first round trip also creates the NAT mapping; leave it out.
    return statistics.median(rtts[1:])


def oneRun(budget: Budget) -> dict:
    with NatLab() as lab:
        routerA, routerB = lab.addRouter("cone"), lab.addRouter("cone")
        hostA, hostB = lab.addHost(routerA), lab.addHost(routerB)
        base = baseline(lab, hostA, budget)
        server = lab.startAgent(lab.pub, "server", ["server", "--port", str(SERVER_PORT),
                                                    "--group-when", "2"])
        budget.waitFor(server, "listening")
        a = lab.startClient(hostA, "alice", SERVER_PORT, wait=False)
        b = lab.startClient(hostB, "bob", SERVER_PORT, wait=False)
        ida = budget.waitFor(a, "joined")["hostID"]
        idb = budget.waitFor(b, "joined")["hostID"]
        created = budget.waitFor(server, "group_create")["t"]
        # The first message each way: the sender's hello, by whichever path it came.
        hellos = {
            "alice->bob": budget.waitFor(b, "received", **{"from": ida,
                                                           "payload": "hello from alice"}),
            "bob->alice": budget.waitFor(a, "received", **{"from": idb,
                                                           "payload": "hello from bob"}),
        }
        for agent, peer in ((a, idb), (b, ida)):
            first = agent.matching("received", **{"from": peer})[0]
            if not first["payload"].startswith("hello from "):
                raise LabError(f"{agent.name}: the first message from {peer} was not its "
                               f"hello: {first}")
        directA = budget.waitFor(a, "direct", peer=idb)["t"]
        directB = budget.waitFor(b, "direct", peer=ida)["t"]
        sent = {"alice->bob": a.first("hello_sent", peer=idb),
                "bob->alice": b.first("hello_sent", peer=ida)}
        problems = [(agent.name, e) for agent in lab.agents
                    for kind in ("exception", "error", "punch_failed")
                    for e in agent.matching(kind)]
        if problems:
            raise LabError(f"the agents reported problems: {problems}")
        messages = {}
        for way, event in hellos.items():
            messages[way] = {
                "t": event["t"] - created,
                "relayed": bool(event["relayed"]),
                "sent": sent[way]["t"] - created if sent[way] else None,
            }
        relayedTimes = [m["t"] for m in messages.values() if m["relayed"]]
        result = {
            "baseline": base,
            "messages": messages,
            "firstMessage": min(m["t"] for m in messages.values()),
            "bothWays": max(m["t"] for m in messages.values()),
            "firstRelayed": min(relayedTimes) if relayedTimes else None,
            "bothRelayed": max(relayedTimes) if len(relayedTimes) == len(messages) else None,
            "firstDirect": min(directA, directB) - created,
            "bothDirect": max(directA, directB) - created,
        }
    left = lab.leftovers()
    if left:
        raise LabError(f"namespaces left behind: {left}")
    return result


def path(message: dict) -> str:
    return "relayed" if message["relayed"] else "DIRECT"


def main() -> int:
    parser = _common.scriptParser(__doc__)
    parser.add_argument("--runs", type=int, default=5)
    _common.addTimeout(parser, 300.0)
    args = parser.parse_args()
    if args.runs < 1 or args.timeout <= 0:
        parser.error("--runs must be >= 1 and --timeout > 0")
    ok, why = labAvailable()
    if not ok:
        print(f"cannot run the NAT lab: {why}", file=sys.stderr)
        return 2
    budget = Budget(args.timeout)
    print(f"cone <-> cone in the NAT lab, {args.runs} runs; times from createP2PGroup"
          " (server) to the event in the clients; each client sends its hello in"
          " onP2PMemberJoin")
    runs = []
    for i in range(args.runs):
        try:
            r = oneRun(budget)
        except GaveUp as e:
            print(f"gave up: {e}", flush=True)
            return 1
        runs.append(r)
        hellos = "  ".join(f"{way} {ms(m['t'], 1)} {path(m)} (sent {ms(m['sent'], 1)})"
                           for way, m in r["messages"].items())
        print(f"run {i + 1}: baseline rtt {r['baseline'] * 1e6:6.1f} us  hellos: {hellos}"
              f"  first direct {ms(r['firstDirect'], 1)}"
              f"  both direct {ms(r['bothDirect'], 1)}", flush=True)

    base = statistics.median(r["baseline"] for r in runs)
    messages = [m for r in runs for m in r["messages"].values()]
    direct = [m for m in messages if not m["relayed"]]
    print(f"first messages: {len(messages) - len(direct)} of {len(messages)} came through the"
          f" relay, {len(direct)} over the direct path"
          + (" (the pair went direct while they were still in flight through the server;"
             " the sender's session resends what is in flight when its path changes, and"
             " that direct copy arrived first)" if direct else ""))
    print(f"medians of {args.runs} runs, as ours / {BASELINE_NAME}"
          f" ({base * 1e6:.1f} us), lower is better:")

    def median(key: str):
        values = [r[key] for r in runs if r[key] is not None]
        return (statistics.median(values) if values else None), len(values)

    lines = (
        ("firstMessage", "createP2PGroup to first message, either path, median", False),
        ("bothWays", "createP2PGroup to first message both ways, either path, median", True),
        ("firstRelayed", "createP2PGroup to first message through the relay, median", False),
        ("bothRelayed", "createP2PGroup to first message relayed both ways, median", True),
        ("firstDirect", "createP2PGroup to first side direct, median", True),
        ("bothDirect", "createP2PGroup to pair direct, median", False),
    )
    for key, label, information in lines:
        value, count = median(key)
        note = "" if count == len(runs) else f" of the {count} runs that had one"
        name = label + note + (" (information)" if information else "")
        if value is None:
            print(f"{name}: none in {len(runs)} runs (no such message came through the relay)")
            continue
        _common.report(name, value * 1e6, base * 1e6, "us", BASELINE_NAME)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""How long a pair behind two cone NATs takes, in the real NAT lab, from the
server's createP2PGroup to (1) the first message relayed between them and
(2) the pair being direct. Needs root and iptables (see tests/natlab.py).

Times are C{time.monotonic()} stamps taken inside the server and client
processes (one clock for the whole machine). The baseline, measured in the
same lab in the same run, is a bare Twisted UDP echo round trip from a host
behind a NAT to the public segment: the least a relayed message can cost.

    python bench/natlab_times.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.natlab import NatLab, labAvailable  # noqa: E402

WAIT = 30.0
ECHO_PORT = 33334
PINGS = 50

ECHO_SERVER = f"""
import sys
from twisted.internet import reactor
from twisted.internet.protocol import DatagramProtocol
class Echo(DatagramProtocol):
    def datagramReceived(self, data, addr):
        self.transport.write(data, addr)
reactor.listenUDP({ECHO_PORT}, Echo())
reactor.callWhenRunning(lambda: (print("ready", flush=True)))
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


def baseline(lab: NatLab, host) -> float:
    """Median round trip of a bare Twisted UDP echo from C{host} to the public segment."""
    server = lab.run(lab.pub, [sys.executable, "-c", ECHO_SERVER], stdin=subprocess.DEVNULL)
    if server.stdout.readline().strip() != b"ready":
        raise RuntimeError("the echo server did not start")
    client = lab.run(host.namespace, [sys.executable, "-c", ECHO_CLIENT, lab.serverAddress,
                                      str(ECHO_PORT), str(PINGS)], stdin=subprocess.DEVNULL)
    out, _ = client.communicate(timeout=WAIT)
    server.terminate()
    rtts = json.loads(out)
    # The first round trip also creates the NAT mapping; leave it out.
    return statistics.median(rtts[1:])


def oneRun() -> dict:
    with NatLab() as lab:
        routerA, routerB = lab.addRouter("cone"), lab.addRouter("cone")
        hostA, hostB = lab.addHost(routerA), lab.addHost(routerB)
        base = baseline(lab, hostA)
        server = lab.startServer(33333, "--group-when", "2")
        a = lab.startClient(hostA, "alice", wait=False)
        b = lab.startClient(hostB, "bob", wait=False)
        ida = a.waitFor("joined", WAIT)["hostID"]
        idb = b.waitFor("joined", WAIT)["hostID"]
        created = server.waitFor("group_create", WAIT)["t"]
        relayA = b.waitFor("received", WAIT, **{"from": ida})
        relayB = a.waitFor("received", WAIT, **{"from": idb})
        assert relayA["relayed"] and relayB["relayed"], (relayA, relayB)
        directA = a.waitFor("direct", WAIT, peer=idb)["t"]
        directB = b.waitFor("direct", WAIT, peer=ida)["t"]
        result = {
            "baseline": base,
            "firstRelayed": min(relayA["t"], relayB["t"]) - created,
            "bothRelayed": max(relayA["t"], relayB["t"]) - created,
            "firstDirect": min(directA, directB) - created,
            "bothDirect": max(directA, directB) - created,
        }
    assert not lab.leftovers()
    return result


def ms(seconds: float, digits: int = 1) -> str:
    return f"{seconds * 1000:8.{digits}f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    ok, why = labAvailable()
    if not ok:
        print(f"cannot run the NAT lab: {why}", file=sys.stderr)
        return 2
    print(f"cone <-> cone in the NAT lab, {args.runs} runs; times from createP2PGroup"
          " (server) to the event in the clients")
    runs = []
    for i in range(args.runs):
        r = oneRun()
        runs.append(r)
        print(f"run {i + 1}: baseline rtt {ms(r['baseline'], 3)}  first relayed "
              f"{ms(r['firstRelayed'])}  both relayed {ms(r['bothRelayed'])}  first direct "
              f"{ms(r['firstDirect'])}  both direct {ms(r['bothDirect'])}")
    base = statistics.median(r["baseline"] for r in runs)
    print(f"median of {args.runs} runs (ratio to the bare Twisted UDP echo round trip,"
          f" {ms(base, 3).strip()}):")
    for key, label in (("firstRelayed", "first message relayed"),
                       ("bothRelayed", "relayed both ways"),
                       ("firstDirect", "first side direct"),
                       ("bothDirect", "pair direct")):
        value = statistics.median(r[key] for r in runs)
        print(f"  {label:24s} {ms(value)}  {value / base:8.1f} x baseline")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Acceptance tests in a real NAT lab: namespaces, iptables routers, processes.

Each test builds its own lab (L{tests.natlab.NatLab}) with a fresh name
prefix, runs a server and clients there as JSON-lines agents
(L{tests.natlab_agent}), and deletes every namespace afterwards, checking
that none is left. They need root and iptables: without them they are
skipped, except under CI (C{CI=true}) where they fail instead.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import pytest

from tests.natlab import Agent, Host, LabError, LabTimeout, NatLab, Router, labAvailable

pytestmark = pytest.mark.natlab

JOIN_WAIT = 15.0
RELAY_WAIT = 10.0         # first relayed messages (the hellos)
DIRECT_WAIT = 20.0        # a punchable pair is direct within this
GIVE_UP_WINDOW = 12.0     # longer than one punching attempt (10 s) takes to give up
FAILED_WAIT = 6.0         # after the window, for whenDirect to have failed too
FALLBACK_WAIT = 15.0      # direct path stops answering (4 s) -> relayed
REDIRECT_WAIT = 40.0      # after heal: retries back off 2, 4, 8 s, attempts last 10 s
DELIVERY_WAIT = 30.0


def _inCI() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


@pytest.fixture(scope="module")
def natlabReady():
    ok, why = labAvailable()
    if not ok:
        if _inCI():
            pytest.fail(f"the NAT lab must run under CI but cannot: {why}")
        pytest.skip(why)


@pytest.fixture
def lab(natlabReady):
    natLab = NatLab()
    try:
        with natLab:
            yield natLab
            # A raising event handler is a bug wherever it is (ours or the library's).
            raised = [(agent.name, e["comment"]) for agent in natLab.agents
                      for e in agent.matching("exception")]
            assert not raised, f"event handlers raised: {raised}"
    finally:
        left = natLab.leftovers()
        assert not left, f"namespaces left behind: {left}"


@dataclass
class Pair:
    server: Agent
    a: Agent
    b: Agent
    ida: int
    idb: int
    routerA: Router
    routerB: Router
    hostA: Host
    hostB: Host


def startPair(lab: NatLab, kindA: str, kindB: str | None = None,
              serverArgs: tuple = ()) -> Pair:
    """A server (given C{serverArgs}), and alice and bob behind NATs of
    C{kindA} / C{kindB}.

    C{kindB} None puts bob behind alice's router. Returns once each has
    received the other's hello over the relay.
    """
    routerA = lab.addRouter(kindA)
    routerB = routerA if kindB is None else lab.addRouter(kindB)
    hostA, hostB = lab.addHost(routerA), lab.addHost(routerB)
    server = lab.startServer(33333, *serverArgs)
    a = lab.startClient(hostA, "alice", wait=False)
    b = lab.startClient(hostB, "bob", wait=False)
    ida = a.waitFor("joined", JOIN_WAIT)["hostID"]
    idb = b.waitFor("joined", JOIN_WAIT)["hostID"]
    # Relay first: the hellos arrive whatever the NATs.
    b.waitFor("received", RELAY_WAIT, **{"from": ida, "payload": "hello from alice"})
    a.waitFor("received", RELAY_WAIT, **{"from": idb, "payload": "hello from bob"})
    return Pair(server, a, b, ida, idb, routerA, routerB, hostA, hostB)


def waitDirect(pair: Pair, timeout: float = DIRECT_WAIT, after: int = 0):
    """The (after+1)-th C{direct} event of each side, both within C{timeout}."""
    da = pair.a.waitCount("direct", after + 1, timeout, peer=pair.idb)[after]
    db = pair.b.waitCount("direct", after + 1, timeout, peer=pair.ida)[after]
    return da, db


def streamed(agent: Agent, sender: int, prefix: str) -> list:
    return [p for p in agent.received(sender) if p.startswith(prefix)]


def assertDelivered(agent: Agent, sender: int, prefix: str, count: int,
                    timeout: float = DELIVERY_WAIT) -> None:
    """C{prefix}0..C{prefix}{count-1} from C{sender}: all, once each, in order."""
    expected = [f"{prefix}{i}" for i in range(count)]

    def done(events):
        return len(streamed(agent, sender, prefix)) >= count

    done.__name__ = f"{count} messages {prefix}* from {sender}"
    try:
        agent.waitFor(done, timeout)
    except LabTimeout:
        got = streamed(agent, sender, prefix)
        missing = sorted(set(expected) - set(got), key=lambda p: int(p[len(prefix):]))
        raise AssertionError(f"{agent.name} got {len(got)} of {count} from {sender}; "
                             f"first missing: {missing[:10]}\n{agent.stderrTail()}") from None
    got = streamed(agent, sender, prefix)
    firstDifference = next((i for i, (x, y) in enumerate(zip(got, expected, strict=False))
                            if x != y), len(expected))
    assert got == expected, (
        f"{agent.name}: not exactly once in order: {len(got)} received, "
        f"{len(set(got))} distinct; first difference at {firstDifference}")


def assertNoDirectWithin(pair: Pair, window: float) -> None:
    """Neither side reports a direct path for C{window} seconds."""
    try:
        event = pair.a.waitFor(lambda events: pair.a.first("direct") or pair.b.first("direct"),
                               window)
    except LabTimeout:
        return
    raise AssertionError(f"the pair went direct, expected relayed: {event}")


def serverStats(pair: Pair) -> dict:
    before = len(pair.server.matching("stats"))
    pair.server.command("stats")
    return pair.server.waitCount("stats", before + 1, 5)[before]


def assertHelloOnce(pair: Pair) -> None:
    assert pair.b.received(pair.ida).count("hello from alice") == 1
    assert pair.a.received(pair.idb).count("hello from bob") == 1


def test_labBuildsAndTearsDownEverything(natlabReady):
    """The fixture itself: names, addresses, and no trace after a failure inside."""
    natLab = NatLab()
    with pytest.raises(RuntimeError, match="inside the lab"), natLab:
        router = natLab.addRouter("symmetric")
        host = natLab.addHost(router)
        assert all(ns.startswith(natLab.prefix) for ns in natLab.namespaces)
        assert router.wanAddress.startswith("203.0.113.")
        sleeper = natLab.run(host.namespace, ["sleep", "60"])
        assert sleeper.poll() is None
        raise RuntimeError("a failure inside the lab")
    assert sleeper.poll() is not None
    assert natLab.leftovers() == []
    with pytest.raises(LabError):
        natLab.addRouter("cone")


def test_coneToConeGoesDirect(lab):
    pair = startPair(lab, "cone", "cone")
    da, db = waitDirect(pair)
    # Each side talks to the other's NAT mapping: the peer router's public address.
    assert da["address"][0] == pair.routerB.wanAddress, da
    assert db["address"][0] == pair.routerA.wanAddress, db
    ra = pair.a.waitFor("relay_state", 1, peer=pair.idb)
    assert ra["relayed"] is False and ra["reason"] == "HOLE_PUNCHED"
    # Messages now arrive over the direct path.
    pair.a.command("send", to=pair.idb, count=50, prefix="d")
    assertDelivered(pair.b, pair.ida, "d", 50)
    late = [e for e in pair.b.matching("received", **{"from": pair.ida})
            if e["payload"].startswith("d")]
    assert not any(e["relayed"] for e in late), "messages still relayed after going direct"
    assertHelloOnce(pair)


def checkStaysRelayed(lab, kindA: str, kindB: str) -> None:
    pair = startPair(lab, kindA, kindB)
    pair.a.command("send", to=pair.idb, count=100, prefix="a")
    pair.b.command("send", to=pair.ida, count=100, prefix="b")
    # Long enough for one punching attempt to give up: no direct path appears.
    assertNoDirectWithin(pair, GIVE_UP_WINDOW)
    assertDelivered(pair.b, pair.ida, "a", 100)
    assertDelivered(pair.a, pair.idb, "b", 100)
    for agent, peer in ((pair.a, pair.idb), (pair.b, pair.ida)):
        assert all(e["relayed"] for e in agent.matching("received", **{"from": peer}))
        failed = agent.waitFor("punch_failed", FAILED_WAIT, peer=peer)
        assert failed["error"] == "HolePunchFailed", failed
        agent.command("info", peer=peer)
        assert agent.waitFor("peer_info", 5, peer=peer)["relayed"] is True
    assertHelloOnce(pair)


def test_coneToSymmetricStaysRelayed(lab):
    checkStaysRelayed(lab, "cone", "symmetric")


def test_symmetricToSymmetricStaysRelayed(lab):
    checkStaysRelayed(lab, "symmetric", "symmetric")


def test_twoClientsBehindOneNatGoDirectOverTheLan(lab):
    pair = startPair(lab, "cone")
    da, db = waitDirect(pair)
    portA = pair.a.first("joined")["local"][1]
    portB = pair.b.first("joined")["local"][1]
    assert da["address"] == [pair.hostB.address, portB], da
    assert db["address"] == [pair.hostA.address, portA], db
    pair.a.command("info", peer=pair.idb)
    info = pair.a.waitFor("peer_info", 5, peer=pair.idb)
    assert info["lanAddress"] == [pair.hostB.address, portB], info
    assert info["directAddress"] == info["lanAddress"], info


def test_coneToConeWithTheSameLanSubnetGoesDirectOverPublicAddresses(lab):
    """Two homes, both 192.168.1.0/24: each host's LAN candidate for the
    other is its own address; the public one must win."""
    routerA = lab.addRouter("cone", "192.168.1.")
    routerB = lab.addRouter("cone", "192.168.1.")
    hostA, hostB = lab.addHost(routerA), lab.addHost(routerB)
    assert hostA.address == hostB.address
    server = lab.startServer()
    a = lab.startClient(hostA, "alice", wait=False)
    b = lab.startClient(hostB, "bob", wait=False)
    pair = Pair(server, a, b, a.waitFor("joined", JOIN_WAIT)["hostID"],
                b.waitFor("joined", JOIN_WAIT)["hostID"], routerA, routerB, hostA, hostB)
    da, db = waitDirect(pair)
    assert da["address"][0] == routerB.wanAddress, da
    assert db["address"][0] == routerA.wanAddress, db
    pair.a.command("send", to=pair.idb, count=100, prefix="a")
    assertDelivered(pair.b, pair.ida, "a", 100)
    assertHelloOnce(pair)


def test_directPathCutFallsBackToRelayAndHeals(lab):
    pair = startPair(lab, "cone", "cone")
    waitDirect(pair)
    direct = serverStats(pair)
    count = 2000
    # 2,000 reliable messages over about 6 s; the path is cut early in the stream.
    pair.a.command("send", to=pair.idb, count=count, prefix="s", batch=10, interval=0.03)
    pair.b.waitFor(lambda events: len(streamed(pair.b, pair.ida, "s")) >= 200, 10)
    cutAt = time.monotonic()        # the agents' clock
    lab.cut(pair.routerA, pair.routerB)
    atCut = serverStats(pair)
    # The first ~200 went direct: (almost) nothing through the relay.
    assert atCut["framesRelayed"] - direct["framesRelayed"] <= 5, (direct, atCut)
    # Nothing from the direct address any more: both sides fall back to the relay.
    ra = pair.a.waitFor("relay_state", FALLBACK_WAIT, peer=pair.idb, relayed=True)
    rb = pair.b.waitFor("relay_state", FALLBACK_WAIT, peer=pair.ida, relayed=True)
    assert ra["reason"] == rb["reason"] == "DIRECT_PATH_DIED", (ra, rb)
    pair.a.command("info", peer=pair.idb)
    info = pair.a.waitFor("peer_info", 5, peer=pair.idb)
    assert info["relayed"] is True and info["directAddress"] is None, info
    assertDelivered(pair.b, pair.ida, "s", count)
    sent = pair.a.waitFor("sent", 5, prefix="s")
    assert sent["t"] > cutAt, "the stream ended before the cut"
    # The rest of the stream came through the relay.
    after = serverStats(pair)
    assert after["framesRelayed"] - atCut["framesRelayed"] > 20, (atCut, after)
    # Heal: a retry (2 s, then 4, 8, ...) punches through again.
    lab.heal(pair.routerA, pair.routerB)
    da, db = waitDirect(pair, REDIRECT_WAIT, after=1)
    assert da["address"][0] == pair.routerB.wanAddress
    assert db["address"][0] == pair.routerA.wanAddress
    pair.b.command("send", to=pair.ida, count=20, prefix="r")
    assertDelivered(pair.a, pair.idb, "r", 20)
    assertHelloOnce(pair)


# Connection recovery (issue #17): alice's router drops everything for a while.

RECOVERY_TIMEOUT = 2.0      # the server's clientTimeout: both ends notice within it
OUTAGE = 5.0
RESUME_WAIT = 15.0          # after the link is back: a backoff pause (2 s) and a resume


def eventNames(agent: Agent, *names) -> list:
    return [e["event"] for e in agent.events if e["event"] in names]


def test_aFiveSecondOutageMidStreamIsRecovered(lab):
    pair = startPair(lab, "cone", "cone",
                     serverArgs=("--client-timeout", str(RECOVERY_TIMEOUT)))
    a, b, server, ida, idb = pair.a, pair.b, pair.server, pair.ida, pair.idb
    count, batch, interval = 600, 5, 0.05           # each stream lasts about 6 s
    streams = [(a, idb, b, ida, "p"), (b, ida, a, idb, "q"),
               (a, 1, server, ida, "s"), (server, ida, a, 1, "t")]
    for sender, to, _, _, prefix in streams:
        sender.command("send", to=to, count=count, prefix=prefix, batch=batch,
                       interval=interval)
    b.waitFor(lambda events: len(streamed(b, ida, "p")) >= 50, 10)
    cutAt = time.monotonic()
    lab.cutLink(pair.routerA)
    a.waitFor("server_offline", RECOVERY_TIMEOUT + 5)
    server.waitFor("client_offline", RECOVERY_TIMEOUT + 5, hostID=ida)
    b.waitFor("member_offline", RECOVERY_TIMEOUT + 5, member=ida)
    time.sleep(max(0.0, cutAt + OUTAGE - time.monotonic()))    # the outage's rest
    lab.restoreLink(pair.routerA)
    online = a.waitFor("server_online", RESUME_WAIT)
    for _, _, receiver, sender, prefix in streams:
        assertDelivered(receiver, sender, prefix, count)
    # Every stream was still being sent when the link went down.
    for agent, prefix in ((a, "p"), (b, "q"), (a, "s"), (server, "t")):
        assert agent.waitFor("sent", 5, prefix=prefix)["t"] > cutAt, prefix
    # Same HostID, same group; the events in order on client, server and peer.
    assert online["hostID"] == ida and online["groups"], online
    assert eventNames(a, "server_offline", "server_online", "left", "joined") == [
        "joined", "server_offline", "server_online"]
    assert [(e["event"], e["hostID"]) for e in server.events
            if e["event"] in ("client_offline", "client_online", "client_leave")] == [
        ("client_offline", ida), ("client_online", ida)]
    assert eventNames(b, "member_offline", "member_online", "member_leave") == [
        "member_offline", "member_online"]
    assert len(server.matching("client_join")) == 2
    stats = serverStats(pair)
    assert stats["clientsResumed"] == 1 and stats["resumesRefused"] == 0, stats
    assert stats["clients"][str(ida)]["groups"] == stats["clients"][str(idb)]["groups"]
    assertHelloOnce(pair)


def test_anOutagePastTheRecoveryWindowLeavesForGood(lab):
    window = 3.0
    pair = startPair(lab, "cone", "cone",
                     serverArgs=("--client-timeout", str(RECOVERY_TIMEOUT),
                                 "--recovery-window", str(window)))
    a, b, server, ida = pair.a, pair.b, pair.server, pair.ida
    lab.cutLink(pair.routerA)
    left = a.waitFor("left", RECOVERY_TIMEOUT + window + 10)
    leave = server.waitFor("client_leave", RECOVERY_TIMEOUT + window + 10, hostID=ida)
    b.waitFor("member_leave", 10, member=ida)
    lab.restoreLink(pair.routerA)
    assert left["reason"] == "TIMEOUT" and leave["reason"] == "TIMEOUT", (left, leave)
    assert eventNames(a, "server_offline", "server_online", "left") == [
        "server_offline", "left"]
    assert [(e["event"], e["hostID"]) for e in server.events
            if e["event"] in ("client_offline", "client_online", "client_leave")] == [
        ("client_offline", ida), ("client_leave", ida)]
    assert eventNames(b, "member_offline", "member_online", "member_leave") == [
        "member_offline", "member_leave"]
    stats = serverStats(pair)
    assert stats["recoveryExpired"] == 1 and str(ida) not in stats["clients"], stats

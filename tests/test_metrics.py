"""Prometheus metrics and structured log events (issue #17): C{twistd
proudserver --metrics} scraped over real HTTP after known activity, the
counters behind every metric, the event-loop lag on a Clock, the docs tables
against what the server serves and logs, and hostile scrapers."""

import ast
import json
import re
import socket
import urllib.request
import uuid
from dataclasses import fields
from pathlib import Path

import pytest
import pytest_twisted
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import defer, endpoints, protocol, reactor, task
from twisted.logger import globalLogPublisher
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import Agent
from twisted.web.test.requesthelper import DummyRequest

from proud_twisted import (
    ErrorType,
    NetClient,
    NetServer,
    ProtocolVersionMismatch,
    ServerMetrics,
    ServerStats,
    ServerUdpState,
    metricsService,
    tap,
)
from proud_twisted.server.metricsweb import MAX_METRICS_CONNECTIONS, MetricsResource
from proud_twisted.server.ratelimit import RelayLimit
from proud_twisted.testing import MemoryNetwork, NATType
from tests.support import RecordingClientEvents, RecordingServerEvents
from tests.test_examples import LineReader, stop
from tests.test_memnet_punch import PunchWorld
from tests.test_tap import TWISTD, InTemporaryDirectory

ROOT = Path(__file__).resolve().parent.parent
OPERATIONS = ROOT / "docs" / "operations.rst"
DASHBOARD = ROOT / "docs" / "grafana-dashboard.json"
VERSION = uuid.UUID("5e0c1d2a-3b4f-4a6e-9d8c-7f6e5d4c3b2a")
ALLOWED_LABELS = {"path", "result", "kind", "reason", "le"}
"""Every label a metric may have: none names a host."""


# Reading what the server serves, logs and documents

def samples(text: str) -> dict:
    """C{{(sample name, ((label, value), ...)): value}} of an exposition."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(scraped: dict, name: str, **labels) -> float:
    return scraped[(name, tuple(sorted(labels.items())))]


def exposedTypes(text: str) -> dict:
    """C{{metric name: type}} from the exposition's C{# TYPE} lines, less the
    helper series prometheus_client adds (C{_created}, C{_gsum}, C{_gcount})."""
    return {name: kind for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE)
            if not name.endswith(("_created", "_gsum", "_gcount"))}


def exposedLabels(text: str) -> dict:
    """C{{metric name: set of label names}} (histogram series under their metric)."""
    types = exposedTypes(text)
    labels = {name: set() for name in types}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name = re.sub(r"_(bucket|count|sum)$", "", sample.name)
            if name in labels or sample.name in labels:
                labels[name if name in labels else sample.name].update(sample.labels)
    return labels


def listTableRows(title: str) -> list:
    """The rows of the docs' list-table whose first header cell is C{title}:
    each a list of cell texts (a cell's lines joined)."""
    text = OPERATIONS.read_text()
    tables = re.split(r"^\.\. list-table::.*$", text, flags=re.MULTILINE)[1:]
    for table in tables:
        rows, row = [], None
        for line in table.splitlines():
            if re.match(r"^\S", line):
                break           # the table ended
            start = re.match(r"^   \* - ?(.*)$", line)
            cell = re.match(r"^     - ?(.*)$", line)
            if start:
                row = [start.group(1)]
                rows.append(row)
            elif cell and row is not None:
                row.append(cell.group(1))
            elif row is not None and line.strip():
                row[-1] += " " + line.strip()
        if rows and rows[0][0] == title:
            return rows[1:]
    raise AssertionError(f"no table headed {title!r} in {OPERATIONS}")


def literals(cell: str) -> list:
    return re.findall(r"``([^`]+)``", cell)


def documentedMetrics() -> dict:
    """C{{name: (type, label names)}} from the docs' metrics table."""
    documented = {}
    for name, kind, labels, _meaning in listTableRows("Metric"):
        labelNames = set(re.findall(r"``(\w+)``:", labels))
        documented[literals(name)[0]] = (kind.strip(), labelNames)
    return documented


def documentedLogEvents() -> dict:
    """C{{event: (side, level, set of fields)}} from the docs' log events table."""
    return {literals(event)[0]: (side.strip(), level.strip(), set(literals(fieldCell)))
            for event, side, level, fieldCell, _when in listTableRows("Event")}


def loggedEvents() -> dict:
    """C{{event: (side, level, set of fields)}} of every log call in the
    library that names a C{proud_event}, read from the source."""
    found = {}
    for path in sorted((ROOT / "proud_twisted").rglob("*.py")):
        side = path.relative_to(ROOT / "proud_twisted").parts[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            keywords = {k.arg: k.value for k in node.keywords if k.arg}
            event = keywords.pop("proud_event", None)
            if event is None:
                continue
            assert isinstance(event, ast.Constant), f"{path}: proud_event is not a literal"
            assert event.value not in found, f"{event.value} is logged in two places"
            found[event.value] = (side, node.func.attr, set(keywords))
    return found


class LogCapture:
    """Collects the C{proud_event} log events while installed."""

    def __init__(self) -> None:
        self.events = []

    def __call__(self, event) -> None:
        if "proud_event" in event:
            self.events.append(event)

    def named(self, name: str) -> list:
        return [e for e in self.events if e["proud_event"] == name]

    def install(self, cleanups) -> "LogCapture":
        globalLogPublisher.addObserver(self)
        cleanups(globalLogPublisher.removeObserver, self)
        return self


# Real sockets

@defer.inlineCallbacks
def scrape(port: int, path: bytes = b"/metrics"):
    response = yield Agent(reactor).request(b"GET", b"http://127.0.0.1:%d%s" % (port, path))
    body = RawClient()
    response.deliverBody(body)
    return response, (yield body.lost).decode()


@defer.inlineCallbacks
def joinClients(port: int, count: int):
    clients = [NetClient(RecordingClientEvents(), encryption=False) for _ in range(count)]
    yield defer.gatherResults([c.connect("127.0.0.1", port, VERSION) for c in clients])
    yield defer.gatherResults([
        c.events.rec.wait(lambda c=c: c.getServerUdpState() is ServerUdpState.CONFIRMED)
        for c in clients])
    return clients


class RawClient(protocol.Protocol):
    """A TCP client that sends what it is told and keeps what comes back."""

    def __init__(self) -> None:
        self.received = b""
        self.lost = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason) -> None:
        self.lost.callback(self.received)


def rawConnect(port: int):
    endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port)
    return endpoints.connectProtocol(endpoint, RawClient())


@pytest.fixture
def logs():
    capture = LogCapture()
    globalLogPublisher.addObserver(capture)
    yield capture
    globalLogPublisher.removeObserver(capture)


@pytest.fixture
def tapServer(tmp_path, monkeypatch):
    """C{twistd proudserver --metrics tcp:0} as the plugin makes it, started."""
    monkeypatch.chdir(tmp_path)
    config = tap.Options()
    config.parseOptions([
        "--tcp", "0", "--udp", "0", "--interface", "127.0.0.1", "--no-encryption",
        "--no-gc-freeze", "--protocol-version", str(VERSION),
        "--events", "tests.support.RecordingServerEvents",
        "--metrics", "tcp:0:interface=127.0.0.1"])
    top = tap.makeService(config)
    top.startService()
    yield top
    pytest_twisted.blockon(defer.maybeDeferred(top.stopService))


@pytest_twisted.inlineCallbacks
def test_tapServesTheMetricsOfKnownActivity(tapServer, logs):
    """Acceptance 3: a server started with --metrics, known activity, one
    scrape over HTTP, exact values."""
    server = tapServer.getServiceNamed("proudserver")
    metricsPort = (yield tapServer.getServiceNamed("metrics").listening).getHost().port
    tcpPort = server.getTcpAddress()[1]
    a, b, c = yield joinClients(tcpPort, 3)
    ids = [x.getLocalHostID() for x in (a, b, c)]
    group = server.createP2PGroup(ids, allowDirectP2P=False)
    yield server.events.rec.waitCount("onP2PGroupJoinMemberAckComplete", 3)
    payloads = [b"relayed %d" % i for i in range(5)]
    for payload in payloads:
        a.send(ids[1], payload)
    yield b.events.rec.wait(lambda: len(b.events.messagesFrom(ids[0])) == 5)
    # A malformed datagram, and a client of another protocol version.
    garbage = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    garbage.sendto(b"\x01\xffnot a datagram", server.getUdpAddress())
    garbage.close()
    yield server.events.rec.wait(lambda: server.stats.malformedDatagrams == 1)
    stranger = NetClient(RecordingClientEvents(), encryption=False)
    with pytest.raises(ProtocolVersionMismatch):
        yield stranger.connect("127.0.0.1", tcpPort, uuid.uuid4())
    # A cheater sends what only a server may send: cut, reported, gone.
    c._engine._connection.sendMessage("PEER_PAIR", peerID=ids[0], epoch=1,
                                      pairSecret=b"s" * 32, policy=0)
    yield server.events.rec.waitCount("onClientLeave", 1)
    # (To the cheater its cut is a lost connection: it tries to resume, is
    # refused, and only then has left for good.)
    yield c.events.rec.waitCount("onLeaveServer", 1)
    yield server.events.rec.wait(lambda: server.getConnectionCount() == 2)
    yield server.events.rec.wait(lambda: all(
        server.getClientInfo(h).rtt is not None for h in ids[:2]))
    rtts = [server.getClientInfo(h).rtt for h in ids[:2]]

    response, text = yield scrape(metricsPort)
    assert response.code == 200
    assert response.headers.getRawHeaders(b"content-type") == [
        b"text/plain; version=0.0.4; charset=utf-8"]
    got = samples(text)
    stats = server.stats
    expected = {
        ("proud_clients_connected", ()): 2, ("proud_connections", ()): 2,
        ("proud_groups", ()): 1, ("proud_clients_rate_limited", ()): 0,
        ("proud_pairs", (("path", "direct"),)): 0, ("proud_pairs", (("path", "relayed"),)): 1,
        ("proud_client_joins_total", ()): 3, ("proud_client_leaves_total", ()): 1,
        ("proud_client_timeouts_total", ()): 0,
        ("proud_group_joins_total", ()): 3, ("proud_group_leaves_total", ()): 1,
        ("proud_relay_requests_total", ()): stats.relayRequests,
        ("proud_relayed_messages_total", ()): stats.framesRelayed,
        ("proud_relayed_bytes_total", ()): stats.relayBytes,
        ("proud_malformed_total", (("kind", "datagram"),)): 1,
        ("proud_malformed_total", (("kind", "message"),)): 1,
        ("proud_joins_refused_total", (("reason", "VERSION_MISMATCH"),)): 1,
        ("proud_joins_refused_total", (("reason", "SERVER_FULL"),)): 0,
        ("proud_rejected_total", (("kind", "relay_not_allowed"),)): 0,
        ("proud_rejected_total", (("kind", "spoofed_datagram"),)): 0,
        ("proud_hack_reports_total", (("kind", "BAD_MESSAGE"),)): 1,
        ("proud_hack_reports_total", (("kind", "RELAY_FLOOD"),)): 0,
        ("proud_punch_attempts_total", (("result", "success"),)): 0,
        ("proud_recovery_events_total", (("kind", "offline"),)): 0,
        ("proud_client_rtt_seconds_gcount", ()): 2,
        ("proud_client_rtt_seconds_gsum", ()): sum(rtts),
        ("proud_client_rtt_seconds_bucket", (("le", "0.1"),)): sum(r <= 0.1 for r in rtts),
        ("proud_client_rtt_seconds_bucket", (("le", "+Inf"),)): 2,
    }
    assert {key: got[key] for key in expected} == expected
    assert stats.relayRequests >= 1 and stats.framesRelayed >= 1
    assert stats.relayBytes >= sum(map(len, payloads))
    # The same activity, as structured log events with their HostIDs as fields.
    assert sorted(e["hostID"] for e in logs.named("client_join")) == sorted(ids)
    [created] = logs.named("group_created")
    assert (created["groupID"], created["members"]) == (group, sorted(ids))
    assert sorted((e["groupID"], e["hostID"]) for e in logs.named("group_member_join")) == \
        sorted((group, h) for h in ids)
    [malformed] = logs.named("datagram_malformed")
    assert malformed["address"][0] == "127.0.0.1" and malformed["error"]
    [refused] = logs.named("join_refused")
    assert refused["reason"] == "VERSION_MISMATCH"
    [leave] = logs.named("client_leave")
    assert (leave["hostID"], leave["reason"]) == (ids[2], ErrorType.PROTOCOL_ERROR.name)
    [hack] = logs.named("hack_suspected")
    assert (hack["hostID"], hack["kind"]) == (ids[2], "BAD_MESSAGE")
    [aborted] = logs.named("connection_aborted")
    assert (aborted["hostID"], aborted["reason"]) == (ids[2], "PROTOCOL_ERROR")
    assert "PEER_PAIR" in aborted["why"]
    [groupLeave] = logs.named("group_member_leave")
    assert (groupLeave["groupID"], groupLeave["hostID"], groupLeave["reason"]) == \
        (group, ids[2], "client_left")
    for event in logs.events:
        assert event["log_format"] and "{" in event["log_format"]
    yield defer.gatherResults([a.disconnect(), b.disconnect()])


@pytest_twisted.inlineCallbacks
def test_hostileScrapersDoNotDisturbTheGame(logs):
    """A flood of scrapes, idle connections past the limit, an oversized
    header and a large body at the metrics port: the game server keeps
    relaying, renders at most once a second, and still answers scrapes."""
    metrics = ServerMetrics()
    server = NetServer(RecordingServerEvents(), VERSION, interface="127.0.0.1",
                       encryption=False, metrics=metrics)
    server.startService()
    service = metricsService("tcp:0:interface=127.0.0.1", metrics)
    service.startService()
    try:
        port = (yield service.listening).getHost().port
        a, b = yield joinClients(server.getTcpAddress()[1], 2)
        ida, idb = a.getLocalHostID(), b.getLocalHostID()
        server.createP2PGroup([ida, idb], allowDirectP2P=False)
        yield server.events.rec.waitCount("onP2PGroupJoinMemberAckComplete", 2)
        started = reactor.seconds()
        flood = [scrape(port).addErrback(lambda f: None) for _ in range(100)]
        sent = [b"during the flood %d" % i for i in range(200)]
        for payload in sent:
            a.send(idb, payload)
        yield b.events.rec.wait(lambda: len(b.events.messagesFrom(ida)) == len(sent))
        answered = [r for r in (yield defer.gatherResults(flood)) if r is not None]
        assert b.events.messagesFrom(ida) == sent
        assert answered and all(r.code == 200 for r, _ in answered)
        elapsed = reactor.seconds() - started
        assert service.resource.renders <= 2 + int(elapsed)

        # Idle connections take every slot: the next one is closed at once.
        idle = yield defer.gatherResults([rawConnect(port)
                                          for _ in range(MAX_METRICS_CONNECTIONS)])
        extra = yield rawConnect(port)
        assert (yield extra.lost.addTimeout(5, reactor)) == b""
        for connection in idle:
            connection.transport.abortConnection()
        yield defer.gatherResults([c.lost for c in idle])

        # An oversized header is refused (the answer may be lost in the reset
        # of a connection closed with unread data); a large body is thrown away.
        oversized = yield rawConnect(port)
        oversized.transport.write(b"GET /" + b"A" * 100_000 + b" HTTP/1.1\r\n\r\n")
        answer = yield oversized.lost.addTimeout(5, reactor)
        assert answer in (b"", b"HTTP/1.1 400 Bad Request\r\n\r\n")
        body = yield rawConnect(port)
        size = 4 * 1024 * 1024
        body.transport.write(b"POST /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                             b"Content-Length: %d\r\n\r\n" % size)
        body.transport.write(b"x" * size)
        assert (yield body.lost.addTimeout(10, reactor)).startswith(
            b"HTTP/1.1 405 Method Not Allowed")

        # The game was never disturbed, and a scrape still works.
        a.send(idb, b"after the attacks")
        yield b.events.rec.wait(lambda: b.events.messagesFrom(ida)[-1:] == [b"after the attacks"])
        late = yield joinClients(server.getTcpAddress()[1], 1)
        response, text = yield scrape(port)
        assert response.code == 200 and "proud_clients_connected" in text
        assert server.stats.malformedMessages == 0
        yield defer.gatherResults([x.disconnect() for x in (a, b, *late)])
    finally:
        yield service.stopService()
        yield server.stopService()


@pytest_twisted.inlineCallbacks
def test_noClientCanAddSeries():
    """More clients and groups change values, never the set of series; no
    label names a host."""
    metrics = ServerMetrics()
    server = NetServer(RecordingServerEvents(), VERSION, interface="127.0.0.1",
                       encryption=False, metrics=metrics)
    server.startService()
    clients = []
    try:
        clients += yield joinClients(server.getTcpAddress()[1], 1)
        before = samples(generate_latest(metrics.registry).decode())
        clients += yield joinClients(server.getTcpAddress()[1], 4)
        ids = [c.getLocalHostID() for c in clients]
        server.createP2PGroup(ids[:3])
        server.createP2PGroup(ids[2:])
        yield server.events.rec.waitCount("onP2PGroupJoinMemberAckComplete", 6)
        after = samples(generate_latest(metrics.registry).decode())
        assert set(after) == set(before)
        assert after[("proud_clients_connected", ())] == 5
        assert {name for _, labels in after for name, _ in labels} <= ALLOWED_LABELS
        hostIDs = {str(h) for h in ids}
        assert not {v for _, labels in after for _, v in labels} & hostIDs
    finally:
        yield defer.gatherResults([c.disconnect() for c in clients])
        yield server.stopService()


class ServerMetricsTests(SynchronousTestCase):
    def exposition(self, metrics) -> str:
        return generate_latest(metrics.registry).decode()

    def test_everyCounterIsServedUnderItsMetric(self):
        """Each ServerStats counter behind a metric reaches the exposition as is."""
        metrics = ServerMetrics(processMetrics=False)
        server = NetServer(metrics=metrics, encryption=False, reactor=task.Clock())
        stats = server.stats
        numbers = {f.name: i + 1 for i, f in enumerate(fields(ServerStats))
                   if f.type in ("int", int)}
        for name, number in numbers.items():
            setattr(stats, name, number)
        stats.count(stats.joinRefusals, "LOGIN_TIMEOUT")
        for _ in range(3):
            stats.count(stats.hackReports, "RELAY_FLOOD")
        got = samples(self.exposition(metrics))
        plain = {"proud_client_joins_total": "clientsJoined",
                 "proud_client_leaves_total": "clientsLeft",
                 "proud_client_timeouts_total": "clientsTimedOut",
                 "proud_group_joins_total": "groupJoins",
                 "proud_group_leaves_total": "groupLeaves",
                 "proud_relay_requests_total": "relayRequests",
                 "proud_relayed_messages_total": "framesRelayed",
                 "proud_relayed_bytes_total": "relayBytes",
                 "proud_direct_paths_lost_total": "directPathsLost",
                 "proud_relay_rate_limited_total": "relayRateLimited",
                 "proud_output_dropped_total": "outputDropped"}
        for metric, field in plain.items():
            self.assertEqual(value(got, metric), numbers[field], metric)
        labelled = {("proud_punch_attempts_total", "result", "success"): "punchSuccesses",
                    ("proud_punch_attempts_total", "result", "failure"): "punchFailures",
                    ("proud_rejected_total", "kind", "relay_not_allowed"): "relayRejected",
                    ("proud_rejected_total", "kind", "relay_to_departed"): "relayToDeparted",
                    ("proud_rejected_total", "kind", "spoofed_datagram"): "spoofedDatagrams",
                    ("proud_rejected_total", "kind", "amplification"): "amplificationRefused",
                    ("proud_rejected_total", "kind", "handshake_timeout"): "handshakeTimeouts",
                    ("proud_rejected_total", "kind", "slow_consumer"): "slowConsumers",
                    ("proud_malformed_total", "kind", "message"): "malformedMessages",
                    ("proud_malformed_total", "kind", "oversized_message"): "oversizedMessages",
                    ("proud_malformed_total", "kind", "datagram"): "malformedDatagrams",
                    ("proud_malformed_total", "kind", "handshake"): "failedHandshakes",
                    ("proud_malformed_total", "kind", "rtt_report"): "rttReportsRejected",
                    ("proud_recovery_events_total", "kind", "offline"): "clientsOffline",
                    ("proud_recovery_events_total", "kind", "online"): "clientsResumed",
                    ("proud_recovery_events_total", "kind", "expired"): "recoveryExpired",
                    ("proud_recovery_events_total", "kind", "refused"): "resumesRefused",
                    ("proud_recovery_events_total", "kind", "no_room"): "recoveryRefused",
                    ("proud_recovery_events_total", "kind", "resend_overflow"):
                        "resendOverflows",
                    ("proud_moves_total", "kind", "moved_out"): "clientsMovedOut",
                    ("proud_moves_total", "kind", "moved_in"): "clientsMovedIn",
                    ("proud_moves_total", "kind", "failed"): "movesFailed",
                    ("proud_moves_total", "kind", "refused"): "movesRefused"}
        for (metric, label, kind), field in labelled.items():
            self.assertEqual(value(got, metric, **{label: kind}), numbers[field], metric)
        # Every counter has a metric, or is the sum of a labelled one's series.
        inLabelledMetrics = {"joinsRefused", "unauthenticatedRefused", "loginErrors",
                             "loginTimeouts", "hackSuspicions"}
        notAMetric = {"udpChallenges"}     # a step of confirming an address, not traffic
        self.assertEqual(set(numbers) - set(plain.values()) - set(labelled.values())
                         - inLabelledMetrics - notAMetric, set())
        self.assertEqual(value(got, "proud_joins_refused_total", reason="LOGIN_TIMEOUT"), 1)
        self.assertEqual(value(got, "proud_joins_refused_total", reason="SERVER_FULL"), 0)
        self.assertEqual(value(got, "proud_hack_reports_total", kind="RELAY_FLOOD"), 3)

    def test_eventLoopLagIsHowLateTheTimerFires(self):
        clock = task.Clock()
        metrics = ServerMetrics(processMetrics=False, lagInterval=0.5)
        metrics.start(clock)
        clock.advance(0.5)          # on time
        clock.advance(0.8)          # due at 1.0, fires at 1.3: 0.3 s late
        got = samples(self.exposition(metrics))
        self.assertEqual(value(got, "proud_event_loop_lag_seconds_count"), 2)
        self.assertAlmostEqual(value(got, "proud_event_loop_lag_seconds_sum"), 0.3)
        self.assertEqual(value(got, "proud_event_loop_lag_seconds_bucket", le="0.001"), 1)
        self.assertEqual(value(got, "proud_event_loop_lag_seconds_bucket", le="0.25"), 1)
        self.assertEqual(value(got, "proud_event_loop_lag_seconds_bucket", le="0.5"), 2)
        metrics.stop()
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_theServerSamplesLagWhileItRuns(self):
        net = MemoryNetwork()
        host = net.addHost("203.0.113.1")
        metrics = ServerMetrics(processMetrics=False)
        server = NetServer(metrics=metrics, encryption=False, reactor=host)
        server.startService()
        net.advance(2.0)
        server.stopService()
        count = value(samples(self.exposition(metrics)), "proud_event_loop_lag_seconds_count")
        self.assertEqual(count, 4)
        net.advance(2.0)            # stopped: no more samples
        self.assertEqual(value(samples(self.exposition(metrics)),
                               "proud_event_loop_lag_seconds_count"), 4)

    def test_everyClusterCounterIsServedUnderItsMetric(self):
        """A cluster member's counters and gauges reach the exposition; a
        server in no cluster has no cluster series."""
        from proud_twisted.cluster import Cluster
        from proud_twisted.cluster.stats import ClusterStats

        alone = ServerMetrics(processMetrics=False)
        NetServer(metrics=alone, encryption=False, reactor=task.Clock())
        self.assertNotIn("proud_cluster", self.exposition(alone))
        metrics = ServerMetrics(processMetrics=False)
        cluster = Cluster("redis://127.0.0.1:1/0", "zone-1")
        NetServer(metrics=metrics, encryption=False, reactor=task.Clock(), cluster=cluster)
        numbers = {f.name: 10 * (i + 1) for i, f in enumerate(fields(ClusterStats))}
        for name, number in numbers.items():
            setattr(cluster.stats, name, number)
        cluster.stats.framesOut = numbers["framesDirect"] + 7
        got = samples(self.exposition(metrics))
        served = {("proud_cluster_frames_total", "in"): "framesIn",
                  ("proud_cluster_frames_total", "refused"): "framesRefused",
                  ("proud_cluster_frames_total", "dropped"): "framesDropped",
                  ("proud_cluster_frames_total", "out_direct"): "framesDirect",
                  ("proud_cluster_direct_datagrams_total", None): "directDatagrams"}
        for metric, kinds in (("proud_cluster_messages_total", (
                ("sent", "messagesSent"), ("received", "messagesReceived"),
                ("routed_out", "routedOut"), ("routed_in", "routedIn"),
                ("routed_unknown", "routedUnknown"), ("routed_dropped", "routedDropped"),
                ("publish_failed", "publishesFailed"))),
                ("proud_cluster_rejected_total", (
                    ("malformed", "malformed"), ("unknown_sender", "unknownSender"),
                    ("mismatched_member", "mismatchedMembers"),
                    ("direct_rejected", "directRejected"),
                    ("direct_unknown", "directUnknown"))),
                ("proud_cluster_events_total", (
                    ("registered", "registrations"), ("redis_lost", "redisLost"),
                    ("block_leased", "blocksLeased")))):
            served.update({(metric, kind): field for kind, field in kinds})
        for (metric, kind), field in served.items():
            labels = {} if kind is None else {"kind": kind}
            self.assertEqual(value(got, metric, **labels), numbers[field], metric)
        self.assertEqual(value(got, "proud_cluster_frames_total", kind="out_redis"), 7)
        # Every counter is served (framesOut as out_direct plus out_redis).
        self.assertEqual(set(numbers) - set(served.values()) - {"framesOut"}, set())
        for gauge in ("available", "members", "direct_paths", "pending_bytes"):
            self.assertEqual(value(got, f"proud_cluster_{gauge}"), 0, gauge)

    def test_serversInOneProcessKeepTheirOwnMetrics(self):
        first, second = ServerMetrics(), ServerMetrics()
        one = NetServer(metrics=first, encryption=False, reactor=task.Clock())
        NetServer(metrics=second, encryption=False, reactor=task.Clock())
        one.stats.clientsJoined = 7
        self.assertEqual(value(samples(self.exposition(first)), "proud_client_joins_total"), 7)
        self.assertEqual(value(samples(self.exposition(second)), "proud_client_joins_total"), 0)

    def test_aFloodOfScrapesRendersOnceASecond(self):
        clock = task.Clock()
        metrics = ServerMetrics(processMetrics=False)
        server = NetServer(metrics=metrics, encryption=False, reactor=clock)
        resource = MetricsResource(metrics.registry, clock, minInterval=1.0)
        first = resource.render(DummyRequest([b"metrics"]))
        server.stats.clientsJoined = 5
        clock.advance(0.99)
        self.assertEqual([resource.render(DummyRequest([b""])) for _ in range(100)],
                         [first] * 100)
        self.assertEqual(resource.renders, 1)
        clock.advance(0.01)
        fresh = resource.render(DummyRequest([b""]))
        self.assertEqual(value(samples(fresh.decode()), "proud_client_joins_total"), 5)
        self.assertEqual(resource.renders, 2)

    def test_onlyGetAndHead(self):
        resource = MetricsResource(ServerMetrics(processMetrics=False).registry, task.Clock())
        request = DummyRequest([b""])
        request.method = b"DELETE"
        self.assertEqual(resource.render(request), b"")
        self.assertEqual(request.responseCode, 405)
        self.assertEqual(resource.renders, 0)

    def test_oneServerPerMetrics(self):
        metrics = ServerMetrics()
        NetServer(metrics=metrics, encryption=False, reactor=task.Clock())
        with self.assertRaises(ValueError):
            NetServer(metrics=metrics, encryption=False, reactor=task.Clock())

    def test_badLagInterval(self):
        with self.assertRaises(ValueError):
            ServerMetrics(lagInterval=0)


class PathReportTests(SynchronousTestCase):
    """What the server learns from the clients' path reports (memory network)."""

    def test_punchSuccessThenDirectPathLost(self):
        logs = LogCapture().install(self.addCleanup)
        world = PunchWorld(self, (NATType.FULL_CONE, NATType.PORT_RESTRICTED))
        a, _b, ida, idb = world.directPair()
        self.assertTrue(world.net.runUntil(lambda: world.server.stats.punchSuccesses == 2, 2))
        self.assertEqual(world.server._engine.gauges()["directPairs"], 1)
        world.net.partition(*world.nats)
        a.send(idb, b"into the void")
        self.assertTrue(world.net.runUntil(
            lambda: world.server.stats.directPathsLost == 2, 30))
        self.assertEqual(world.server._engine.gauges()["directPairs"], 0)
        self.assertEqual(world.server.stats.punchFailures, 0)
        outcomes = sorted((e["hostID"], e["peerID"], e["path"], e["outcome"])
                          for e in logs.named("p2p_path"))
        self.assertEqual(outcomes[:4], sorted([
            (ida, idb, "direct", "punch_success"), (idb, ida, "direct", "punch_success"),
            (ida, idb, "relayed", "direct_lost"), (idb, ida, "relayed", "direct_lost")]))
        changed = [(e["hostID"], e["peerID"], e["path"])
                   for e in logs.named("p2p_path_changed")]
        self.assertIn((ida, idb, "direct"), changed)
        self.assertIn((ida, idb, "relayed"), changed)

    def test_punchThatGivesUpIsAFailure(self):
        logs = LogCapture().install(self.addCleanup)
        world = PunchWorld(self, (NATType.SYMMETRIC, NATType.SYMMETRIC))
        world.formGroup()
        a, b = world.clients
        d = a.whenDirect(b.getLocalHostID())
        self.assertTrue(world.net.runUntil(lambda: d.called, 30))
        self.failureResultOf(d)
        self.assertTrue(world.net.runUntil(lambda: world.server.stats.punchFailures >= 1, 5))
        self.assertEqual(world.server.stats.punchSuccesses, 0)
        gaveUp = logs.named("punch_gave_up")
        self.assertIn((a.getLocalHostID(), b.getLocalHostID()),
                      [(e["hostID"], e["peerID"]) for e in gaveUp])
        self.assertIn("punch_failure", [e["outcome"] for e in logs.named("p2p_path")])


    def test_aClientRepeatingPathReportsMovesNothingAndFloodsNothing(self):
        logs = LogCapture().install(self.addCleanup)
        world = PunchWorld(self, (NATType.SYMMETRIC, NATType.SYMMETRIC))
        world.formGroup()
        cheater, victim = world.clients
        engine = cheater._engine      # (its own counted stream, as a real client's)
        stats = world.server.stats
        before = (stats.punchSuccesses, stats.punchFailures, stats.directPathsLost)
        reported = len(logs.named("p2p_path"))
        # One real change is counted and logged once; saying it again is not.
        for _ in range(50):
            engine.sendServerMessage("P2P_PATH", peerID=victim.getLocalHostID(), direct=False)
        world.net.advance(0.1)
        self.assertEqual((stats.punchSuccesses, stats.punchFailures, stats.directPathsLost),
                         (before[0], before[1] + 1, before[2]))
        self.assertEqual(len(logs.named("p2p_path")), reported + 1)
        # A flood of them is a relay flood: reported, and its reading held
        # (a budget of 20 frames a second here, for a short flood).
        server = world.server._engine
        server._clients[cheater.getLocalHostID()].relayLimit = RelayLimit(
            20, 1e6, server.reactor.seconds())
        for _ in range(100):
            engine.sendServerMessage("P2P_PATH", peerID=victim.getLocalHostID(),
                                     direct=False)
        world.net.advance(0.1)
        self.assertGreaterEqual(stats.relayRateLimited, 1)
        self.assertEqual(stats.punchFailures, before[1] + 1)
        self.assertLessEqual(len(logs.named("p2p_path")), reported + 1)


class DocumentationTests(SynchronousTestCase):
    """Acceptance 4: the docs list every metric and every log event with its fields."""

    def served(self) -> str:
        """What a cluster member serves (every metric there is)."""
        from proud_twisted.cluster import Cluster

        metrics = ServerMetrics()
        NetServer(metrics=metrics, encryption=False, reactor=task.Clock(),
                  cluster=Cluster("redis://127.0.0.1:1/0", "docs"))
        return generate_latest(metrics.registry).decode()

    def test_everyMetricIsDocumentedAndEveryDocumentedMetricServed(self):
        text = self.served()
        types = {name: kind.replace("gauge histogram", "histogram")
                 for name, (kind, _) in documentedMetrics().items()}
        self.assertEqual(exposedTypes(text), types)

    def test_everyLabelIsDocumented(self):
        labels = exposedLabels(self.served())
        for name, (_, documented) in documentedMetrics().items():
            self.assertEqual(labels[name], documented, name)
        self.assertLessEqual(set().union(*labels.values()), ALLOWED_LABELS)

    def test_everyLogEventIsDocumentedWithItsFields(self):
        documented = documentedLogEvents()
        logged = loggedEvents()
        self.assertEqual(set(documented), set(logged))
        for event, (side, level, eventFields) in logged.items():
            self.assertEqual(documented[event], (side, level, eventFields), event)

    def test_theDashboardUsesEveryMetricAndNothingElse(self):
        dashboard = json.loads(DASHBOARD.read_text())
        exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
        used = set()
        for expr in exprs:
            used.update(re.findall(r"\b((?:proud|process)_\w+)\{", expr))
        bases = {re.sub(r"_(bucket|sum|count|gsum|gcount)$", "", name) for name in used}
        documented = set(documentedMetrics())
        self.assertLessEqual(bases, documented)
        self.assertEqual({n for n in documented if n.startswith("proud_")},
                         {n for n in bases if n.startswith("proud_")})


class TapMetricsOptionTests(SynchronousTestCase):
    def parse(self, *args):
        config = tap.Options()
        config.parseOptions(["--no-encryption", *args])
        return config

    def test_noMetricsByDefault(self):
        config = self.parse()
        self.assertIsNone(config["metrics"])
        self.assertEqual([s.name for s in tap.makeService(config)],
                         ["identity", "proudserver", "gc-freeze"])

    def test_metricsServiceAfterTheServer(self):
        top = tap.makeService(self.parse("--metrics", "tcp:0:interface=127.0.0.1"))
        self.assertEqual([s.name for s in top],
                         ["identity", "proudserver", "metrics", "gc-freeze"])

    def test_aBadEndpointIsAUsageError(self):
        with self.assertRaises(usage.UsageError) as caught:
            tap.makeService(self.parse("--metrics", "nonsense:9100"))
        self.assertIn("--metrics", str(caught.exception))


class TwistdMetricsTests(InTemporaryDirectory, SynchronousTestCase):
    def test_twistdServesMetrics(self):
        """C{twistd -n proudserver --metrics tcp:0:...} as a user runs it."""
        server = LineReader([*TWISTD, "-n", "--pidfile=", "proudserver", "--tcp", "0",
                             "--udp", "0", "--interface", "127.0.0.1", "--no-encryption",
                             "--metrics", "tcp:0:interface=127.0.0.1"], self.directory)
        self.addCleanup(stop, server)
        url = server.expect(r"Prometheus metrics at (http://127\.0\.0\.1:\d+/metrics)")[1]
        with urllib.request.urlopen(url, timeout=10) as response:
            self.assertEqual(response.status, 200)
            text = response.read().decode()
        got = samples(text)
        self.assertEqual(value(got, "proud_clients_connected"), 0)
        self.assertEqual(value(got, "proud_client_joins_total"), 0)
        self.assertIn("process_cpu_seconds_total", text)

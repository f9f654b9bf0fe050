"""Prometheus metrics of one server: L{ServerMetrics}.

Almost everything is read when Prometheus scrapes, by a custom collector:
the server's counters (L{ServerStats}) and what exists now (clients, groups,
pairs, the clients' round trips). Nothing is added to the path of a relayed
message. The one thing measured continuously is the event loop's lag: a
timer every L{LAG_INTERVAL} seconds notes how late it fires.

No metric is labelled by HostID or by anything a client chooses: every label
takes a handful of values the server defines, so no client can add series.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    Metric,
)
from prometheus_client.process_collector import ProcessCollector

from proud_twisted.constants import HackKind, JoinRefusal

LAG_INTERVAL = 0.5
"""Seconds between two event-loop lag samples: each costs about 2 µs, so
the monitor takes 4 µs of every second; a stall of the loop shows up within
half a second."""
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
RTT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0)
"""Round trips from a LAN (under 1 ms) to a far mobile player (over 300 ms)."""

_REJECTED = (
    ("relay_not_allowed", "relayRejected"),
    ("relay_to_departed", "relayToDeparted"),
    ("spoofed_datagram", "spoofedDatagrams"),
    ("amplification", "amplificationRefused"),
    ("handshake_timeout", "handshakeTimeouts"),
    ("slow_consumer", "slowConsumers"),
)
_MALFORMED = (
    ("message", "malformedMessages"),
    ("oversized_message", "oversizedMessages"),
    ("datagram", "malformedDatagrams"),
    ("handshake", "failedHandshakes"),
    ("rtt_report", "rttReportsRejected"),
)
_RECOVERY = (
    ("offline", "clientsOffline"),
    ("online", "clientsResumed"),
    ("expired", "recoveryExpired"),
    ("refused", "resumesRefused"),
    ("no_room", "recoveryRefused"),
    ("resend_overflow", "resendOverflows"),
)
_MOVES = (
    ("moved_out", "clientsMovedOut"),
    ("moved_in", "clientsMovedIn"),
    ("failed", "movesFailed"),
    ("refused", "movesRefused"),
)
_CLUSTER_FRAMES = (
    ("in", "framesIn"),
    ("refused", "framesRefused"),
    ("dropped", "framesDropped"),
)
_CLUSTER_MESSAGES = (
    ("sent", "messagesSent"),
    ("received", "messagesReceived"),
    ("routed_out", "routedOut"),
    ("routed_in", "routedIn"),
    ("routed_unknown", "routedUnknown"),
    ("routed_dropped", "routedDropped"),
    ("publish_failed", "publishesFailed"),
)
_CLUSTER_REJECTED = (
    ("malformed", "malformed"),
    ("unknown_sender", "unknownSender"),
    ("mismatched_member", "mismatchedMembers"),
    ("direct_rejected", "directRejected"),
    ("direct_unknown", "directUnknown"),
)
_CLUSTER_EVENTS = (
    ("registered", "registrations"),
    ("redis_lost", "redisLost"),
    ("block_leased", "blocksLeased"),
)
_CLUSTER_COUNTERS = (     # name (less _total), meaning, kinds
    ("proud_cluster_messages",
     "Messages between servers and sends to other servers' clients, by kind.",
     _CLUSTER_MESSAGES),
    ("proud_cluster_rejected", "Data from Redis or other servers rejected, by kind.",
     _CLUSTER_REJECTED),
    ("proud_cluster_events", "Registrations, losses of Redis, HostID blocks leased.",
     _CLUSTER_EVENTS),
)
_COUNTERS = (     # name (less _total), ServerStats field, meaning
    ("proud_client_joins", "clientsJoined", "Clients that joined the server."),
    ("proud_client_leaves", "clientsLeft", "Clients that left the server, for any reason."),
    ("proud_client_timeouts", "clientsTimedOut", "Clients dropped for silence (also leaves)."),
    ("proud_group_joins", "groupJoins", "Clients added to a P2P group."),
    ("proud_group_leaves", "groupLeaves", "Clients out of a P2P group, for any reason."),
    ("proud_relay_requests", "relayRequests", "Relay requests (one or more frames) received."),
    ("proud_relayed_messages", "framesRelayed", "Frames relayed between peers."),
    ("proud_relayed_bytes", "relayBytes", "Payload bytes relayed between peers."),
    ("proud_direct_paths_lost", "directPathsLost", "Direct paths that fell back to relay."),
    ("proud_relay_rate_limited", "relayRateLimited", "Relay requests over the rate limit."),
    ("proud_output_dropped", "outputDropped", "Unreliable messages dropped unread."),
)


class ServerMetrics:
    """The Prometheus metrics of one L{NetServer}, in their own
    C{CollectorRegistry} (C{registry}), so several servers in one process
    do not clash. Give it to C{NetServer(metrics=...)}; serve it with
    L{metricsService} (or any C{prometheus_client} exposition of
    C{registry}).

    @param registry: where the metrics go (default: a new one).
    @param processMetrics: add C{prometheus_client}'s process metrics
        (CPU, memory, file descriptors) to the registry.
    @param lagInterval: seconds between event-loop lag samples.
    """

    def __init__(self, registry: CollectorRegistry | None = None, *,
                 processMetrics: bool = True, lagInterval: float = LAG_INTERVAL) -> None:
        if lagInterval <= 0:
            raise ValueError("lagInterval must be greater than 0")
        self.registry = registry if registry is not None else CollectorRegistry()
        self.lagInterval = lagInterval
        self._engine: Any = None
        self._lagCall: Any = None
        self._lagDue = 0.0
        self._clock: Any = None
        self.lag = Histogram(
            "proud_event_loop_lag_seconds",
            "How late a timer due every lagInterval seconds fired: how long the "
            "event loop was busy elsewhere.", buckets=LAG_BUCKETS, registry=self.registry)
        self.registry.register(_ServerCollector(self))
        if processMetrics:
            ProcessCollector(registry=self.registry)

    def attach(self, engine: Any) -> None:
        """Read the metrics of C{engine}'s server (one server a C{ServerMetrics})."""
        if self._engine is not None and self._engine is not engine:
            raise ValueError("these ServerMetrics already belong to another server")
        self._engine = engine

    def start(self, clock: Any) -> None:
        """Start sampling the event loop's lag on C{clock}."""
        if self._lagCall is None:
            self._clock = clock
            self._lagDue = clock.seconds() + self.lagInterval
            self._lagCall = clock.callLater(self.lagInterval, self._sampleLag)

    def stop(self) -> None:
        """Stop sampling (the counters stay readable)."""
        if self._lagCall is not None:
            if self._lagCall.active():
                self._lagCall.cancel()
            self._lagCall = None

    def _sampleLag(self) -> None:
        now = self._clock.seconds()
        self.lag.observe(max(0.0, now - self._lagDue))
        self._lagDue = now + self.lagInterval
        self._lagCall = self._clock.callLater(self.lagInterval, self._sampleLag)

    def collectServer(self) -> Iterator[Metric]:
        """The server's metrics as they are now (what a scrape reads)."""
        engine = self._engine
        if engine is None:
            return
        stats = engine.stats
        now = engine.gauges()
        yield GaugeMetricFamily("proud_clients_connected", "Clients joined now.",
                                value=now["clients"])
        yield GaugeMetricFamily("proud_connections", "TCP connections now, joined or not.",
                                value=now["connections"])
        yield GaugeMetricFamily("proud_groups", "P2P groups now.", value=now["groups"])
        pairs = GaugeMetricFamily(
            "proud_pairs", "Client pairs sharing a group now, by path: direct once "
            "both report a direct path, else relayed.", labels=["path"])
        pairs.add_metric(["direct"], now["directPairs"])
        pairs.add_metric(["relayed"], now["pairs"] - now["directPairs"])
        yield pairs
        yield GaugeMetricFamily(
            "proud_clients_rate_limited", "Clients whose input is held now for "
            "going over their relay rate limit.", value=now["readingHeld"])
        for name, field, documentation in _COUNTERS:
            yield CounterMetricFamily(name, documentation, value=getattr(stats, field))
        punches = CounterMetricFamily(
            "proud_punch_attempts", "Hole-punch attempts that ended, as clients report "
            "them (each side of a pair its own), by result.", labels=["result"])
        punches.add_metric(["success"], stats.punchSuccesses)
        punches.add_metric(["failure"], stats.punchFailures)
        yield punches
        yield _byKind("proud_rejected", "Traffic the server refused, by kind.", "kind",
                      [(kind, getattr(stats, field)) for kind, field in _REJECTED])
        yield _byKind("proud_malformed", "Malformed input the server dropped, by kind.",
                      "kind", [(kind, getattr(stats, field)) for kind, field in _MALFORMED])
        yield _byKind("proud_joins_refused", "Joins the server refused, by reason.",
                      "reason", _counts(stats.joinRefusals, [r.name for r in JoinRefusal]))
        yield _byKind("proud_hack_reports", "Suspected cheating, by kind.", "kind",
                      _counts(stats.hackReports, [k.name for k in HackKind]))
        yield _byKind("proud_recovery_events", "Connection recovery events, by kind.",
                      "kind", [(kind, getattr(stats, field)) for kind, field in _RECOVERY])
        yield _byKind("proud_moves", "Clients moved between cluster servers, by kind.",
                      "kind", [(kind, getattr(stats, field)) for kind, field in _MOVES])
        yield _roundTrips(engine.clientRoundTrips())
        if engine.cluster is not None:
            yield from _clusterMetrics(engine.cluster)


def _clusterMetrics(cluster) -> Iterator[Metric]:
    """A cluster member's metrics: L{ClusterStats} and what it knows now."""
    stats, now = cluster.stats, cluster.gauges()
    yield GaugeMetricFamily("proud_cluster_available", "1 while registered with a "
                            "reachable Redis, else 0.", value=now["available"])
    yield GaugeMetricFamily("proud_cluster_members", "Other live members known now.",
                            value=now["members"])
    yield GaugeMetricFamily("proud_cluster_direct_paths", "Members whose direct path "
                            "answers now (relayed frames go to them straight).",
                            value=now["directPaths"])
    yield GaugeMetricFamily("proud_cluster_pending_bytes", "Bytes sent to Redis and not "
                            "acknowledged yet.", value=now["pendingBytes"])
    frames = [("out_direct", stats.framesDirect),
              ("out_redis", stats.framesOut - stats.framesDirect)]
    yield _byKind("proud_cluster_frames", "Frames relayed between this server's clients "
                  "and their peers on other servers, by kind.", "kind",
                  frames + [(kind, getattr(stats, field)) for kind, field in _CLUSTER_FRAMES])
    yield CounterMetricFamily("proud_cluster_direct_datagrams", "Datagrams that carried "
                              "the frames sent straight.", value=stats.directDatagrams)
    for name, documentation, kinds in _CLUSTER_COUNTERS:
        yield _byKind(name, documentation, "kind",
                      [(kind, getattr(stats, field)) for kind, field in kinds])


def _byKind(name: str, documentation: str, label: str, counts) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation, labels=[label])
    for kind, count in counts:
        family.add_metric([kind], count)
    return family


def _counts(counts: dict[str, int], known) -> list[tuple[str, int]]:
    """C{counts} with every C{known} kind, 0 if never counted."""
    return [(kind, counts.get(kind, 0)) for kind in dict.fromkeys([*known, *counts])]


def _roundTrips(rtts: list[float]) -> GaugeHistogramMetricFamily:
    rtts = sorted(rtts)
    cumulative = [(repr(bound), bisect_right(rtts, bound)) for bound in RTT_BUCKETS]
    cumulative.append(("+Inf", len(rtts)))
    return GaugeHistogramMetricFamily(
        "proud_client_rtt_seconds", "Round trips of the joined clients now, as their "
        "keepalives report them (ClientInfo.rtt).", buckets=cumulative,
        gsum_value=sum(rtts))


class _ServerCollector:
    """Hands a registry the server's metrics when it is scraped."""

    def __init__(self, metrics: ServerMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        return self.metrics.collectServer()

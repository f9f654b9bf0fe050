"""Serving L{ServerMetrics} over HTTP, in the reactor's thread: L{metricsService}.

The metrics port faces Prometheus, and perhaps whoever else can reach it, so
it is bounded: at most L{MAX_METRICS_CONNECTIONS} connections at once, each
closed after L{METRICS_IDLE_TIMEOUT} seconds of silence or once it leaves
L{MAX_UNSENT_BYTES} of answers unread, request bodies are
discarded unread into memory, headers are capped by Twisted (16 KiB), and the
exposition is rendered at most once every L{MIN_RENDER_INTERVAL} seconds
(later scrapes get the same bytes), so a flood of scrapes costs the game
server one render a second.
"""

from __future__ import annotations

import io
from typing import Any

from prometheus_client import generate_latest
from twisted.application import service
from twisted.internet import defer, endpoints
from twisted.logger import Logger
from twisted.protocols import policies
from twisted.web import resource, server

from proud_twisted.server.connection import unsentBytes
from proud_twisted.server.metrics import ServerMetrics

MIN_RENDER_INTERVAL = 1.0
"""Seconds a rendered exposition is served again: a render of a server with
10,000 clients in 45,000 pairs takes about 7 ms, so a flood of scrapes takes
under 1 % of the event loop; Prometheus scrapes every 15 s or so and never
sees a stale answer."""
MAX_METRICS_CONNECTIONS = 16
"""Open connections to the metrics port; more are closed at once. A
Prometheus server or two and an operator's curl need far fewer."""
MAX_UNSENT_BYTES = 1024 * 1024
"""Bytes of answers a metrics connection may leave unread; past them it is
closed. Prometheus reads each answer at once (a few KiB, fixed families), but
a client that pipelines requests and reads nothing would have the server
render and buffer answers without end."""
METRICS_IDLE_TIMEOUT = 10.0
"""Seconds a metrics connection may stay silent before it is closed."""
CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
"""The Prometheus text format that C{generate_latest} writes."""


class MetricsResource(resource.Resource):
    """Answers C{GET} (at any path) with the Prometheus text exposition of
    C{registry}, rendered at most once every C{minInterval} seconds of
    C{clock}."""

    isLeaf = True

    def __init__(self, registry: Any, clock: Any,
                 minInterval: float = MIN_RENDER_INTERVAL) -> None:
        super().__init__()
        self.registry = registry
        self.clock = clock
        self.minInterval = minInterval
        self.renders = 0
        self._body = b""
        self._renderedAt = float("-inf")

    def render(self, request: Any) -> bytes:
        """C{GET} and C{HEAD} get the metrics; anything else a bare 405."""
        if request.method not in (b"GET", b"HEAD"):
            request.setResponseCode(405)
            request.setHeader(b"allow", b"GET, HEAD")
            return b""
        return self.render_GET(request)

    def render_GET(self, request: Any) -> bytes:
        now = self.clock.seconds()
        if now - self._renderedAt >= self.minInterval:
            self._body = generate_latest(self.registry)
            self._renderedAt = now
            self.renders += 1
        request.setHeader(b"content-type", CONTENT_TYPE)
        return self._body


class _Discarded(io.BytesIO):
    """A request body nobody reads: it takes no memory."""

    def write(self, data) -> int:
        return len(data)


class _MetricsSite(server.Site):
    def getContentFile(self, length):
        return _Discarded()


class _BoundedOutput(policies.ProtocolWrapper):
    """Closes its connection once more than L{MAX_UNSENT_BYTES} of answers
    wait unread, and writes nothing more."""

    cut = False

    def write(self, data: bytes) -> None:
        if self.cut:
            return
        self.transport.write(data)
        queued = unsentBytes(self.transport)
        if queued is not None and queued > MAX_UNSENT_BYTES:
            self.cut = True
            self.transport.abortConnection()

    def writeSequence(self, data) -> None:
        self.write(b"".join(data))


class _LimitedConnections(policies.WrappingFactory):
    """Refuses connections past C{limit} open ones; each is bounded in what
    it may leave unread (L{_BoundedOutput})."""

    protocol = _BoundedOutput

    def __init__(self, wrappedFactory, limit: int) -> None:
        super().__init__(wrappedFactory)
        self.limit = limit

    def buildProtocol(self, addr):
        if len(self.protocols) >= self.limit:
            return None
        return super().buildProtocol(addr)


class MetricsService(service.Service):
    """Serves a L{MetricsResource} on a Twisted server endpoint string
    (C{"tcp:9100"}, C{"tcp:9100:interface=127.0.0.1"}, ...).

    C{listening} is a Deferred that fires with the listening port once the
    service started (its C{getHost()} tells a C{tcp:0} port's number); a
    port that cannot be bound fails C{startService} at once.
    """

    log = Logger()

    def __init__(self, reactor: Any, description: str, metricsResource: MetricsResource,
                 maxConnections: int = MAX_METRICS_CONNECTIONS,
                 idleTimeout: float = METRICS_IDLE_TIMEOUT) -> None:
        self.endpoint = endpoints.serverFromString(reactor, description)
        self.resource = metricsResource
        site = _MetricsSite(metricsResource, timeout=idleTimeout, reactor=reactor)
        site.noisy = False
        site.log = lambda request: None     # no access log line per scrape
        self.factory = _LimitedConnections(site, maxConnections)
        self.factory.noisy = False
        self.listening: defer.Deferred[Any] = defer.Deferred()
        self._port: Any = None

    def startService(self) -> None:
        failures = []
        listening = self.endpoint.listen(self.factory)
        listening.addCallbacks(self._listened, failures.append)
        if failures:
            failures[0].raiseException()
        super().startService()

    def _listened(self, port) -> None:
        self._port = port
        address = port.getHost()
        self.log.info("Prometheus metrics at http://{host}:{port}/metrics",
                      host=getattr(address, "host", address), port=getattr(address, "port", ""))
        self.listening.callback(port)

    def stopService(self) -> defer.Deferred[object] | None:
        super().stopService()
        port, self._port = self._port, None
        if port is None:
            return None
        for protocol in list(self.factory.protocols):
            protocol.transport.abortConnection()
        return defer.maybeDeferred(port.stopListening)


def metricsService(description: str, metrics: ServerMetrics, reactor: Any = None, *,
                   minInterval: float = MIN_RENDER_INTERVAL) -> MetricsService:
    """A service serving C{metrics} (a L{ServerMetrics}) over HTTP on the
    Twisted server endpoint C{description}, e.g. C{"tcp:9100"}."""
    if reactor is None:
        from twisted.internet import reactor
    return MetricsService(reactor, description,
                          MetricsResource(metrics.registry, reactor, minInterval))

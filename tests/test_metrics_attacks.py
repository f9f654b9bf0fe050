"""Attacks on the Prometheus metrics port (issue #17) over loopback: it
runs in the game server's reactor and process, so whoever can reach it must
not be able to make the server hold unbounded memory."""

from __future__ import annotations

import pytest_twisted
from twisted.internet import defer, endpoints, protocol, reactor, task

from proud_twisted import ServerMetrics, metricsService
from proud_twisted.server.connection import unsentBytes
from proud_twisted.server.metricsweb import MAX_UNSENT_BYTES


class NonReader(protocol.Protocol):
    """Pipelines requests and never reads an answer."""

    def __init__(self) -> None:
        self.lost = defer.Deferred()

    def connectionMade(self) -> None:
        self.transport.pauseProducing()        # reads nothing

    def connectionLost(self, reason) -> None:
        self.lost.callback(None)


@pytest_twisted.inlineCallbacks
def test_aScraperThatNeverReadsIsCutAtTheOutputBound():
    """Pipelined GETs whose answers are never read: the server would render
    an answer for each and buffer them all (some 40 MB a second, without
    end); it closes the connection once L{MAX_UNSENT_BYTES} wait unread."""
    service = metricsService("tcp:0:interface=127.0.0.1", ServerMetrics())
    service.startService()
    peak = [0]

    def measure() -> None:
        for wrapper in list(service.factory.protocols):
            queued = unsentBytes(wrapper.transport)
            if queued is not None:
                peak[0] = max(peak[0], queued)
    watch = task.LoopingCall(measure)
    watch.start(0.005)
    try:
        port = (yield service.listening).getHost().port
        endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        client = yield endpoints.connectProtocol(endpoint, NonReader())
        requests = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * 1000
        for _ in range(40):
            if not service.factory.protocols:
                break
            client.transport.write(requests)
            yield task.deferLater(reactor, 0.02, lambda: None)
        for _ in range(500):           # 5 s at most
            if not service.factory.protocols:
                break
            yield task.deferLater(reactor, 0.01, lambda: None)
        assert not service.factory.protocols, "the non-reading scraper is still served"
        assert peak[0] <= MAX_UNSENT_BYTES + 64 * 1024, peak[0]
        client.transport.abortConnection()
        yield client.lost
    finally:
        watch.stop()
        yield service.stopService()

"""The fuzz run, short: hostile TCP streams and UDP datagrams derived from
valid frames at a live server on loopback while two honest clients exchange
reliable messages through it (tests/fuzzing.py; the full run of a million
inputs is bench/fuzz_server.py).

Pass: every input thrown, the server keeps running and serves a fresh
client afterwards, no failure is logged, the honest clients lose nothing and
stay connected, and memory stays bounded.

Each bug a fuzz run finds gets a deterministic regression test of its own in
the memory network (tests/test_security.py has the first two: a sealed record
that opens to nothing, and a relayed session frame too short for its epoch).
"""

import random

import pytest_twisted
from twisted.internet import reactor

from proud_twisted.wire import datagrams, messages
from tests.fuzzing import Context, Corpus, FuzzConfig, FuzzHarness, Mutator, UdpDatagrams

SHORT_RUN_INPUTS = 20_000


@pytest_twisted.inlineCallbacks
def test_shortFuzzRunPasses():
    config = FuzzConfig(inputs=SHORT_RUN_INPUTS, seed=20240, maxSeconds=90,
                        drainSeconds=20, maxRssGrowthMB=64)
    result = yield FuzzHarness(config, reactor).run()
    report = result.report()
    print(report)
    assert result.problems() == [], report
    # The run did what it says: both transports, every kind of stream, and
    # inputs that got past the encryption.
    assert result.tcpStreams == round(SHORT_RUN_INPUTS * config.tcpShare)
    assert set(result.tcpByKind) == {"raw", "handshake", "join"}
    assert result.tcpJoined > 0
    assert result.udpByKind.get("insider", 0) > 0
    assert result.udpByKind.get("captured replayed", 0) > 0
    assert result.udpReadByServer > 0.9 * result.udpDatagrams
    assert result.serverStats["spoofedDatagrams"] > 0
    assert result.serverStats["failedHandshakes"] > 0
    assert result.serverStats["framesRelayed"] > 0
    assert result.honestSent > 100


def test_generatorsAreSeededAndStayInBounds():
    def draw(seed):
        rng = random.Random(seed)
        context = Context(honest=(1000, 1001), insiders=(1002,), groups=(1003,))
        corpus = Corpus(rng, context, variants=2)
        mutator = Mutator(rng, corpus.donors, context.hostIDs)
        return [mutator.mutate(corpus.udpDatagram()) for _ in range(200)] + \
               [mutator.mutate(corpus.tcpBody()) for _ in range(200)]

    first = draw(5)
    assert draw(5) == first
    assert draw(6) != first
    assert all(len(x) < 70_000 for x in first)
    # Every message and datagram kind has a valid sample to start from.
    corpus = Corpus(random.Random(1), Context(honest=(1000,)), variants=1)
    assert set(messages.BODIES) <= set(corpus.tcpBodies)
    assert set(datagrams.BODIES) <= set(corpus.udpDatagrams)


def test_forgedDatagramsCarryARealHostID():
    rng = random.Random(3)
    corpus = Corpus(rng, Context(honest=(1000, 1001)), variants=1)
    udp = UdpDatagrams(rng, corpus, attackers=[object()], insiders=[], captured=[])
    forged = udp._forge(bytes(20))
    assert int.from_bytes(forged[2:6], "big") in (1000, 1001)

"""The cluster's pure parts: envelopes, member entries, HostID blocks, URLs."""

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proud_twisted.cluster import envelope as e
from proud_twisted.cluster.keys import ClusterKeys, checkServerID
from proud_twisted.cluster.leases import LeasedBlocks, blockOf, blockRange
from proud_twisted.cluster.redisurl import RedisAddress, parseRedisURL
from proud_twisted.cluster.serverinfo import ServerInfo
from proud_twisted.errors import ProtocolError
from proud_twisted.rudp import DeliveryMode, Priority
from proud_twisted.server.hostids import HostIDAllocator, HostIDsExhausted


def test_envelopesRoundTrip():
    assert e.decode(e.encodeMessage("a", "chat", b"hi")) == e.Envelope(e.MESSAGE, "a", "chat",
                                                                        b"hi")
    routed = e.decode(e.encodeRoute("zone-1", [1000, 0xFFFFFFFF], b"\x00x",
                                    DeliveryMode.UNRELIABLE_LATEST, Priority.HIGH, 7))
    assert routed == e.Envelope(e.ROUTE, "zone-1", payload=b"\x00x",
                                targets=(1000, 0xFFFFFFFF), mode=DeliveryMode.UNRELIABLE_LATEST,
                                priority=Priority.HIGH, sendChannel=7)
    assert e.decode(e.encodeLease("a", 7)).block == 7
    assert e.decode(e.encodeLeave("a")).kind == e.LEAVE
    assert e.decode(e.encodeJoin("a", b"{}")).payload == b"{}"


@pytest.mark.parametrize("data", [
    b"", b"PC", b"XX\x01\x01\x01a\x00", b"PC\x02\x01\x01a\x00", b"PC\x01\x07\x01a",
    b"PC\x01\x01\x00", b"PC\x01\x01\x05abc", b"PC\x01\x01\x01a", b"PC\x01\x01\x01a\x05ab",
    b"PC\x01\x02\x01a\x00\x01\x00\x00", b"PC\x01\x02\x01a\x00\x01\x00\x00\x00",
    b"PC\x01\x02\x01a\x00\x01\x00\x00\x02\x00\x00\x03\xe8",
    b"PC\x01\x02\x01a\x09\x01\x00\x00\x01\x00\x00\x03\xe8",
    b"PC\x01\x02\x01a\x00\x07\x00\x00\x01\x00\x00\x03\xe8",
    b"PC\x01\x05\x01a\x00", b"PC\x01\x04\x01ax", b"PC\x01\x01\x02\xff\xfe\x00",
])
def test_malformedEnvelopesRaiseProtocolError(data):
    with pytest.raises(ProtocolError):
        e.decode(data)


@given(st.binary(max_size=64))
def test_anyBytesDecodeOrRaiseProtocolError(data):
    with contextlib.suppress(ProtocolError):
        e.decode(data)


@given(st.binary(max_size=40))
def test_anyBytesAfterAValidHeaderDecodeOrRaiseProtocolError(tail):
    for kind in sorted(e.KINDS):
        with contextlib.suppress(ProtocolError):
            e.decode(b"PC\x01" + bytes((kind,)) + b"\x01a" + tail)


def test_serverInfoRoundTripsAndRejectsWhatIsNotOne():
    info = ServerInfo("zone-1", ("10.0.0.5", 33333), ("10.0.0.5", 33334), "zone", 3, 1, 0.25,
                      "0123abcd")
    assert ServerInfo.fromJSON(info.toJSON()) == info
    for bad in (b"", b"[]", b"{}", b"\xff", b"x" * 5000,
                info.toJSON().replace(b"33333", b"70000"),
                info.toJSON().replace(b'"zone-1"', b'"bad id"'),
                info.toJSON().replace(b"3,", b"true,"),
                info.toJSON().replace(b'"0123abcd"', b"7"),
                info.toJSON().replace(b'"encryption":true', b'"encryption":1'),
                info.toJSON()[:-1] + b',"extra":1}'):
        with pytest.raises(ProtocolError):
            ServerInfo.fromJSON(bad)


def test_blocksPartitionTheHostIDs():
    assert list(blockRange(0, 4)) == [1000, 1001, 1002, 1003]
    assert list(blockRange(2, 4)) == [1008, 1009, 1010, 1011]
    assert [blockOf(h, 4) for h in (999, 1000, 1003, 1004)] == [None, 0, 0, 1]
    assert blockRange(blockOf(0xFFFFFFFF)).stop == 0x100000000


def test_leasedBlocksHandOutTheirIdsAndAskForMoreWhenLow():
    asked = []
    blocks = LeasedBlocks(4, onLow=lambda: asked.append(True))
    assert blocks.nextID() is None and blocks.wantsBlock()
    blocks.add(3)
    assert [blocks.nextID() for _ in range(2)] == [1012, 1013]
    assert not asked
    assert blocks.nextID() == 1014 and asked == [True]       # one left: a quarter
    blocks.add(0)
    assert [blocks.nextID() for _ in range(3)] == [1015, 1000, 1001]
    with pytest.raises(ValueError):
        blocks.add(0)


def test_theAllocatorTakesFreshIdsFromItsSourceAndReusesAfterTheQuietPeriod():
    blocks = LeasedBlocks(4)
    ids = HostIDAllocator(10.0, source=blocks)
    with pytest.raises(HostIDsExhausted):
        ids.allocate(0)
    blocks.add(5)
    taken = [ids.allocate(0) for _ in range(4)]
    assert taken == [1020, 1021, 1022, 1023]
    ids.release(1021, 0)
    with pytest.raises(HostIDsExhausted):
        ids.allocate(5)
    assert ids.allocate(10) == 1021
    assert [HostIDAllocator().allocate(0) for _ in range(2)] == [1000, 1000]


def test_redisURLs():
    assert parseRedisURL("redis://h") == RedisAddress("h", 6379, 0, None)
    assert parseRedisURL("redis://:s3cret@10.0.0.1:7000/3") == RedisAddress(
        "10.0.0.1", 7000, 3, "s3cret")
    for bad in ("http://h", "redis://", "redis://h/x", "redis://h:99999", "redis://h/1?a=b"):
        with pytest.raises(ValueError):
            parseRedisURL(bad)


def test_keysAndServerIDs():
    keys = ClusterKeys("game", 2)
    assert keys.server("a") == "game:server:a"
    assert keys.inbox("a") == "game@2:to:a"
    assert checkServerID("zone-1.eu_west") == "zone-1.eu_west"
    for bad in ("", "a b", "x" * 65, "é", None):
        with pytest.raises(ValueError):
            checkServerID(bad)

"""Direct paths between cluster servers (pure): probes and answers, frames
sealed for one server process, and what a forged, replayed, misdirected or
damaged datagram gets."""

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proud_twisted.cluster.direct import (
    ANSWER,
    FRAME,
    MAX_DATAGRAM,
    PROBE,
    DirectPaths,
    UnknownSender,
    decodeFrames,
    encodeEntry,
)
from proud_twisted.cluster.serverinfo import ServerInfo
from proud_twisted.errors import ProtocolError

DEAD_AFTER = 5.0
A_UDP, B_UDP, C_UDP = ("10.0.0.1", 4001), ("10.0.0.2", 4002), ("10.0.0.3", 4003)


def server(serverID, incarnation=None) -> DirectPaths:
    return DirectPaths(serverID, incarnation or f"{serverID}-1", DEAD_AFTER)


def meet(*servers) -> None:
    """Every server learns every other's entry (as from Redis)."""
    addresses = {"a": A_UDP, "b": B_UDP, "c": C_UDP}
    for one in servers:
        for other in servers:
            if other is not one:
                one.add(other.serverID, other.incarnation, other.relayKey,
                        addresses[other.serverID])


def connected(now=0.0):
    """a and b, a's path to b answered at C{now}."""
    a, b = server("a"), server("b")
    meet(a, b)
    probe, address = a.probe("b")
    assert address == B_UDP
    assert b.open(probe, now)[:2] == ("a", PROBE)
    answer, address = b.answer("a")
    assert address == A_UDP                     # to a's published address
    assert a.open(answer, now)[:2] == ("b", ANSWER)
    return a, b


def frameFor(a, serverID, payload=b"x"):
    """One frame's datagram from C{a} to C{serverID}."""
    (datagram, _), = a.frames(serverID, [encodeEntry(1, 2, 0, payload)])
    return datagram


def test_aPathIsUpOnceTheOtherServerAnsweredAProbe():
    a, b = server("a"), server("b")
    meet(a, b)
    assert not a.isUp("b", 0.0)
    a, b = connected(now=10.0)
    assert a.isUp("b", 10.0) and not b.isUp("a", 10.0)      # b never heard an answer
    (datagram, address), = a.frames("b", [encodeEntry(1001, 2002, 0x02, b"frame")])
    assert address == B_UDP
    sender, kind, body = b.open(datagram, 10.0)
    assert (sender, kind) == ("a", FRAME)
    assert decodeFrames(body) == [(1001, 2002, 0x02, b"frame")]


def test_aPathUnansweredForDeadAfterSecondsIsDown():
    a, _ = connected(now=10.0)
    assert a.isUp("b", 10.0 + DEAD_AFTER)
    assert not a.isUp("b", 10.0 + DEAD_AFTER + 0.001)
    a.remove("b")
    assert a.probe("b") is None and a.frames("b", [encodeEntry(1, 2, 0, b"")]) is None
    assert a.members() == []


def test_aFrameTooLongForOneDatagramIsLeftToRedis():
    a, _ = connected()
    room = MAX_DATAGRAM - len(frameFor(a, "b", b""))
    assert a.fits(b"x" * room) and not a.fits(b"x" * (room + 1))
    assert len(frameFor(a, "b", b"x" * room)) == MAX_DATAGRAM


def test_theFramesOfATurnLeaveInAsFewDatagramsAsTheyFit():
    a, b = connected()
    entries = [(1000 + i, 2000 + i, i % 3, bytes([i]) * (i * 7 % 300)) for i in range(60)]
    datagrams = a.frames("b", [encodeEntry(*entry) for entry in entries])
    assert all(len(d) <= MAX_DATAGRAM for d, _ in datagrams)
    bundles = [decodeFrames(b.open(d, 0.0)[2]) for d, _ in datagrams]
    assert [f for bundle in bundles for f in bundle] == entries
    # Each datagram took frames until the next did not fit.
    room = MAX_DATAGRAM - len(frameFor(a, "b", b"")) + len(encodeEntry(1, 2, 0, b""))
    for bundle, nextOne in itertools.pairwise(bundles):
        assert (sum(len(encodeEntry(*f)) for f in bundle) + len(encodeEntry(*nextOne[0]))
                > room)
    assert 3 < len(datagrams) < len(entries)


def test_aReplayedDatagramIsRejected():
    a, b = connected()
    datagram = frameFor(a, "b", b"once")
    b.open(datagram, 0.0)
    with pytest.raises(ProtocolError, match="replayed"):
        b.open(datagram, 0.0)
    probe, _ = a.probe("b")
    b.open(probe, 0.0)
    with pytest.raises(ProtocolError, match="replayed"):
        b.open(probe, 0.0)


def test_aDatagramForOneServerProcessOpensAtNoOther():
    a, b, c = server("a"), server("b"), server("c")
    meet(a, b, c)
    forB, _ = a.probe("b")
    with pytest.raises(ProtocolError, match="authentication"):
        c.open(forB, 0.0)                       # another member
    restarted = server("b", "b-2")              # b started again: new keys
    meet(a, restarted)
    with pytest.raises(ProtocolError, match="authentication"):
        restarted.open(forB, 0.0)


def test_forgedDamagedAndStrangersDatagramsAreRejected():
    a, b = connected()
    impostor = server("a", "a-1")               # a's name and incarnation, not its secret
    meet(impostor, b)
    forged, _ = impostor.probe("b")
    b.add("a", a.incarnation, a.relayKey, A_UDP)
    with pytest.raises(ProtocolError, match="authentication"):
        b.open(forged, 0.0)
    genuine = frameFor(a, "b", b"payload")
    # version, type, name length, "a", kind, then the record
    for damaged in (genuine[:-1] + bytes([genuine[-1] ^ 1]),     # the tag
                    genuine[:3] + b"z" + genuine[4:],            # the sender's name
                    genuine[:4] + bytes([PROBE]) + genuine[5:],  # the kind
                    genuine[:20]):
        with pytest.raises(ProtocolError):
            b.open(damaged, 0.0)
    stranger = server("x")
    stranger.add("b", b.incarnation, b.relayKey, B_UDP)
    with pytest.raises(UnknownSender, match="no path here"):
        b.open(stranger.probe("b")[0], 0.0)
    assert b.open(genuine, 0.0)[1] == FRAME     # rejections did not move the window


def test_aMemberWithoutAUsableKeyHasNoPath():
    a = server("a")
    for key in ("", "zz", "00" * 31):
        a.add("b", "b-1", key, B_UDP)
        assert a.probe("b") is None


@given(st.binary(max_size=80))
def test_anyBytesOpenOrRaiseProtocolError(data):
    a, b = connected()
    with pytest.raises(ProtocolError):
        b.open(data, 0.0)
    with pytest.raises(ProtocolError):
        b.open(bytes(a.probe("b")[0][:6]) + data, 0.0)


@pytest.mark.parametrize("body", [
    b"", b"\x00" * 10, encodeEntry(1, 2, 0, b"abc")[:-1],
    encodeEntry(1, 2, 0, b"abc") + b"\x00" * 5])
def test_malformedFramesAreRejectedAndNoneDelivered(body):
    with pytest.raises(ProtocolError):
        decodeFrames(body)


def test_entriesCarryTheRelayKeyAndEntriesWithoutOneStillParse():
    info = ServerInfo("b", ("h", 1), ("h", 2), incarnation="i", relayKey="ab" * 32)
    assert ServerInfo.fromJSON(info.toJSON()) == info
    earlier = info.toJSON().replace(b',"relayKey":"' + b"ab" * 32 + b'"', b"")
    assert ServerInfo.fromJSON(earlier).relayKey == ""
    with pytest.raises(ProtocolError):
        ServerInfo.fromJSON(info.toJSON().replace(b"ab" * 32, b"ab" * 33))

"""Direct paths between cluster servers (pure): probes and answers, frames
sealed for one server process, and what a forged, replayed, misdirected or
damaged datagram gets."""

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
    decodeFrame,
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


def test_framesGoOnlyOnceTheOtherServerAnsweredAProbe():
    a, b = server("a"), server("b")
    meet(a, b)
    assert a.frame("b", 1, 2, 0, b"x", 0.0) is None
    assert not a.isUp("b", 0.0)
    a, b = connected(now=10.0)
    assert a.isUp("b", 10.0) and not b.isUp("a", 10.0)      # b never heard an answer
    datagram, address = a.frame("b", 1001, 2002, 0x02, b"frame", 10.0)
    assert address == B_UDP
    sender, kind, body = b.open(datagram, 10.0)
    assert (sender, kind) == ("a", FRAME)
    assert decodeFrame(body) == (1001, 2002, 0x02, b"frame")


def test_aPathUnansweredForDeadAfterSecondsIsNotUsed():
    a, _ = connected(now=10.0)
    assert a.frame("b", 1, 2, 0, b"x", 10.0 + DEAD_AFTER) is not None
    assert not a.isUp("b", 10.0 + DEAD_AFTER + 0.001)
    assert a.frame("b", 1, 2, 0, b"x", 10.0 + DEAD_AFTER + 0.001) is None
    a.remove("b")
    assert a.probe("b") is None and a.members() == []


def test_aFrameTooLongForOneDatagramIsLeftToRedis():
    a, _ = connected()
    room = MAX_DATAGRAM - len(a.frame("b", 1, 2, 0, b"", 0.0)[0])
    datagram, _ = a.frame("b", 1, 2, 0, b"x" * room, 0.0)
    assert len(datagram) == MAX_DATAGRAM
    assert a.frame("b", 1, 2, 0, b"x" * (room + 1), 0.0) is None


def test_aReplayedDatagramIsRejected():
    a, b = connected()
    datagram, _ = a.frame("b", 1, 2, 0, b"once", 0.0)
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
    genuine, _ = a.frame("b", 1, 2, 0, b"payload", 0.0)
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


def test_decodeFrameRejectsATruncatedFrame():
    with pytest.raises(ProtocolError):
        decodeFrame(b"\x00" * 8)


def test_entriesCarryTheRelayKeyAndEntriesWithoutOneStillParse():
    info = ServerInfo("b", ("h", 1), ("h", 2), incarnation="i", relayKey="ab" * 32)
    assert ServerInfo.fromJSON(info.toJSON()) == info
    earlier = info.toJSON().replace(b',"relayKey":"' + b"ab" * 32 + b'"', b"")
    assert ServerInfo.fromJSON(earlier).relayKey == ""
    with pytest.raises(ProtocolError):
        ServerInfo.fromJSON(info.toJSON().replace(b"ab" * 32, b"ab" * 33))

"""examples/zones.py --headless: a lobby and two zones on one real Redis; two
players moved from the lobby to a zone with NetServer.moveClient, and one of
them on to the other zone while the other keeps talking to her."""

import json
import subprocess
import sys

import pytest

from tests.test_examples import EXAMPLES, TIMEOUT, environment

LINES_DURING_THE_MOVE = 3
"""Fewest of bob's lines zone-a must pass on between its moveClient call and
alice's arrival at zone-b (about 12 do on loopback: bob says one each
reactor turn, and a move takes some: Redis, a reconnection, a handshake)."""


@pytest.fixture(scope="module")
def events(redisServer, tmp_path_factory) -> list:
    """The events of one run of the story (both tests read them)."""
    if redisServer.process is None:
        redisServer.start()
    redisServer.flush()
    done = subprocess.run([sys.executable, str(EXAMPLES / "zones.py"), "--headless",
                           "--redis", redisServer.url], cwd=tmp_path_factory.mktemp("zones"),
                          env=environment(), capture_output=True, text=True, check=False,
                          timeout=TIMEOUT)
    assert done.returncode == 0, done.stdout + done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_aPlayerMovesLobbyToZoneToZoneKeepingItsHostIDWhileChatting(events):

    def named(kind, **fields):
        return [e for e in events if e["event"] == kind
                and all(e.get(k) == v for k, v in fields.items())]

    def index(kind, **fields):
        (found,) = [i for i, e in enumerate(events) if e["event"] == kind
                    and all(e.get(k) == v for k, v in fields.items())]
        return found

    assert events[-1] == {"event": "done", "ok": True}
    # One HostID each, from the lobby's login to the last zone, on both sides.
    for user, zones in (("alice", ["zone-a", "zone-b"]), ("bob", ["zone-a"])):
        (connected,) = named("connected", user=user)
        assert connected["zone"] == "lobby"
        hostID = connected["hostID"]
        moved = named("moved", user=user)
        assert [(e["zone"], e["hostID"]) for e in moved] == [(z, hostID) for z in zones]
        assert [(e["server"], e["hostID"]) for e in named("enter", user=user)] == [
            ("lobby", hostID)]
        assert [(e["server"], e["hostID"]) for e in named("arrived", user=user)] == [
            (z, hostID) for z in zones]
    assert [(e["server"], e["to"]) for e in named("moved_out", user="alice")] == [
        ("lobby", "zone-a"), ("zone-a", "zone-b")]

    # Every numbered line bob said reached alice once and in order, those
    # zone-a passed on while she moved too.
    said = [(e["seq"], e["text"]) for e in named("said", user="bob", to="alice")]
    assert said == [(i, "still here in zone-a") for i in range(1, len(said) + 1)]
    heard = named("heard", user="alice", name="bob")
    assert [(e["seq"], e["text"]) for e in heard] == said
    assert {e["fromZone"] for e in heard} == {"zone-a"}
    start = index("moving", server="zone-a", user="alice", to="zone-b")
    arrival = index("arrived", server="zone-b", user="alice")
    during = [e["seq"] for e in events[start:arrival]
              if e["event"] == "passed" and e["server"] == "zone-a" and e["to"] == "alice"]
    assert len(during) >= LINES_DURING_THE_MOVE, during
    assert {e["zone"] for e in heard if e["seq"] in during} == {"zone-b"}
    assert all(e["seq"] < min(during) for e in heard if e["zone"] == "zone-a")

    # Alice talks to bob from both zones; he stays in zone-a.
    assert [(e["fromZone"], e["text"], e["zone"]) for e in named("heard", user="bob")] == [
        ("zone-a", "hi bob, I am in zone-a too", "zone-a"),
        ("zone-b", "now I am in zone-b", "zone-a")]


def test_aMoveToAZoneThatDoesNotExistIsRefusedAndThePlayerStays(events):
    (refused,) = [e for e in events if e["event"] == "refused"]
    assert refused["user"] == "bob" and refused["zone"] == "zone-a"
    assert "zone-z" in refused["why"]
    (failed,) = [e for e in events if e["event"] == "move_failed"]
    assert (failed["server"], failed["user"], failed["to"]) == ("zone-a", "bob", "zone-z")
    # Bob stayed in zone-a, and his lines after the refusal went out from there.
    assert [e["zone"] for e in events if e["event"] == "moved" and e["user"] == "bob"] == [
        "zone-a"]
    assert {e["zone"] for e in events if e["event"] == "said" and e["user"] == "bob"} == {
        "zone-a"}
    assert events[-1] == {"event": "done", "ok": True}

"""examples/zones.py --headless: a lobby and two zones on one real Redis; a
player moved from the lobby to a zone and on to the other zone while
chatting with a player who stays in the first."""

import json
import subprocess
import sys

from tests.test_examples import EXAMPLES, TIMEOUT, environment


def test_aPlayerMovesLobbyToZoneToZoneWhileChattingAcrossProcesses(redis, tmp_path):
    done = subprocess.run([sys.executable, str(EXAMPLES / "zones.py"), "--headless",
                           "--redis", redis.url], cwd=tmp_path, env=environment(),
                          capture_output=True, text=True, check=False, timeout=TIMEOUT)
    assert done.returncode == 0, done.stdout + done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]

    def named(kind, **fields):
        return [e for e in events if e["event"] == kind
                and all(e[k] == v for k, v in fields.items())]

    assert [e["zone"] for e in named("connected", user="alice")] == ["lobby", "zone-a", "zone-b"]
    assert [e["zone"] for e in named("connected", user="bob")] == ["lobby", "zone-a"]
    assert [(e["name"], e["zone"]) for e in named("heard", user="bob")] == [
        ("alice", "zone-a"), ("alice", "zone-a")]
    assert [e["text"] for e in named("heard", user="bob")] == [
        "hi bob, I am in zone-a too", "now I am in zone-b"]
    assert named("heard", user="alice", name="bob", text="I hear you from zone-a",
                 zone="zone-b")
    # Each zone admitted each player by a ticket the server before it sent.
    assert [(e["server"], e["zone"]) for e in named("ticket", user="alice")] == [
        ("lobby", "zone-a"), ("zone-a", "zone-b")]
    assert events[-1] == {"event": "done", "ok": True}

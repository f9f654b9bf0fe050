"""The examples run as a user runs them: as separate processes."""

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
TIMEOUT = 60.0


def environment() -> dict:
    """The environment for a child process that imports this source tree."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


class LineReader:
    """A child process whose output lines can be awaited, each wait bounded."""

    def __init__(self, args, cwd) -> None:
        self.process = subprocess.Popen(
            args, cwd=cwd, env=environment(), stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True)
        self.lines = []
        self._queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def expect(self, pattern: str, timeout: float = TIMEOUT) -> re.Match:
        """The first new line matching C{pattern}; fails after C{timeout} seconds."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                line = None
            if line is None:
                raise AssertionError(f"no line matching {pattern!r} in:\n"
                                     + "\n".join(self.lines))
            self.lines.append(line)
            match = re.search(pattern, line)
            if match:
                return match

    def finish(self, timeout: float = TIMEOUT) -> int:
        """Wait for the process to exit (killing it after C{timeout}); its exit code."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise
        finally:
            self.process.stdout.close()


INTERRUPT_AGAIN_AFTER = 3.0
INTERRUPTS = 5


def stop(reader: LineReader) -> None:
    """Interrupt C{reader}'s process if it still runs, and wait for it.

    An interrupt that lands before the process's reactor handles signals
    may be lost (its KeyboardInterrupt, raised inside a garbage collector's
    weakref callback, is only printed), so it is sent again every
    C{INTERRUPT_AGAIN_AFTER} seconds, at most C{INTERRUPTS} times.
    """
    for _ in range(INTERRUPTS):
        if reader.process.poll() is not None:
            break
        reader.process.send_signal(signal.SIGINT)
        try:
            reader.process.wait(INTERRUPT_AGAIN_AFTER)
        except subprocess.TimeoutExpired:
            continue
    reader.finish()


def temporaryDirectory(testCase) -> str:
    """A fresh directory outside the checkout (C{mktemp} is relative to the
    working directory, which under pytest is the checkout), removed after
    C{testCase}."""
    path = tempfile.mkdtemp(prefix="proud-test-")
    testCase.addCleanup(shutil.rmtree, path, ignore_errors=True)
    return path


class ChatHeadlessTests(SynchronousTestCase):
    def test_threeUsersChatThenOneLeaves(self):
        done = subprocess.run([sys.executable, str(EXAMPLES / "chat.py"), "--headless"],
                              cwd=temporaryDirectory(self), env=environment(),
                              capture_output=True, text=True, check=False, timeout=TIMEOUT)
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        events = [json.loads(line) for line in done.stdout.splitlines()]
        ids = {e["user"]: e["hostID"] for e in events if e["event"] == "connected"}
        self.assertEqual(set(ids), {"alice", "bob", "carol"})

        def named(kind, **fields):
            return [e for e in events if e["event"] == kind
                    and all(e[k] == v for k, v in fields.items())]

        (created,) = named("group_created")
        group = created["group"]
        for user in ids:
            members = {e["member"] for e in named("member_join", user=user, group=group)}
            self.assertEqual(members, set(ids.values()), user)
        for user in ids:
            heard = {(e["name"], e["text"]) for e in named("heard", user=user)
                     if e["text"].startswith("hi")}
            self.assertEqual(heard, {(other, f"hi, I am {other}")
                                     for other in ids if other != user})
        for user in ("alice", "bob"):
            self.assertTrue(named("member_leave", user=user, member=ids["carol"]), user)
        self.assertTrue(named("heard", user="bob", name="alice", text="bye, carol"))
        self.assertEqual(named("group_removed"), [{"event": "group_removed", "group": group}])
        self.assertEqual(events[-1], {"event": "done", "ok": True})


class RoomClientTests(SynchronousTestCase):
    def test_twoRoomClientsMeetInALobbyOfTwistdProudserver(self):
        cwd = temporaryDirectory(self)
        server = LineReader([sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
                             "-n", "--pidfile=", "proudserver", "--tcp", "0", "--udp", "0",
                             "--interface", "127.0.0.1"], cwd)
        self.addCleanup(stop, server)
        port = server.expect(r"listening on TCP \('127\.0\.0\.1', (\d+)\)").group(1)

        client = [sys.executable, str(EXAMPLES / "room_client.py"), "--port", port,
                  "--room", "lobby"]
        first = LineReader([*client, "--seconds", "30"], cwd)
        self.addCleanup(stop, first)
        first.expect(r"^\[lobby\] we joined \(1 here\)")
        second = subprocess.run([*client, "--say", "hello", "--seconds", "1"], cwd=cwd,
                                env=environment(), capture_output=True, text=True,
                                check=False, timeout=TIMEOUT)
        self.assertEqual(second.returncode, 0, second.stdout + second.stderr)
        self.assertIn("[lobby] we joined (2 here)", second.stdout)
        secondID = re.search(r"as host (\d+)", second.stdout).group(1)
        first.expect(rf"^\[lobby\] host {secondID} joined \(2 here\)")
        first.expect(rf"^\[lobby\] host {secondID}: hello$")
        first.expect(rf"^\[lobby\] host {secondID} left$")

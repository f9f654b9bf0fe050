"""What the child processes of attacks.py share: the protocol version, the
control channel (a command a line on stdin, one JSON line an answer on
stdout, as ``server_gc.ServerProcess`` reads them) and a log observer that
counts instead of printing.

Not part of the package; ``_attack_server.py``, ``_attack_honest.py`` and
``_attack_joiners.py`` import it.
"""

from __future__ import annotations

import collections
import json
import os
import sys
import uuid

from twisted.internet import defer, stdio
from twisted.logger import LogLevel, formatEventAsClassicLogText, globalLogBeginner
from twisted.protocols.basic import LineReceiver

BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH)
import _common  # noqa: E402  (puts this checkout's proud_twisted first on the path)

VERSION = uuid.UUID("0b8f5d2e-7c41-4a39-9e06-d3a1c57f2b94")
LOOPBACK = _common.LOOPBACK
ERRORS_PRINTED = 3
"""Error events a child writes to stderr; it counts the rest."""


class LogCounter:
    """A log observer: counts events by level, writes the first few errors
    to stderr (an attack makes thousands of alike warnings)."""

    def __init__(self) -> None:
        self.levels = collections.Counter()
        self.printed = 0

    def __call__(self, event) -> None:
        level = event.get("log_level", LogLevel.info)
        self.levels[level.name] += 1
        if level in (LogLevel.error, LogLevel.critical) and self.printed < ERRORS_PRINTED:
            self.printed += 1
            text = formatEventAsClassicLogText(event) or ""
            sys.stderr.write(f"[{os.path.basename(sys.argv[0])}] {text[:2000]}")


class JsonControl(LineReceiver):
    """Commands on stdin (``name arg ...``), a JSON line per answer on stdout.

    ``commands`` maps a name to a function of the string arguments returning
    a dict or a Deferred of one; ``quit`` (or stdin closing) stops the reactor.
    """

    delimiter = b"\n"

    def __init__(self, reactor) -> None:
        self.reactor = reactor
        self.commands = {}
        self.stopping = False

    def answer(self, reply: dict) -> None:
        self.sendLine(json.dumps(reply).encode())

    def lineReceived(self, line: bytes) -> None:
        name, *words = line.decode().split() or [""]
        if name == "quit":
            self.answer({"bye": True})
            self.reactor.callLater(0, self.stop)
            return
        command = self.commands.get(name)
        if command is None:
            self.answer({"error": f"unknown command {name!r}"})
            return
        defer.maybeDeferred(command, *words).addCallbacks(
            self.answer, lambda failure: self.answer(
                {"error": f"{name}: {failure.type.__name__}: {failure.getErrorMessage()}"}))

    def stop(self) -> None:
        if not self.stopping:
            self.stopping = True
            self.reactor.stop()

    def connectionLost(self, reason) -> None:
        self.stop()         # stdin closed: the bench process is done, or gone


def runChild(setup, lifetime: float) -> int:
    """Run a child: ``setup(reactor, log)`` (a coroutine) returns its first
    answer and its commands; the child stops after ``lifetime`` seconds
    whatever happens."""
    _common.raiseFileLimit()
    from twisted.internet import reactor
    log = LogCounter()
    # Without an observer Twisted keeps the last 65,536 events in memory.
    globalLogBeginner.beginLoggingTo([log], redirectStandardIO=False)
    control = JsonControl(reactor)

    async def start():
        hello, control.commands = await setup(reactor, log)
        control.answer(hello)

    def started(_) -> None:
        stdio.StandardIO(control, reactor=reactor)
        defer.ensureDeferred(start()).addErrback(lambda failure: control.answer(
            {"error": f"start: {failure.type.__name__}: {failure.getErrorMessage()}"}))

    reactor.callWhenRunning(started, None)
    reactor.callLater(lifetime, control.stop)
    reactor.run()
    return 0

"""What the child processes of attacks.py share: the protocol version, their
options and start (the control channel is ``_control.JsonControl``: a
command a line on stdin, one JSON line an answer on stdout, as
``server_gc.ServerProcess`` reads them) and a log observer that counts
instead of printing.

Not part of the package; ``_attack_server.py``, ``_attack_honest.py`` and
``_attack_joiners.py`` import it.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import uuid

from twisted.internet import defer, stdio
from twisted.logger import LogLevel, formatEventAsClassicLogText, globalLogBeginner

BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH)
import _common  # noqa: E402  (puts this checkout's proud_twisted first on the path)
from _control import JsonControl  # noqa: E402

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


def childParser(doc: str, joinsServer: bool = True) -> argparse.ArgumentParser:
    """The options every child takes (``--lifetime``), and those of a child
    that joins the server (``--port``, ``--key``) unless it is the server."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--lifetime", type=float, required=True,
                        help="stop after this many seconds whatever happens")
    if joinsServer:
        parser.add_argument("--port", type=int, required=True, help="the server's TCP port")
        parser.add_argument("--key", required=True, help="the server's public key (hex)")
    return parser


def runParsed(parser: argparse.ArgumentParser, setupFor) -> int:
    """Parse the command line and run the child ``setupFor(args)`` sets up."""
    args = parser.parse_args()
    return runChild(setupFor(args), args.lifetime)


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

"""The control channel of a benchmark's child process: a command a line on
stdin, one JSON line an answer on stdout. Twisted only, so that a bare
Twisted baseline process can use it without importing proud_twisted.

Not part of the package; server_gc.py and the attacks.py children use it.
"""

import json

from twisted.internet import defer
from twisted.protocols.basic import LineReceiver


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

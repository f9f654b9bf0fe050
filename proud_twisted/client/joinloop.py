"""What a L{NetClient} does as a Twisted service: join the configured server,
and join again after a failure or a leave, backing off, until stopped (the
way Twisted's C{ClientService} keeps a connection)."""

from __future__ import annotations

from collections.abc import Callable

from twisted.application.internet import backoffPolicy
from twisted.internet import defer
from twisted.logger import Logger

from proud_twisted.constants import ErrorType, JoinRefusal
from proud_twisted.errors import (
    ConnectionRefusedByServer,
    HandshakeFailed,
    JoinFailed,
    ProtocolVersionMismatch,
)

DEFAULT_RETRY_POLICY = backoffPolicy()
"""Seconds before the next attempt after C{n} failures in a row: Twisted's
C{ClientService} default, from 1 s growing by half each time to a minute,
with up to a second of jitter (so that thousands of players do not return
to a restarted server in one instant)."""


def isFinal(failure) -> bool:
    """Whether a join failed in a way another attempt cannot mend: another
    protocol version, the wrong server key or encryption setting, or the
    game's login check saying no."""
    if failure.check(ProtocolVersionMismatch, HandshakeFailed):
        return True
    error = failure.value
    return (isinstance(error, ConnectionRefusedByServer)
            and error.reason is JoinRefusal.REFUSED_BY_APPLICATION)


class JoinLoop:
    """Joins with C{join()} (a Deferred of the HostID, as C{connect} gives)
    until L{stop}; L{left} is told of every leave."""

    log = Logger()

    def __init__(self, reactor, join: Callable[[], defer.Deferred],
                 leave: Callable[[], defer.Deferred],
                 retryPolicy: Callable[[int], float] = DEFAULT_RETRY_POLICY) -> None:
        self.reactor = reactor
        self._join = join
        self._leave = leave
        self._retryPolicy = retryPolicy
        self._running = False
        self._failures = 0
        self._retry = None

    def start(self) -> None:
        self._running = True
        self._failures = 0
        self._attempt()

    def stop(self) -> defer.Deferred:
        """Stop joining; leave if joined. Fires once the connection is closed."""
        self._running = False
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        return self._leave()

    def left(self, reason: ErrorType) -> None:
        """The client left the server: join again, unless it left on purpose."""
        if self._running and reason is not ErrorType.DISCONNECT_FROM_LOCAL:
            self._again()

    def _attempt(self) -> None:
        self._retry = None
        try:
            joining = self._join()
        except JoinFailed as e:         # (already joined or joining: nothing to do)
            self.log.info("not joining again: {error}", error=e)
            return
        joining.addCallbacks(self._joined, self._failed)

    def _joined(self, hostID: int) -> None:
        self._failures = 0

    def _failed(self, failure) -> None:
        if not self._running:
            return                      # (stopped: the join was given up on purpose)
        if isFinal(failure):
            self.log.warn("joining the server failed for good, not trying again: "
                          "{error}", error=failure.getErrorMessage())
            return
        self._again()

    def _again(self) -> None:
        delay = self._retryPolicy(self._failures)
        self._failures += 1
        self.log.info("joining the server again in {delay:.1f} s", delay=delay)
        self._retry = self.reactor.callLater(delay, self._attempt)

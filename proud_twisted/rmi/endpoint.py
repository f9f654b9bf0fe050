"""L{RmiEndpoint}: the RMI side of one L{NetServer} or L{NetClient}.

It holds the attached declarations (their ID ranges may not overlap), the
stubs' handlers by ID and the calls waiting for an answer; the host's engine
hands it every user message whose first byte is the RMI marker, and it
sends through the host's C{send}.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from proud_twisted._glue.oncelog import OnceLog
from proud_twisted.constants import ErrorType
from proud_twisted.info import ErrorInfo, MessageContext
from proud_twisted.rmi.codec import (
    DeclarationError,
    decodeStr,
    decodeVarint,
    encodeStr,
    encodeVarint,
)
from proud_twisted.rmi.declaration import RemoteMethod
from proud_twisted.rmi.errors import RemoteCallFailed, RmiVersionMismatch
from proud_twisted.rmi.fingerprint import encodeFingerprints, findMismatch
from proud_twisted.rmi.proxy import (
    DEFAULT_CALL_TIMEOUT,
    DEFAULT_MAX_PENDING_CALLS,
    Proxy,
    proxyClass,
)
from proud_twisted.rmi.stub import Stub
from proud_twisted.rmi.wire import ANSWER_ID, FAILURE_ID, FAILURE_UNDECLARED, RMI_MARKER
from proud_twisted.rudp.config import DeliveryMode, Priority

SendFunction = Callable[[Any, bytes, DeliveryMode, Priority, int], None]
"""C{send(targets, payload, mode, priority, channel)} of the host."""

_LATER = (defer.Deferred, types.CoroutineType)
"""What a stub method may return for a result it gives later."""
_NOW = frozenset({int, float, bool, str, bytes, list, dict, tuple, type(None)})
"""Types of a result given at once, told apart without an isinstance of
L{_LATER} (Deferred is an abstract Awaitable: that check is slow)."""
_FAILURE_HEADER = bytes([RMI_MARKER, FAILURE_ID])


@dataclasses.dataclass
class RmiStats:
    """What an endpoint counted (see L{statsOf})."""

    callsReceived: int = 0
    """RMI messages that reached a stub method."""
    unknownIDs: int = 0
    """Messages with an ID no stub handles (C{onNoRmiProcessed})."""
    malformed: int = 0
    """Messages whose arguments, or answers whose result, did not decode."""
    strayAnswers: int = 0
    """Answers to no call waiting (late, or from a host that was not called)."""
    busyRefusals: int = 0
    """Calls answered with a failure because their host had too many in progress."""
    callsRefused: int = 0
    """Calls not sent because the proxy waited for too many answers."""
    timeouts: int = 0
    """Calls that got no answer in time."""
    stubExceptions: int = 0
    """Stub methods that raised something their declaration does not list."""


class RmiEndpoint:
    """The RMI state of one host (see the module)."""

    log = Logger()

    def __init__(self, send: SendFunction, isGroup: Callable[[int], bool], clock: Any,
                 dispatch: Callable[..., Any]) -> None:
        self._send = send
        self.isGroup = isGroup
        self.clock = clock
        self._dispatch = dispatch
        self._onceLog = OnceLog(self.log)
        self.stats = RmiStats()
        self.declarations: dict[str, Any] = {}
        self._stubs: dict[str, Stub] = {}
        # ID -> (method, handler or None, stub)
        self._handlers: dict[int, tuple[RemoteMethod, Callable[..., Any] | None, Stub]] = {}
        # requestID -> the proxy waiting for its answer
        self.calls: dict[int, Proxy] = {}
        self._proxies: list[Proxy] = []
        self._lastRequestID = 0
        self._inProgress: dict[int, int] = {}

    # attaching

    def _declare(self, declaration: Any) -> None:
        """Register C{declaration}, refusing a name or ID range already taken."""
        if not (isinstance(declaration, type) and hasattr(declaration, "methods")):
            raise DeclarationError(f"{declaration!r} is not a RemoteInterface subclass")
        name = declaration.__name__
        known = self.declarations.get(name)
        if known is declaration:
            return
        if known is not None:
            raise DeclarationError(f"another declaration named {name} is attached already")
        for other in self.declarations.values():
            if declaration.firstID <= other.lastID and other.firstID <= declaration.lastID:
                raise DeclarationError(
                    f"{name}'s IDs {declaration.firstID}-{declaration.lastID} overlap "
                    f"{other.__name__}'s {other.firstID}-{other.lastID}")
        self.declarations[name] = declaration

    def attachStub(self, stub: Stub) -> None:
        if not isinstance(stub, Stub):
            raise DeclarationError(f"{stub!r} is not a stub (subclass Declaration.Stub)")
        declaration = stub.declaration
        handlers = stub.rmiHandlers()
        if declaration.__name__ in self._stubs:
            raise DeclarationError(f"a stub of {declaration.__name__} is attached already")
        self._declare(declaration)
        self._stubs[declaration.__name__] = stub
        for method in declaration.methods:
            self._handlers[method.id] = (method, handlers[method.id], stub)

    def attachProxy(self, declaration: Any, timeout: float = DEFAULT_CALL_TIMEOUT,
                    maxPendingCalls: int = DEFAULT_MAX_PENDING_CALLS) -> Proxy:
        self._declare(declaration)
        proxy = proxyClass(declaration)(self, timeout, maxPendingCalls)
        self._proxies.append(proxy)
        return proxy

    def stop(self, reason: str) -> None:
        """The host stopped: fail every call still waiting for an answer."""
        for proxy in self._proxies:
            proxy.failPending(reason)

    # versions

    def fingerprints(self) -> bytes:
        """The fingerprints of every attached declaration, for C{HELLO}."""
        return encodeFingerprints(self.declarations.values())

    def mismatchWith(self, fingerprints: bytes) -> RmiVersionMismatch | None:
        """How a client's declarations disagree with ours (None if they do not)."""
        return findMismatch(self.declarations, fingerprints)

    # sending

    def nextRequestID(self) -> int:
        self._lastRequestID = requestID = self._lastRequestID % 0xFFFFFFFF + 1
        return requestID

    def send(self, target: Any, payload: bytes, mode: DeliveryMode | None,
             priority: Priority | None, channel: int | None, latestOnly: int | None) -> None:
        if mode is None and priority is None and channel is None and latestOnly is None:
            self._send(target, payload, DeliveryMode.RELIABLE, Priority.MEDIUM, 0)
            return
        if latestOnly is not None:
            if mode not in (None, DeliveryMode.UNRELIABLE_LATEST) or \
                    channel not in (None, latestOnly):
                raise ValueError("latestOnly=key takes the mode and channel: give neither")
            mode, channel = DeliveryMode.UNRELIABLE_LATEST, latestOnly
        self._send(target, payload, DeliveryMode.RELIABLE if mode is None else mode,
                   Priority.MEDIUM if priority is None else priority,
                   0 if channel is None else channel)

    # receiving

    def receive(self, sender: int, payload: bytes, context: MessageContext) -> bool:
        """Handle C{payload} if it is an RMI message (return whether it was)."""
        if not payload or payload[0] != RMI_MARKER:
            return False
        try:
            rmiID, pos = decodeVarint(payload, 1)
        except (IndexError, ValueError):
            self._malformed(sender, "an RMI message without an ID", payload)
            return True
        entry = self._handlers.get(rmiID)
        if entry is None:
            if rmiID in (ANSWER_ID, FAILURE_ID):
                self._answerReceived(sender, rmiID, payload, pos)
            else:
                self.stats.unknownIDs += 1
                self._dispatch("onNoRmiProcessed", rmiID, context)
            return True
        method, handler, stub = entry
        requestID = None
        try:
            if method.result is not None:
                requestID, pos = decodeVarint(payload, pos)
            arguments = method.decodeArguments(payload, pos)
        except Exception as e:
            self._malformed(sender, f"{method.qualifiedName} ({rmiID}): {e}", payload)
            if requestID is not None:
                self._fail(sender, requestID, FAILURE_UNDECLARED, "malformed arguments")
            return True
        if handler is None:
            self.stats.unknownIDs += 1
            self._dispatch("onNoRmiProcessed", rmiID, context)
            if requestID is not None:
                self._fail(sender, requestID, FAILURE_UNDECLARED,
                           f"{method.qualifiedName} is not implemented there")
            return True
        self.stats.callsReceived += 1
        if requestID is None:
            self._runOneWay(method, handler, context, arguments)
        else:
            self._runCall(method, handler, stub, sender, requestID, context, arguments)
        return True

    def _malformed(self, sender: int, what: str, payload: bytes) -> None:
        self.stats.malformed += 1
        comment = f"malformed RMI message ({len(payload)} bytes): {what}"
        self._onceLog.warn(("malformed", sender), "host {hostID}: {comment}",
                           hostID=sender, comment=comment)
        self._dispatch("onWarning", ErrorInfo(ErrorType.PROTOCOL_ERROR, sender, comment))

    def _stubRaised(self, method: RemoteMethod, failure: Failure) -> None:
        self.stats.stubExceptions += 1
        self.log.failure("RMI stub {method} raised", failure, method=method.qualifiedName)
        self._dispatch("onException", failure)

    def _runOneWay(self, method: RemoteMethod, handler: Callable[..., Any],
                   context: MessageContext, arguments: tuple[Any, ...]) -> None:
        try:
            result = handler(context, *arguments)
        except Exception:
            self._stubRaised(method, Failure())
            return
        if result is not None and isinstance(result, _LATER):
            defer.ensureDeferred(result).addErrback(lambda f: self._stubRaised(method, f))

    def _runCall(self, method: RemoteMethod, handler: Callable[..., Any], stub: Stub,
                 sender: int, requestID: int, context: MessageContext,
                 arguments: tuple[Any, ...]) -> None:
        inProgress = self._inProgress.get(sender, 0) if self._inProgress else 0
        if inProgress >= stub.maxCallsInProgress:
            self.stats.busyRefusals += 1
            self._onceLog.warn(("busy", sender), "host {hostID} has more than {limit} RMI "
                               "calls in progress; refusing more", hostID=sender,
                               limit=stub.maxCallsInProgress)
            self._fail(sender, requestID, FAILURE_UNDECLARED,
                       f"more than {stub.maxCallsInProgress} calls in progress")
            return
        try:
            result = handler(context, *arguments)
        except Exception:
            self._callFailed(Failure(), method, sender, requestID)
            return
        if type(result) not in _NOW and isinstance(result, _LATER):
            self._inProgress[sender] = inProgress + 1
            d = defer.ensureDeferred(result)
            d.addBoth(self._callDone, sender)
            d.addCallbacks(self._answer, self._callFailed,
                           callbackArgs=(method, sender, requestID),
                           errbackArgs=(method, sender, requestID))
        else:
            self._answer(result, method, sender, requestID)

    def _callDone(self, result: Any, sender: int) -> Any:
        left = self._inProgress.pop(sender) - 1
        if left:
            self._inProgress[sender] = left
        return result

    def _answer(self, result: Any, method: RemoteMethod, sender: int, requestID: int) -> None:
        try:
            assert method.encodeAnswer is not None
            payload = method.encodeAnswer(requestID, result)
        except Exception as e:
            assert method.result is not None
            self._stubRaised(method, Failure(TypeError(
                f"{method.qualifiedName} returned {result!r}, not a {method.result.name}: {e}")))
            self._fail(sender, requestID, FAILURE_UNDECLARED, "the result did not encode")
            return
        self._reply(sender, payload)

    def _callFailed(self, failure: Failure, method: RemoteMethod, sender: int,
                    requestID: int) -> None:
        for code, declared in enumerate(method.raises, 1):
            if failure.check(declared):
                self._fail(sender, requestID, code, str(failure.value))
                return
        self._stubRaised(method, failure)
        self._fail(sender, requestID, FAILURE_UNDECLARED,
                   f"{method.qualifiedName} raised {failure.type.__name__}")

    def _fail(self, sender: int, requestID: int, code: int, message: str) -> None:
        out = bytearray(_FAILURE_HEADER)
        encodeVarint(requestID, out)
        encodeVarint(code, out)
        encodeStr(message, out)
        self._reply(sender, bytes(out))

    def _reply(self, target: int, payload: bytes) -> None:
        try:
            self._send(target, payload, DeliveryMode.RELIABLE, Priority.MEDIUM, 0)
        except Exception:
            # The caller left, or its queue is full: its call times out.
            self.log.failure("could not answer an RMI call of host {hostID}",
                             hostID=target)

    def _answerReceived(self, sender: int, kind: int, payload: bytes, pos: int) -> None:
        try:
            requestID, pos = decodeVarint(payload, pos)
        except (IndexError, ValueError):
            self._malformed(sender, "an answer without a request ID", payload)
            return
        proxy = self.calls.get(requestID)
        pending = proxy._pending.get(requestID) if proxy is not None else None
        if pending is None or pending.target != sender:
            self.stats.strayAnswers += 1
            return
        del self.calls[requestID]
        del proxy._pending[requestID]
        method = pending.method
        try:
            if kind == ANSWER_ID:
                assert method.result is not None
                value, pos = method.result.decode(payload, pos)
                error = None
            else:
                code, pos = decodeVarint(payload, pos)
                message, pos = decodeStr(payload, pos)
                error = _remoteError(method, code, message)
            if pos != len(payload):
                raise ValueError(f"{len(payload) - pos} bytes after the answer")
        except Exception as e:
            self._malformed(sender, f"the answer to {method.qualifiedName}: {e}", payload)
            pending.deferred.errback(RemoteCallFailed(
                f"{method.qualifiedName}: host {sender} answered malformed bytes"))
            return
        if error is None:
            pending.deferred.callback(value)
        else:
            pending.deferred.errback(error)


def _remoteError(method: RemoteMethod, code: int, message: str) -> Exception:
    """The exception a failure answer stands for: the declared type, or
    L{RemoteCallFailed}."""
    if 1 <= code <= len(method.raises):
        exceptionType = method.raises[code - 1]
        try:
            return exceptionType(message)
        except Exception:
            error = exceptionType.__new__(exceptionType)
            error.args = (message,)
            return error
    if code != FAILURE_UNDECLARED:
        raise ValueError(f"no exception {code} in {method.qualifiedName}'s declaration")
    return RemoteCallFailed(f"{method.qualifiedName}: {message}")


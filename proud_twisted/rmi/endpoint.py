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
from proud_twisted.constants import HOSTID_SERVER, ErrorType
from proud_twisted.info import ErrorInfo, MessageContext
from proud_twisted.rmi.codec import DeclarationError, decodeStr, encodeStr
from proud_twisted.rmi.declaration import RemoteInterface, RemoteMethod
from proud_twisted.rmi.errors import RemoteCallFailed, RmiVersionMismatch, TooManyPendingCalls
from proud_twisted.rmi.fingerprint import encodeFingerprints, findMismatch
from proud_twisted.rmi.proxy import (
    DEFAULT_CALL_TIMEOUT,
    DEFAULT_MAX_PENDING_CALLS,
    PendingCall,
    Proxy,
    proxyClass,
)
from proud_twisted.rmi.stub import Stub
from proud_twisted.rmi.varint import decodeVarint, encodeVarint
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
_RELIABLE, _MEDIUM = DeliveryMode.RELIABLE, Priority.MEDIUM
"""The options of a send that gives none (an enum member read costs 50 ns)."""


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
        # requestID -> the call waiting for its answer (see Proxy._call)
        self.calls: dict[int, PendingCall] = {}
        self._proxies: list[Proxy] = []
        self._lastRequestID = 0
        self._inProgress: dict[int, int] = {}

    # attaching

    def _declare(self, declaration: Any) -> None:
        """Register C{declaration}, refusing a name or ID range already taken."""
        if not (isinstance(declaration, type) and issubclass(declaration, RemoteInterface)
                and hasattr(declaration, "methods")):
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
            self._send(target, payload, _RELIABLE, _MEDIUM, 0)
            return
        if latestOnly is not None:
            if mode not in (None, DeliveryMode.UNRELIABLE_LATEST) or \
                    channel not in (None, latestOnly):
                raise ValueError("latestOnly=key takes the mode and channel: give neither")
            mode, channel = DeliveryMode.UNRELIABLE_LATEST, latestOnly
        self._send(target, payload, DeliveryMode.RELIABLE if mode is None else mode,
                   Priority.MEDIUM if priority is None else priority,
                   0 if channel is None else channel)

    def call(self, proxy: Proxy, method: RemoteMethod, target: Any, requestID: int,
             payload: bytes, mode: DeliveryMode | None, priority: Priority | None,
             channel: int | None, latestOnly: int | None) -> defer.Deferred[Any]:
        """Send C{payload}, a call of C{method} with a result made through
        C{proxy}, to one host; the Deferred of its answer."""
        if type(target) is not int or (target != HOSTID_SERVER and self.isGroup(target)):
            raise ValueError(f"{method.qualifiedName} has a result: call one host, "
                             f"not {target!r}")
        pending = proxy._pending
        if len(pending) >= proxy.maxPendingCalls:
            self.stats.callsRefused += 1
            return defer.fail(TooManyPendingCalls(
                f"{method.qualifiedName}: {proxy.maxPendingCalls} calls already wait "
                f"for an answer"))
        self.send(target, payload, mode, priority, channel, latestOnly)
        d: defer.Deferred[Any] = defer.Deferred()
        pending[requestID] = self.calls[requestID] = (
            d, target, method, self.clock.seconds() + proxy.timeout, proxy)
        if proxy._timer is None:
            proxy._timer = self.clock.callLater(proxy.timeout, proxy._expire)
        return d

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
            if rmiID == ANSWER_ID:
                self._answerReceived(sender, payload, pos)
            elif rmiID == FAILURE_ID:
                self._failureReceived(sender, payload, pos)
            else:
                self.stats.unknownIDs += 1
                self._dispatch("onNoRmiProcessed", rmiID, context)
            return True
        method, handler, stub = entry
        decodeCall = method.decodeCall
        try:
            arguments = (method.decodeArguments if decodeCall is None else decodeCall)(
                payload, pos)
        except Exception as e:
            self._malformedCall(method, sender, payload, pos, e)
            return True
        if handler is None:
            self._notImplemented(method, sender, arguments, context)
            return True
        self.stats.callsReceived += 1
        if decodeCall is None:
            self._runOneWay(method, handler, context, arguments)
            return True
        # A call with a result: the stub's value is answered in this turn,
        # a Deferred or coroutine of it when it fires.
        requestID = arguments[0]
        inProgress = self._inProgress.get(sender, 0) if self._inProgress else 0
        if inProgress >= stub.maxCallsInProgress:
            self._busy(stub, sender, requestID)
            return True
        try:
            result = handler(context, *arguments[1:])
        except Exception:
            self._callFailed(Failure(), method, sender, requestID)
            return True
        if type(result) in _NOW or not isinstance(result, _LATER):
            self._answer(result, method, sender, requestID)
            return True
        self._inProgress[sender] = inProgress + 1
        d = defer.ensureDeferred(result)
        d.addBoth(self._callDone, sender)
        d.addCallbacks(self._answer, self._callFailed,
                       callbackArgs=(method, sender, requestID),
                       errbackArgs=(method, sender, requestID))
        return True

    def _malformedCall(self, method: RemoteMethod, sender: int, payload: bytes, pos: int,
                       error: Exception) -> None:
        """Arguments that did not decode: warn, and fail the call if it has
        a request ID to answer."""
        self._malformed(sender, f"{method.qualifiedName} ({method.id}): {error}", payload)
        if method.result is not None:
            try:
                requestID, _ = decodeVarint(payload, pos)
            except (IndexError, ValueError):
                return
            self._fail(sender, requestID, FAILURE_UNDECLARED, "malformed arguments")

    def _notImplemented(self, method: RemoteMethod, sender: int, arguments: tuple[Any, ...],
                        context: MessageContext) -> None:
        self.stats.unknownIDs += 1
        self._dispatch("onNoRmiProcessed", method.id, context)
        if method.result is not None:
            self._fail(sender, arguments[0], FAILURE_UNDECLARED,
                       f"{method.qualifiedName} is not implemented there")

    def _busy(self, stub: Stub, sender: int, requestID: int) -> None:
        self.stats.busyRefusals += 1
        self._onceLog.warn(("busy", sender), "host {hostID} has more than {limit} RMI "
                           "calls in progress; refusing more", hostID=sender,
                           limit=stub.maxCallsInProgress)
        self._fail(sender, requestID, FAILURE_UNDECLARED,
                   f"more than {stub.maxCallsInProgress} calls in progress")

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

    def _callDone(self, result: Any, sender: int) -> Any:
        left = self._inProgress.pop(sender) - 1
        if left:
            self._inProgress[sender] = left
        return result

    def _answer(self, result: Any, method: RemoteMethod, sender: int, requestID: int) -> None:
        """Answer a call with its stub's result."""
        assert method.encodeAnswer is not None
        try:
            payload = method.encodeAnswer(requestID, result)
        except Exception as e:
            self._badResult(method, sender, requestID, result, e)
            return
        self._reply(sender, payload)

    def _badResult(self, method: RemoteMethod, sender: int, requestID: int, result: Any,
                   error: Exception) -> None:
        assert method.result is not None
        self._stubRaised(method, Failure(TypeError(
            f"{method.qualifiedName} returned {result!r}, not a {method.result.name}: "
            f"{error}")))
        self._fail(sender, requestID, FAILURE_UNDECLARED, "the result did not encode")

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
            self._send(target, payload, _RELIABLE, _MEDIUM, 0)
        except Exception:
            # The caller left, or its queue is full: its call times out.
            self.log.failure("could not answer an RMI call of host {hostID}",
                             hostID=target)

    def _answerReceived(self, sender: int, payload: bytes, pos: int) -> None:
        claimed = self._claim(sender, payload, pos)
        if claimed is None:
            return
        (deferred, _, method, _, _), pos = claimed
        try:
            assert method.decodeAnswer is not None
            value = method.decodeAnswer(payload, pos)
        except Exception as e:
            self._malformedAnswer(sender, payload, method, deferred, e)
            return
        deferred.callback(value)

    def _failureReceived(self, sender: int, payload: bytes, pos: int) -> None:
        claimed = self._claim(sender, payload, pos)
        if claimed is None:
            return
        (deferred, _, method, _, _), pos = claimed
        try:
            code, pos = decodeVarint(payload, pos)
            message, pos = decodeStr(payload, pos)
            if pos != len(payload):
                raise ValueError(f"{len(payload) - pos} bytes after the failure")
            error = _remoteError(method, code, message)
        except Exception as e:
            self._malformedAnswer(sender, payload, method, deferred, e)
            return
        deferred.errback(error)

    def _claim(self, sender: int, payload: bytes, pos: int
               ) -> tuple[PendingCall, int] | None:
        """The call an answer or failure from C{sender} is for, no longer
        waiting, and where its request ID ends (None if there is no such
        call: it was counted)."""
        try:
            requestID, pos = decodeVarint(payload, pos)
        except (IndexError, ValueError):
            self._malformed(sender, "an answer without a request ID", payload)
            return None
        call = self.calls.get(requestID)
        if call is None or call[1] != sender:
            self.stats.strayAnswers += 1
            return None
        del self.calls[requestID]
        del call[4]._pending[requestID]
        return call, pos

    def _malformedAnswer(self, sender: int, payload: bytes, method: RemoteMethod,
                         deferred: defer.Deferred[Any], error: Exception) -> None:
        self._malformed(sender, f"the answer to {method.qualifiedName}: {error}", payload)
        deferred.errback(RemoteCallFailed(
            f"{method.qualifiedName}: host {sender} answered malformed bytes"))


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


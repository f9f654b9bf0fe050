"""Asking the application whether a client may join, failing closed."""

from twisted.internet import defer


def askLogin(events, address, userData: bytes, timeout: float, clock) -> defer.Deferred:
    """Call C{events.onConnectionRequest(address, userData)}.

    The handler may answer at once or with a Deferred, with C{None} or
    C{True} (accept), C{False} (refuse) or C{(accepted, reply)}. The result
    fires with C{(accepted, reply)}; it fails if the handler raised, its
    Deferred failed or its answer is none of those (L{TypeError}), and with
    L{defer.TimeoutError} if no answer came within C{timeout} seconds.
    Cancelling it cancels the handler's Deferred.
    """
    answer = defer.maybeDeferred(events.onConnectionRequest, address, userData)
    if not answer.called:
        answer.addTimeout(timeout, clock)
    return answer.addCallback(loginAnswer)


def loginAnswer(answer) -> tuple:
    """C{(accepted, reply)} from what C{onConnectionRequest} answered."""
    if answer is None or answer is True:
        return True, b""
    if answer is False:
        return False, b""
    if isinstance(answer, tuple) and len(answer) == 2:
        accepted, reply = answer
        return bool(accepted), bytes(reply)
    raise TypeError(f"onConnectionRequest answered {answer!r}; expected None, a "
                    "bool or (accepted, reply)")

"""Calling user event handlers so that their bugs never break a connection."""

from twisted.logger import Logger
from twisted.python.failure import Failure

_log = Logger()


class EventDispatcher:
    """Calls methods of a user's events object, catching what they raise.

    A raised exception is logged and reported through the object's
    C{onException}; an exception inside C{onException} itself is only logged.
    """

    def __init__(self, events, log: Logger = _log) -> None:
        self.events = events
        self.log = log
        self.exceptionCount = 0

    def __call__(self, name: str, *args):
        try:
            return getattr(self.events, name)(*args)
        except Exception:
            failure = Failure()
            self.exceptionCount += 1
            self.log.failure("user event handler {handler} raised", failure,
                             handler=name)
            if name != "onException":
                self("onException", failure)
            return None

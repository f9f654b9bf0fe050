"""Log a kind of trouble once per source, so a flood cannot flood the log."""

from collections import OrderedDict

from twisted.logger import Logger


class OnceLog:
    """Warns the first time each key misbehaves; remembers at most C{limit} keys."""

    def __init__(self, log: Logger, limit: int = 4096) -> None:
        self.log = log
        self.limit = limit
        self._seen = OrderedDict()

    def warn(self, key, format: str, **fields) -> bool:
        """Log C{format} unless C{key} was logged already; return whether it logged."""
        if key in self._seen:
            self._seen.move_to_end(key)
            return False
        self._seen[key] = True
        if len(self._seen) > self.limit:
            self._seen.popitem(last=False)
        self.log.warn(format, **fields)
        return True

    def forget(self, key) -> None:
        self._seen.pop(key, None)

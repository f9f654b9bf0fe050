"""Token buckets: how much a client may relay per second (pure)."""


class TokenBucket:
    """Allows C{rate} units a second on average and bursts of up to C{burst}."""

    __slots__ = ("_tokens", "_updated", "burst", "rate")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._updated = now

    def _refilled(self, now: float) -> float:
        """The tokens in the bucket at C{now}."""
        return min(self.burst, self._tokens + (now - self._updated) * self.rate)

    def take(self, amount: float, now: float) -> bool:
        """Spend C{amount} if the bucket holds it; return whether it did."""
        tokens = self._refilled(now)
        self._updated = now
        if tokens < amount:
            self._tokens = tokens
            return False
        self._tokens = tokens - amount
        return True

    def wait(self, amount: float, now: float) -> float:
        """Seconds until C{amount} is in the bucket (0 if it is now)."""
        return max(0.0, (min(amount, self.burst) - self._refilled(now)) / self.rate)


class RelayLimit:
    """A client's limits on relayed frames and bytes per second."""

    __slots__ = ("bytes", "frames")

    def __init__(self, framesPerSecond: float, bytesPerSecond: float, now: float,
                 burstSeconds: float = 1.0) -> None:
        self.frames = TokenBucket(framesPerSecond, framesPerSecond * burstSeconds, now)
        self.bytes = TokenBucket(bytesPerSecond, bytesPerSecond * burstSeconds, now)

    def allow(self, size: int, now: float) -> bool:
        """Whether one more frame of C{size} bytes fits in both budgets."""
        return self.frames.take(1, now) and self.bytes.take(size, now)

    def wait(self, size: int, now: float) -> float:
        """Seconds until a frame of C{size} bytes would be allowed."""
        return max(self.frames.wait(1, now), self.bytes.wait(size, now))

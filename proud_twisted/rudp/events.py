"""What `ReliableSession.nextEvent` hands out."""

from __future__ import annotations

from dataclasses import dataclass

from proud_twisted.rudp.config import DeliveryMode


@dataclass(frozen=True, slots=True)
class MessageReceived:
    """A whole message from the peer."""

    payload: bytes
    mode: DeliveryMode
    channel: int


@dataclass(frozen=True, slots=True)
class PathDead:
    """Nothing was acknowledged since ``since`` while data was outstanding."""

    since: float


@dataclass(frozen=True, slots=True)
class PathAlive:
    """Acknowledgements arrive again after a `PathDead`."""


_new = object.__new__
_setPayload = MessageReceived.payload.__set__
_setMode = MessageReceived.mode.__set__
_setChannel = MessageReceived.channel.__set__


def messageReceived(payload: bytes, mode: DeliveryMode, channel: int) -> MessageReceived:
    """``MessageReceived(payload, mode, channel)`` at half the cost (it skips
    the frozen dataclass's ``__init__``; the receive hot path makes many)."""
    event = _new(MessageReceived)
    _setPayload(event, payload)
    _setMode(event, mode)
    _setChannel(event, channel)
    return event

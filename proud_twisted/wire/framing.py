"""Length-prefixed framing for the TCP stream (pure, no I/O)."""

import struct

from proud_twisted.errors import MessageTooLong, ProtocolError

DEFAULT_MAX_MESSAGE_LENGTH = 64 * 1024
FRAME_HEADROOM = 8192
"""Room in a frame for headers and relay target lists beyond a user message."""
_LENGTH = struct.Struct(">I")
PREFIX_SIZE = _LENGTH.size


def frameKind(body: bytes) -> int:
    """The type byte that opens C{body}; L{ProtocolError} if it is empty.

    The decoder refuses empty frames, but a sealed record may still open to
    nothing.
    """
    if not body:
        raise ProtocolError("empty frame body")
    return body[0]


def encodeFrame(body: bytes) -> bytes:
    """Prefix C{body} with its 4-byte big-endian length."""
    return _LENGTH.pack(len(body)) + body


class FrameDecoder:
    """Splits a byte stream into frame bodies.

    C{feed} raises L{MessageTooLong} as soon as a length prefix announces more
    than C{maxLength} bytes, before any of that body is buffered.
    """

    def __init__(self, maxLength: int = DEFAULT_MAX_MESSAGE_LENGTH) -> None:
        self.maxLength = maxLength
        self._buffer = bytearray()

    @property
    def bufferedBytes(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> list:
        """Add C{data}; return the complete frame bodies it finished."""
        buffer = self._buffer
        buffer += data
        frames = []
        offset = 0
        end = len(buffer)
        while end - offset >= PREFIX_SIZE:
            (length,) = _LENGTH.unpack_from(buffer, offset)
            if length > self.maxLength:
                raise MessageTooLong(
                    f"frame of {length} bytes exceeds the maximum of {self.maxLength}")
            if length == 0:
                raise ProtocolError("empty frame")
            start = offset + PREFIX_SIZE
            if end - start < length:
                break
            frames.append(bytes(buffer[start:start + length]))
            offset = start + length
        if offset:
            del buffer[:offset]
        return frames

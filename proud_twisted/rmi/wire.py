"""How an RMI message is laid out inside a user message.

    0xFF  varint ID  [varint requestID]  arguments     a call (the requestID only
                                                        for a method with a result)
    0xFF  0x00  varint requestID  result               an answer
    0xFF  0x01  varint requestID  varint code  str     a failure: code 0 undeclared
                                                        (L{RemoteCallFailed}), k the
                                                        k-th declared exception

A user message whose first byte is not C{RMI_MARKER} is a raw one: it goes
to C{onReceiveUserMessage}, as always. IDs below L{FIRST_USER_ID} are the
library's.
"""

from __future__ import annotations

RMI_MARKER = 0xFF
"""The first byte of every RMI message."""
ANSWER_ID = 0
FAILURE_ID = 1
FIRST_USER_ID = 16
"""The lowest ID a declaration may use (0-15 are the library's)."""
LAST_ID = (1 << 32) - 1
"""The highest ID a declaration may use."""
FAILURE_UNDECLARED = 0

"""A client for the rooms app that C{twistd -n proudserver} runs by default.

    twistd -n proudserver &
    python examples/room_client.py --room lobby --say hello --seconds 10

It joins the room, prints who is there and what they say, sends its line to
the room, and leaves after C{--seconds} (or runs until interrupted).
"""

from __future__ import annotations

import argparse
import sys
import uuid

from twisted.internet import defer, task

from proud_twisted import NetClient
from proud_twisted.apps.rooms import ROOMS_PROTOCOL_VERSION, RoomClientEvents

JOIN_TIMEOUT = 10.0


class PrintingRoomClient(RoomClientEvents):
    """Prints what happens in the room."""

    def onRoomMemberJoin(self, room, member):
        who = "we" if member == self.client.getLocalHostID() else f"host {member}"
        print(f"[{room}] {who} joined ({len(self.members)} here)", flush=True)

    def onRoomMemberLeave(self, room, member):
        who = "we" if member == self.client.getLocalHostID() else f"host {member}"
        print(f"[{room}] {who} left", flush=True)

    def onRoomMessage(self, room, sender, payload):
        print(f"[{room}] host {sender}: {payload.decode('utf-8', 'replace')}", flush=True)

    def onRoomError(self, explanation):
        print(f"server: {explanation}", file=sys.stderr, flush=True)


@defer.inlineCallbacks
def run(reactor, args):
    events = PrintingRoomClient()
    client = NetClient(events, reactor=reactor)
    events.attachClient(client)
    hostID = yield client.connect(args.host, args.port, args.protocol_version)
    print(f"connected to {args.host}:{args.port} as host {hostID}", flush=True)
    yield events.joinRoom(args.room).addTimeout(JOIN_TIMEOUT, reactor)
    if args.say:
        events.say(args.say.encode("utf-8"))
        print(f"[{args.room}] we: {args.say}", flush=True)
    if args.seconds is None:
        yield defer.Deferred()      # until interrupted
    yield task.deferLater(reactor, args.seconds)
    yield client.disconnect()


def parseArguments(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=33333, help="the server's TCP port")
    parser.add_argument("--room", default="lobby")
    parser.add_argument("--say", help="a line to send to the room once in it")
    parser.add_argument("--seconds", type=float,
                        help="leave after this many seconds in the room")
    parser.add_argument("--protocol-version", type=uuid.UUID,
                        default=ROOMS_PROTOCOL_VERSION,
                        help="the server's --protocol-version")
    return parser.parse_args(argv)


def main(reactor, *argv):
    return run(reactor, parseArguments(argv))


if __name__ == "__main__":
    task.react(main, sys.argv[1:])

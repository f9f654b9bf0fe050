"""A chat room on proud_twisted, in the shape of ProudNet's chat sample.

The server keeps one chat group: the first user to connect creates it,
later users join it, a user who disconnects leaves it, and the group is
destroyed when the last user has left. Clients say their lines to the
group through a remote method, C{ChatMessages.say}, declared once below:
the client calls it on a proxy, the other members' stubs run it. The
server only relays.

    python examples/chat.py --headless              # the whole story in one process
    python examples/chat.py server --port 33334
    python examples/chat.py client --port 33334 --name alice   # type lines to chat

Every event is printed as one JSON object per line.
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid

from twisted.internet import defer, stdio, task
from twisted.protocols.basic import LineReceiver

from proud_twisted import NetClient, NetClientEvents, NetServer, NetServerEvents
from proud_twisted.rmi import RemoteInterface

CHAT_PROTOCOL_VERSION = uuid.UUID("6a1d3b0e-8c55-4e3f-a7d4-2b9f0c6e1d58")
DEFAULT_PORT = 33334
HEADLESS_TIMEOUT = 20.0
STEP_TIMEOUT = 10.0


class Journal:
    """Prints events as JSON lines, keeps them, and waits for conditions on them."""

    def __init__(self, out=sys.stdout, reactor=None) -> None:
        self.out = out
        self.reactor = reactor
        self.events = []
        self._waiters = []

    def __call__(self, event: str, **fields) -> None:
        record = {"event": event, **fields}
        self.events.append(record)
        print(json.dumps(record), file=self.out, flush=True)
        for waiter in list(self._waiters):
            predicate, d = waiter
            if predicate():
                self._waiters.remove(waiter)
                d.callback(None)

    def count(self, event: str, **fields) -> int:
        return sum(1 for e in self.events
                   if e["event"] == event and all(e.get(k) == v for k, v in fields.items()))

    def until(self, predicate, timeout: float = STEP_TIMEOUT) -> defer.Deferred:
        """Fire once C{predicate()} holds after some event; fail after C{timeout}."""
        if predicate():
            return defer.succeed(None)
        waiter = (predicate, defer.Deferred())
        self._waiters.append(waiter)

        def forget(result):
            if waiter in self._waiters:
                self._waiters.remove(waiter)
            return result

        return waiter[1].addTimeout(timeout, self.reactor).addBoth(forget)


class ChatServerEvents(NetServerEvents):
    """One chat group that follows who is connected."""

    def __init__(self, journal=None) -> None:
        self.journal = journal if journal is not None else Journal()
        self.server = None
        self.group = None

    def attachServer(self, server) -> None:
        self.server = server

    def onClientJoin(self, clientInfo):
        user = clientInfo.userData.decode("utf-8", "replace")
        self.journal("enter", user=user, hostID=clientInfo.hostID)
        if self.group is None:
            self.group = self.server.createP2PGroup([clientInfo.hostID], b"chat")
            self.journal("group_created", group=self.group, by=clientInfo.hostID)
        else:
            self.server.joinP2PGroup(clientInfo.hostID, self.group, b"chat")

    def onP2PGroupJoinMemberAckComplete(self, groupHostID, memberHostID, result):
        self.journal("join_complete", group=groupHostID, member=memberHostID)

    def onClientLeave(self, clientInfo, reason, comment):
        # The server has already taken the client out of the group.
        self.journal("exit", user=clientInfo.userData.decode("utf-8", "replace"),
                     hostID=clientInfo.hostID, reason=reason.value)
        if self.group is not None and not self.server.getP2PGroupInfo(self.group).members:
            self.server.destroyP2PGroup(self.group)

    def onP2PGroupRemoved(self, groupHostID):
        if groupHostID == self.group:
            self.group = None
        self.journal("group_removed", group=groupHostID)


class ChatMessages(RemoteInterface, firstID=5000):
    """What chat users say to each other."""

    def say(self, name: str, text: str) -> None:
        """A line C{text} from the user C{name}."""


class ChatListener(ChatMessages.Stub):
    """Runs C{ChatMessages} calls that reach a user."""

    def __init__(self, user: ChatClientEvents) -> None:
        self.user = user

    def say(self, context, name, text):
        self.user.journal("heard", user=self.user.name, sender=context.sender,
                          name=name, text=text)


class ChatClientEvents(NetClientEvents):
    """A chat user: reports group changes and chat lines, and says lines to the group."""

    def __init__(self, name: str, journal) -> None:
        self.name = name
        self.journal = journal
        self.client = None
        self.group = None
        self.left = None
        self.chat = None            # the ChatMessages proxy, once connecting

    def connect(self, host: str, port: int, reactor=None) -> defer.Deferred:
        """Join the chat server; C{self.left} fires when we are gone again."""
        self.client = NetClient(self, reactor=reactor)
        self.chat = self.client.attachProxy(ChatMessages)
        self.client.attachStub(ChatListener(self))
        self.left = defer.Deferred()
        d = self.client.connect(host, port, CHAT_PROTOCOL_VERSION, self.name.encode("utf-8"))
        d.addCallback(self._connected)
        return d

    def _connected(self, hostID):
        self.journal("connected", user=self.name, hostID=hostID)
        return hostID

    def say(self, text: str) -> None:
        self.chat.say(self.group, self.name, text)
        self.journal("said", user=self.name, text=text)

    def onP2PMemberJoin(self, memberHostID, groupHostID, memberCount, message):
        self.group = groupHostID
        self.journal("member_join", user=self.name, member=memberHostID,
                     group=groupHostID, count=memberCount)

    def onP2PMemberLeave(self, memberHostID, groupHostID, memberCount):
        if memberHostID == self.client.getLocalHostID():
            self.group = None
        self.journal("member_leave", user=self.name, member=memberHostID,
                     group=groupHostID, count=memberCount)

    def onReceiveUserMessage(self, sender, payload, context):
        self.journal("garbage", user=self.name, sender=sender)

    def onNoRmiProcessed(self, rmiID, context):
        self.journal("garbage", user=self.name, sender=context.sender, rmiID=rmiID)

    def onLeaveServer(self, reason):
        self.journal("left_server", user=self.name, reason=reason.value)
        self.left.callback(reason)


@defer.inlineCallbacks
def headless(reactor):
    """Start a server, let three users chat, let one go, then close everything."""
    journal = Journal(reactor=reactor)
    serverEvents = ChatServerEvents(journal)
    server = NetServer(serverEvents, CHAT_PROTOCOL_VERSION, interface="127.0.0.1",
                       reactor=reactor)
    serverEvents.attachServer(server)
    server.startService()
    port = server.getTcpAddress()[1]
    users = {}
    try:
        for name in ("alice", "bob", "carol"):
            user = users[name] = ChatClientEvents(name, journal)
            hostID = yield user.connect("127.0.0.1", port, reactor)
            # Chat only once every member has processed the newcomer's join.
            yield journal.until(lambda h=hostID: journal.count("join_complete", member=h))
        for name, user in users.items():
            user.say(f"hi, I am {name}")
        yield journal.until(lambda: all(journal.count("heard", user=n) == 2 for n in users))

        carol = users.pop("carol")
        carolID = carol.client.getLocalHostID()
        yield carol.client.disconnect()
        yield journal.until(lambda: all(journal.count("member_leave", user=n, member=carolID)
                                        for n in users))
        users["alice"].say("bye, carol")
        yield journal.until(lambda: journal.count("heard", user="bob", text="bye, carol"))
    finally:
        yield defer.gatherResults([u.client.disconnect() for u in users.values()])
    yield journal.until(lambda: journal.count("group_removed"))
    yield server.stopService()
    journal("done", ok=True)


class ChatLines(LineReceiver):
    """Sends each typed line to the chat group."""

    delimiter = b"\n"

    def __init__(self, user: ChatClientEvents) -> None:
        self.user = user

    def lineReceived(self, line: bytes) -> None:
        text = line.decode("utf-8", "replace").strip()
        if not text:
            return
        if self.user.group is None:
            self.user.journal("not_in_group", user=self.user.name)
        else:
            self.user.say(text)

    def connectionLost(self, reason) -> None:
        self.user.client.disconnect()


def runServer(reactor, port: int, interface: str) -> defer.Deferred:
    events = ChatServerEvents(Journal(reactor=reactor))
    server = NetServer(events, CHAT_PROTOCOL_VERSION, tcpPort=port, udpPort=port,
                       interface=interface, reactor=reactor)
    events.attachServer(server)
    server.startService()
    reactor.addSystemEventTrigger("before", "shutdown", server.stopService)
    return defer.Deferred()     # serve until interrupted


@defer.inlineCallbacks
def runClient(reactor, host: str, port: int, name: str):
    user = ChatClientEvents(name, Journal(reactor=reactor))
    yield user.connect(host, port, reactor)
    stdio.StandardIO(ChatLines(user), reactor=reactor)
    yield user.left


def parseArguments(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--headless", action="store_true",
                        help="run a server and three chatting clients in one process")
    modes = parser.add_subparsers(dest="mode")
    server = modes.add_parser("server", help="run the chat server")
    server.add_argument("--port", type=int, default=DEFAULT_PORT, help="TCP and UDP port")
    server.add_argument("--interface", default="", help="address to bind")
    client = modes.add_parser("client", help="chat with lines typed on stdin")
    client.add_argument("--host", default="127.0.0.1")
    client.add_argument("--port", type=int, default=DEFAULT_PORT)
    client.add_argument("--name", required=True)
    args = parser.parse_args(argv)
    if args.headless == bool(args.mode):
        parser.error("give either --headless or a mode (server or client)")
    return args


def main(reactor, *argv):
    args = parseArguments(argv)
    if args.headless:
        return headless(reactor).addTimeout(HEADLESS_TIMEOUT, reactor)
    if args.mode == "server":
        return runServer(reactor, args.port, args.interface)
    return runClient(reactor, args.host, args.port, args.name)


if __name__ == "__main__":
    task.react(main, sys.argv[1:])

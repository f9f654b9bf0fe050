"""A child of cluster.py: the echo end of a cross-process round trip
through Redis, either a cluster server that sends every cluster message
back to its sender (``--mode cluster``) or bare txredisapi that publishes
every message on ``bench:ping`` back on ``bench:pong`` (``--mode bare``).
Answers ``{"ready": true}`` once it listens."""

from _common import LOOPBACK, childParser, runParsed

PING, PONG = "bench:ping", "bench:pong"


def setupFor(args):
    async def setup(reactor, log):
        if args.mode == "cluster":
            await clusterEcho(reactor, args.redis)
        else:
            await bareEcho(reactor, args.redis)
        return {"ready": True}, {}
    return setup


async def clusterEcho(reactor, url):
    from proud_twisted import Cluster, ClusterEvents, NetServer, NetServerEvents

    class Echo(NetServerEvents, ClusterEvents):
        def onClusterMessage(self, serverID, channel, payload):
            server.cluster.send(serverID, payload)

    server = NetServer(Echo(), interface=LOOPBACK, encryption=False,
                       cluster=Cluster(url, "echo"))
    server.startService()
    await server.cluster.whenReady()


async def bareConnection(reactor, url, protocolClass):
    """A bare txredisapi protocol connected to the Redis at ``url``, binary."""
    from twisted.internet import endpoints

    from proud_twisted.cluster.redisurl import parseRedisURL
    address = parseRedisURL(url)
    connection = protocolClass(charset=None, convertNumbers=False)
    await endpoints.connectProtocol(
        endpoints.TCP4ClientEndpoint(reactor, address.host, address.port), connection)
    await connection.whenConnected()
    return connection


async def bareEcho(reactor, url):
    import txredisapi
    publisher = await bareConnection(reactor, url, txredisapi.RedisProtocol)

    class Echo(txredisapi.SubscriberProtocol):
        def messageReceived(self, pattern, channel, message):
            publisher.execute_command("PUBLISH", PONG, message)

    subscriber = await bareConnection(reactor, url, Echo)
    await subscriber.subscribe(PING)


if __name__ == "__main__":
    parser = childParser(__doc__, joinsServer=False)
    parser.add_argument("--redis", required=True)
    parser.add_argument("--mode", choices=["cluster", "bare"], required=True)
    raise SystemExit(runParsed(parser, setupFor))

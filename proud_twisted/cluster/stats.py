"""L{ClusterStats}: a cluster member's counters (pure)."""

from dataclasses import dataclass


@dataclass
class ClusterStats:
    """What a L{Cluster} counted since it was made.

    @ivar messagesSent: L{Cluster.send} and L{Cluster.publish} calls put to Redis.
    @ivar messagesReceived: messages from other servers handed to
        C{onClusterMessage}.
    @ivar routedOut: L{NetServer.send} calls to clients or groups of other
        servers, per server they went to.
    @ivar routedIn: such sends from other servers, delivered here.
    @ivar routedUnknown: targets of such sends that were not here (left).
    @ivar routedDropped: unreliable sends to other servers dropped because
        more than C{maxPendingBytes} were waiting for Redis.
    @ivar malformed: messages from Redis that were not envelopes of ours,
        or not where they belong (rejected).
    @ivar unknownSender: messages from a server that is not a member (rejected).
    @ivar mismatchedMembers: times a server's entry was refused because it
        runs encryption the other way (it is kept out of the cluster here).
    @ivar registrations: times this server (re-)registered with Redis.
    @ivar redisLost: times Redis became unreachable.
    @ivar blocksLeased: HostID blocks leased.
    @ivar framesOut: frames of this server's clients relayed to their peers
        on other servers (P2P groups across servers).
    @ivar framesDirect: of C{framesOut}, those sent straight to the other
        server over UDP (the rest went through Redis).
    @ivar directDatagrams: the datagrams that carried them (the frames of
        one client's relay request for one server share as few as they fit
        in).
    @ivar framesIn: such frames from other servers, delivered here.
    @ivar framesRefused: such frames for no pair known here (refused).
    @ivar framesDropped: frames not relayed to another server: Redis away,
        or more than C{maxPendingBytes} waiting for it.
    @ivar publishesFailed: relayed frames and routed sends that Redis
        refused, or that were still unanswered when the connection to it
        was lost (they may or may not have reached the other server).
    @ivar directRejected: datagrams on this server's UDP port that claimed
        to come from another cluster server and did not open: forged,
        damaged, replayed or sealed for another (dropped, never answered).
    @ivar directUnknown: such datagrams naming a server this one has no
        path to: not a member, or one it has not heard of yet (dropped).
    """

    messagesSent: int = 0
    messagesReceived: int = 0
    routedOut: int = 0
    routedIn: int = 0
    routedUnknown: int = 0
    routedDropped: int = 0
    malformed: int = 0
    unknownSender: int = 0
    mismatchedMembers: int = 0
    registrations: int = 0
    redisLost: int = 0
    blocksLeased: int = 0
    framesOut: int = 0
    framesDirect: int = 0
    directDatagrams: int = 0
    framesIn: int = 0
    framesRefused: int = 0
    framesDropped: int = 0
    publishesFailed: int = 0
    directRejected: int = 0
    directUnknown: int = 0

"""The P2P group service: pure rules for groups, members and join acks.

No I/O: every operation validates first (raising and changing nothing on
error), then changes the table and returns the effects the server must carry
out, in order: notices to send to clients, acks completed, groups removed,
and peer pairs that start or stop sharing a group. Effects are values like
every core's events (L{proud_twisted.rudp.events.Value}).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from proud_twisted.errors import InvalidGroupOperation, UnknownHostID
from proud_twisted.rudp.events import Value


class MemberJoinNotice(Value):
    """Tell client C{to} that C{memberID} joined C{groupID}; ack C{ackID} if non-zero."""

    __match_args__ = ("to", "groupID", "memberID", "memberCount", "message", "ackID")
    __slots__ = __match_args__

    def __init__(self, to: int, groupID: int, memberID: int, memberCount: int,
                 message: bytes, ackID: int) -> None:
        self.to: Final = to
        self.groupID: Final = groupID
        self.memberID: Final = memberID
        self.memberCount: Final = memberCount
        self.message: Final = message
        self.ackID: Final = ackID


class MemberLeaveNotice(Value):
    """Tell client C{to} that C{memberID} left C{groupID}."""

    __match_args__ = ("to", "groupID", "memberID", "memberCount")
    __slots__ = __match_args__

    def __init__(self, to: int, groupID: int, memberID: int, memberCount: int) -> None:
        self.to: Final = to
        self.groupID: Final = groupID
        self.memberID: Final = memberID
        self.memberCount: Final = memberCount


class JoinAckComplete(Value):
    """Every member of C{groupID} has processed C{memberID}'s join."""

    __match_args__ = ("groupID", "memberID")
    __slots__ = __match_args__

    def __init__(self, groupID: int, memberID: int) -> None:
        self.groupID: Final = groupID
        self.memberID: Final = memberID


class GroupRemoved(Value):
    """Group C{groupID} is gone."""

    __match_args__ = ("groupID",)
    __slots__ = __match_args__

    def __init__(self, groupID: int) -> None:
        self.groupID: Final = groupID


class _PairEffect(Value):
    __match_args__ = ("a", "b")
    __slots__ = __match_args__

    def __init__(self, a: int, b: int) -> None:
        self.a: Final = a
        self.b: Final = b


class PairIntroduced(_PairEffect):
    """Clients C{a} < C{b} now share a group (and did not before)."""

    __slots__ = ()


class PairForgotten(_PairEffect):
    """Clients C{a} < C{b} no longer share any group."""

    __slots__ = ()


@dataclass
class _PendingJoin:
    groupID: int
    memberID: int
    waiting: set


def _pair(a: int, b: int):
    return (a, b) if a < b else (b, a)


class P2PGroupTable:
    """Which clients exist, which groups exist, and who is in which."""

    def __init__(self, allowEmptyGroups: bool = True) -> None:
        self.allowEmptyGroups = allowEmptyGroups
        self._clients = {}          # client -> set of groups
        self._groups = {}           # group -> set of members
        self._pairs = {}            # (a, b) -> number of shared groups
        self._pending = {}          # ackID -> _PendingJoin
        # group -> its pending ackIDs, oldest first (as keys), so that a leave
        # or a destroy looks only at its own group's joins, not every one on
        # the server (view groups churn while thousands of acks are due).
        self._pendingByGroup = {}
        self._lastAckID = 0

    # Queries

    def hasClient(self, hostID: int) -> bool:
        return hostID in self._clients

    def hasGroup(self, groupID: int) -> bool:
        return groupID in self._groups

    def groups(self) -> list:
        return sorted(self._groups)

    def membersOf(self, groupID: int) -> frozenset:
        return frozenset(self._requireGroup(groupID))

    def groupsOf(self, hostID: int) -> frozenset:
        return frozenset(self._requireClient(hostID))

    def shareGroup(self, a: int, b: int) -> bool:
        return _pair(a, b) in self._pairs

    def peersOf(self, hostID: int) -> list:
        return sorted({m for g in self._requireClient(hostID)
                       for m in self._groups[g]} - {hostID})

    def pendingAcks(self) -> int:
        return len(self._pending)

    # Clients

    def addClient(self, hostID: int) -> None:
        if hostID in self._clients or hostID in self._groups:
            raise InvalidGroupOperation(f"HostID {hostID} is already in use")
        self._clients[hostID] = set()

    def removeClient(self, hostID: int) -> list:
        """Take a departing client out of all its groups and forget it."""
        effects = self.leaveAll(hostID)
        del self._clients[hostID]
        return effects

    def leaveAll(self, hostID: int) -> list:
        """Take a client out of all its groups, telling the other members
        (not it: it knows, being moved or gone)."""
        effects = []
        for groupID in sorted(self._requireClient(hostID)):
            effects += self._removeMember(hostID, groupID, notifyLeaver=False)
        return effects

    # Group operations

    def create(self, groupID: int, members: Iterable[int], message: bytes = b"") -> list:
        members = sorted(set(members))
        if groupID in self._groups or groupID in self._clients:
            raise InvalidGroupOperation(f"HostID {groupID} is already in use")
        for member in members:
            self._requireClient(member)
        if not members and not self.allowEmptyGroups:
            raise InvalidGroupOperation("empty groups are not allowed")
        self._groups[groupID] = set()
        effects = []
        for member in members:
            effects += self._addMember(member, groupID)
        count = len(members)
        ackIDs = {m: self._startPendingJoin(groupID, m, members) for m in members}
        for receiver in members:
            for member in members:
                effects.append(MemberJoinNotice(receiver, groupID, member, count,
                                                message, ackIDs[member]))
        return effects

    def join(self, member: int, groupID: int, message: bytes = b"") -> list:
        self._requireClient(member)
        current = self._requireGroup(groupID)
        if member in current:
            raise InvalidGroupOperation(f"{member} is already in group {groupID}")
        existing = sorted(current)
        effects = self._addMember(member, groupID)
        count = len(existing) + 1
        ackID = self._startPendingJoin(groupID, member, [*existing, member])
        for other in existing:
            effects.append(MemberJoinNotice(member, groupID, other, count, message, 0))
        for receiver in [*existing, member]:
            effects.append(MemberJoinNotice(receiver, groupID, member, count,
                                            message, ackID))
        return effects

    def leave(self, member: int, groupID: int) -> list:
        self._requireClient(member)
        if member not in self._requireGroup(groupID):
            raise InvalidGroupOperation(f"{member} is not in group {groupID}")
        return self._removeMember(member, groupID, notifyLeaver=True)

    def destroy(self, groupID: int) -> list:
        members = sorted(self._requireGroup(groupID))
        self._cancelPendingJoins(groupID)
        effects = [MemberLeaveNotice(receiver, groupID, member, 0)
                   for receiver in members for member in members]
        for member in members:
            effects += self._forgetMembership(member, groupID)
        return effects + self._dropGroup(groupID)

    def destroyEmpty(self) -> list:
        effects = []
        for groupID in [g for g, members in self._groups.items() if not members]:
            effects += self._dropGroup(groupID)
        return effects

    def acknowledge(self, client: int, ackID: int) -> list:
        """A client processed the join notice that carried C{ackID}.

        Unknown or repeated acks change nothing (the join may have been
        cancelled meanwhile).
        """
        pending = self._pending.get(ackID)
        if pending is None or client not in pending.waiting:
            return []
        pending.waiting.discard(client)
        return self._completeIfDone(ackID)

    # Internals

    def _requireClient(self, hostID: int) -> set:
        try:
            return self._clients[hostID]
        except KeyError:
            raise UnknownHostID(f"no client with HostID {hostID}") from None

    def _requireGroup(self, groupID: int) -> set:
        try:
            return self._groups[groupID]
        except KeyError:
            raise UnknownHostID(f"no P2P group with HostID {groupID}") from None

    def _addMember(self, member: int, groupID: int) -> list:
        effects = []
        for other in self._groups[groupID]:
            pair = _pair(member, other)
            count = self._pairs.get(pair, 0)
            self._pairs[pair] = count + 1
            if count == 0:
                effects.append(PairIntroduced(*pair))
        self._groups[groupID].add(member)
        self._clients[member].add(groupID)
        return effects

    def _removeMember(self, member: int, groupID: int, notifyLeaver: bool) -> list:
        remaining = sorted(self._groups[groupID] - {member})
        count = len(remaining)
        effects = [MemberLeaveNotice(r, groupID, member, count) for r in remaining]
        if notifyLeaver:
            effects += [MemberLeaveNotice(member, groupID, other, count)
                        for other in remaining]
            effects.append(MemberLeaveNotice(member, groupID, member, count))
        effects += self._forgetMembership(member, groupID)
        if not remaining and not self.allowEmptyGroups:
            effects += self._dropGroup(groupID)
        return effects

    def _forgetMembership(self, member: int, groupID: int) -> list:
        members = self._groups[groupID]
        members.discard(member)
        self._clients[member].discard(groupID)
        effects = []
        for other in sorted(members):
            pair = _pair(member, other)
            self._pairs[pair] -= 1
            if not self._pairs[pair]:
                del self._pairs[pair]
                effects.append(PairForgotten(*pair))
        for ackID in list(self._pendingByGroup.get(groupID, ())):
            pending = self._pending[ackID]
            if pending.memberID == member:
                self._endPendingJoin(ackID)
            elif member in pending.waiting:
                pending.waiting.discard(member)
                effects += self._completeIfDone(ackID)
        return effects

    def _dropGroup(self, groupID: int) -> list:
        self._cancelPendingJoins(groupID)
        del self._groups[groupID]
        return [GroupRemoved(groupID)]

    def _cancelPendingJoins(self, groupID: int) -> None:
        for ackID in self._pendingByGroup.pop(groupID, ()):
            del self._pending[ackID]

    def _startPendingJoin(self, groupID: int, member: int, waiting) -> int:
        self._lastAckID = self._lastAckID % 0xFFFFFFFF + 1
        self._pending[self._lastAckID] = _PendingJoin(groupID, member, set(waiting))
        self._pendingByGroup.setdefault(groupID, {})[self._lastAckID] = None
        return self._lastAckID

    def _endPendingJoin(self, ackID: int) -> _PendingJoin:
        pending = self._pending.pop(ackID)
        ofGroup = self._pendingByGroup[pending.groupID]
        del ofGroup[ackID]
        if not ofGroup:
            del self._pendingByGroup[pending.groupID]
        return pending

    def _completeIfDone(self, ackID: int) -> list:
        pending = self._pending[ackID]
        if pending.waiting:
            return []
        self._endPendingJoin(ackID)
        return [JoinAckComplete(pending.groupID, pending.memberID)]

"""The P2P group service objects, without sockets."""

from twisted.trial.unittest import SynchronousTestCase

from proud_twisted.errors import InvalidGroupOperation, UnknownHostID
from proud_twisted.rudp.events import Value
from proud_twisted.server.groups import (
    GroupRemoved,
    JoinAckComplete,
    MemberJoinNotice,
    MemberLeaveNotice,
    P2PGroupTable,
    PairForgotten,
    PairIntroduced,
)
from proud_twisted.server.hostids import HostIDAllocator

A, B, C, D = 1000, 1001, 1002, 1003
G, H = 2000, 2001


def of(kind, effects):
    return [e for e in effects if isinstance(e, kind)]


def ackAll(table, effects):
    """Acknowledge every join notice, as clients do; return the completions."""
    completed = []
    for notice in of(MemberJoinNotice, effects):
        if notice.ackID:
            completed += table.acknowledge(notice.to, notice.ackID)
    return completed


class TableTestCase(SynchronousTestCase):
    def setUp(self):
        self.table = P2PGroupTable()
        for client in (A, B, C, D):
            self.table.addClient(client)

    def assertUnchanged(self, operation, *args, error):
        before = (self.table.groups(), {g: self.table.membersOf(g) for g in self.table.groups()},
                  self.table.pendingAcks())
        self.assertRaises(error, operation, *args)
        after = (self.table.groups(), {g: self.table.membersOf(g) for g in self.table.groups()},
                 self.table.pendingAcks())
        self.assertEqual(before, after)


class CreateTests(TableTestCase):
    def test_everyMemberHearsOfEveryMemberItselfIncluded(self):
        effects = self.table.create(G, [A, B, C], b"hi")
        notices = {(n.to, n.memberID) for n in of(MemberJoinNotice, effects)}
        self.assertEqual(notices, {(to, m) for to in (A, B, C) for m in (A, B, C)})
        for notice in of(MemberJoinNotice, effects):
            self.assertEqual((notice.groupID, notice.memberCount, notice.message), (G, 3, b"hi"))
            self.assertNotEqual(notice.ackID, 0)
        self.assertEqual(self.table.membersOf(G), {A, B, C})
        self.assertEqual(self.table.groupsOf(A), {G})

    def test_ackCompleteOncePerMemberAfterEveryClientAcked(self):
        effects = self.table.create(G, [A, B])
        notices = of(MemberJoinNotice, effects)
        aboutA = [n for n in notices if n.memberID == A]
        self.assertEqual(self.table.acknowledge(aboutA[0].to, aboutA[0].ackID), [])
        self.assertEqual(self.table.acknowledge(aboutA[1].to, aboutA[1].ackID),
                         [JoinAckComplete(G, A)])
        # A repeated ack changes nothing.
        self.assertEqual(self.table.acknowledge(aboutA[1].to, aboutA[1].ackID), [])
        completed = ackAll(self.table, [n for n in notices if n.memberID == B])
        self.assertEqual(completed, [JoinAckComplete(G, B)])
        self.assertEqual(self.table.pendingAcks(), 0)

    def test_pairsIntroducedOnce(self):
        effects = self.table.create(G, [A, B, C])
        self.assertEqual(set(of(PairIntroduced, effects)),
                         {PairIntroduced(A, B), PairIntroduced(A, C), PairIntroduced(B, C)})
        effects = self.table.create(H, [A, B])
        self.assertEqual(of(PairIntroduced, effects), [])
        self.assertTrue(self.table.shareGroup(B, A))
        self.assertFalse(self.table.shareGroup(A, D))

    def test_duplicateMembersCountOnce(self):
        self.table.create(G, [A, A, B])
        self.assertEqual(self.table.membersOf(G), {A, B})

    def test_emptyGroupAllowedByDefault(self):
        self.assertEqual(self.table.create(G, []), [])
        self.assertEqual(self.table.groups(), [G])

    def test_emptyGroupRefusedWhenNotAllowed(self):
        self.table.allowEmptyGroups = False
        self.assertUnchanged(self.table.create, G, [], error=InvalidGroupOperation)

    def test_unknownMemberChangesNothing(self):
        self.assertUnchanged(self.table.create, G, [A, 9999], error=UnknownHostID)
        self.assertEqual(self.table.groupsOf(A), frozenset())

    def test_idInUseRefused(self):
        self.table.create(G, [A])
        self.assertUnchanged(self.table.create, G, [B], error=InvalidGroupOperation)
        self.assertUnchanged(self.table.create, A, [B], error=InvalidGroupOperation)

    def test_clientIdClashRefused(self):
        self.table.create(G, [A])
        self.assertRaises(InvalidGroupOperation, self.table.addClient, G)
        self.assertRaises(InvalidGroupOperation, self.table.addClient, A)


class JoinTests(TableTestCase):
    def test_newMemberHearsOfAllOthersAndOthersOfIt(self):
        ackAll(self.table, self.table.create(G, [A, B]))
        effects = self.table.join(C, G, b"welcome")
        notices = of(MemberJoinNotice, effects)
        self.assertEqual({(n.to, n.memberID) for n in notices},
                         {(C, A), (C, B), (C, C), (A, C), (B, C)})
        self.assertTrue(all(n.memberCount == 3 and n.message == b"welcome" for n in notices))
        # Only notices about the new member need acks.
        self.assertEqual({n.memberID for n in notices if n.ackID}, {C})
        self.assertEqual(ackAll(self.table, effects), [JoinAckComplete(G, C)])
        self.assertEqual(set(of(PairIntroduced, effects)),
                         {PairIntroduced(A, C), PairIntroduced(B, C)})

    def test_joinErrorsChangeNothing(self):
        self.table.create(G, [A])
        self.assertUnchanged(self.table.join, A, G, error=InvalidGroupOperation)
        self.assertUnchanged(self.table.join, 9999, G, error=UnknownHostID)
        self.assertUnchanged(self.table.join, B, 9999, error=UnknownHostID)

    def test_aClientMayBeInManyGroups(self):
        self.table.create(G, [A, B])
        self.table.create(H, [A, C])
        self.assertEqual(self.table.groupsOf(A), {G, H})
        self.assertEqual(self.table.peersOf(A), [B, C])


class LeaveTests(TableTestCase):
    def test_leaverAndRemainingMembersAreTold(self):
        ackAll(self.table, self.table.create(G, [A, B, C]))
        effects = self.table.leave(B, G)
        self.assertEqual(set(of(MemberLeaveNotice, effects)), {
            MemberLeaveNotice(A, G, B, 2), MemberLeaveNotice(C, G, B, 2),
            MemberLeaveNotice(B, G, A, 2), MemberLeaveNotice(B, G, C, 2),
            MemberLeaveNotice(B, G, B, 2)})
        self.assertEqual(set(of(PairForgotten, effects)),
                         {PairForgotten(A, B), PairForgotten(B, C)})
        self.assertEqual(self.table.membersOf(G), {A, C})

    def test_pairKeptWhileAnotherGroupIsShared(self):
        self.table.create(G, [A, B])
        self.table.create(H, [A, B])
        self.assertEqual(of(PairForgotten, self.table.leave(A, G)), [])
        self.assertTrue(self.table.shareGroup(A, B))
        self.assertEqual(of(PairForgotten, self.table.leave(A, H)), [PairForgotten(A, B)])

    def test_lastLeaverKeepsEmptyGroupWhenAllowed(self):
        self.table.create(G, [A])
        self.assertEqual(of(GroupRemoved, self.table.leave(A, G)), [])
        self.assertEqual(self.table.groups(), [G])
        self.assertEqual(self.table.destroyEmpty(), [GroupRemoved(G)])
        self.assertEqual(self.table.groups(), [])

    def test_lastLeaverRemovesGroupWhenEmptyNotAllowed(self):
        self.table.allowEmptyGroups = False
        self.table.create(G, [A])
        self.assertEqual(of(GroupRemoved, self.table.leave(A, G)), [GroupRemoved(G)])

    def test_leaveErrorsChangeNothing(self):
        self.table.create(G, [A])
        self.assertUnchanged(self.table.leave, B, G, error=InvalidGroupOperation)
        self.assertUnchanged(self.table.leave, A, 9999, error=UnknownHostID)
        self.assertUnchanged(self.table.leave, 9999, G, error=UnknownHostID)

    def test_leaveDuringPendingAckCompletesForTheOthers(self):
        effects = self.table.create(G, [A, B])
        # Only A acknowledges B's join; B leaves before acking it itself.
        for n in of(MemberJoinNotice, effects):
            if n.memberID == B and n.to == A:
                self.table.acknowledge(A, n.ackID)
        # A's join is still waiting for B; B leaving releases it, B's own join is cancelled.
        self.table.acknowledge(A, next(n for n in of(MemberJoinNotice, effects)
                                   if n.memberID == A and n.to == A).ackID)
        effects = self.table.leave(B, G)
        self.assertEqual(of(JoinAckComplete, effects), [JoinAckComplete(G, A)])
        self.assertEqual(self.table.pendingAcks(), 0)


class DestroyAndDisconnectTests(TableTestCase):
    def test_destroyTellsEveryMemberOfEveryMember(self):
        ackAll(self.table, self.table.create(G, [A, B]))
        effects = self.table.destroy(G)
        self.assertEqual({(n.to, n.memberID) for n in of(MemberLeaveNotice, effects)},
                         {(A, A), (A, B), (B, A), (B, B)})
        self.assertEqual(of(GroupRemoved, effects), [GroupRemoved(G)])
        self.assertEqual(of(PairForgotten, effects), [PairForgotten(A, B)])
        self.assertEqual(self.table.groupsOf(A), frozenset())
        self.assertFalse(self.table.hasGroup(G))

    def test_destroyCancelsPendingAcksWithoutCompletion(self):
        effects = self.table.create(G, [A, B])
        destroyed = self.table.destroy(G)
        self.assertEqual(of(JoinAckComplete, destroyed), [])
        self.assertEqual(ackAll(self.table, effects), [])
        self.assertEqual(self.table.pendingAcks(), 0)

    def test_destroyUnknownGroup(self):
        self.assertUnchanged(self.table.destroy, 9999, error=UnknownHostID)

    def test_removeClientLeavesAllGroupsOthersAreTold(self):
        self.table.create(G, [A, B])
        self.table.create(H, [A, C])
        effects = self.table.removeClient(A)
        self.assertEqual(set(of(MemberLeaveNotice, effects)),
                         {MemberLeaveNotice(B, G, A, 1), MemberLeaveNotice(C, H, A, 1)})
        self.assertFalse(self.table.hasClient(A))
        self.assertEqual(self.table.membersOf(G), {B})
        self.assertRaises(UnknownHostID, self.table.removeClient, A)

    def test_removeClientCompletesAcksItWasHolding(self):
        effects = self.table.create(G, [A, B])
        for n in of(MemberJoinNotice, effects):
            if n.memberID == A and n.to == A:
                self.table.acknowledge(A, n.ackID)
        self.assertEqual(of(JoinAckComplete, self.table.removeClient(B)),
                         [JoinAckComplete(G, A)])


    def test_churnInOneGroupLeavesOtherGroupsPendingJoinsAlone(self):
        # Pending joins are kept per group: a leave or a destroy in one group
        # neither cancels nor completes another group's.
        waiting = self.table.create(H, [C, D])
        churned = self.table.create(G, [A, B])
        self.table.leave(B, G)
        self.table.destroy(G)
        self.assertEqual(ackAll(self.table, churned), [])
        self.assertEqual(self.table.pendingAcks(), 2)
        self.assertEqual(set(ackAll(self.table, waiting)),
                         {JoinAckComplete(H, C), JoinAckComplete(H, D)})
        self.assertEqual(self.table.pendingAcks(), 0)
        # The group's HostID is reused with nothing of the old joins left.
        self.assertEqual(set(ackAll(self.table, self.table.create(G, [A, C]))),
                         {JoinAckComplete(G, A), JoinAckComplete(G, C)})
        self.assertEqual(self.table.pendingAcks(), 0)

class HostIDTests(SynchronousTestCase):
    def test_allocatesFrom1000Up(self):
        ids = HostIDAllocator()
        self.assertEqual([ids.allocate(0), ids.allocate(0)], [1000, 1001])
        self.assertIn(1000, ids)

    def test_recycledOnlyAfterQuietPeriod(self):
        ids = HostIDAllocator(quietPeriod=10)
        first = ids.allocate(0)
        ids.release(first, now=1)
        self.assertNotEqual(ids.allocate(5), first)
        self.assertEqual(ids.allocate(11), first)

    def test_releaseOfUnknownIdIgnored(self):
        ids = HostIDAllocator(quietPeriod=0)
        ids.release(5000, now=0)
        self.assertEqual(ids.allocate(1), 1000)


class EffectValueTests(SynchronousTestCase):
    """Effects are values, like every core's events."""

    def test_effectsCompareHashAndMatchByTheirFields(self):
        self.assertIsInstance(PairIntroduced(A, B), Value)
        self.assertEqual(PairIntroduced(A, B), PairIntroduced(A, B))
        self.assertNotEqual(PairIntroduced(A, B), PairForgotten(A, B))
        self.assertEqual(len({GroupRemoved(G), GroupRemoved(G), GroupRemoved(H)}), 2)
        self.assertEqual(repr(JoinAckComplete(G, A)),
                         f"JoinAckComplete(groupID={G}, memberID={A})")
        match MemberLeaveNotice(A, G, B, 2):
            case MemberLeaveNotice(to, groupID, memberID, count):
                self.assertEqual((to, groupID, memberID, count), (A, G, B, 2))
            case _:
                self.fail("MemberLeaveNotice did not match its own pattern")

"""The view-group example (examples/viewgroup.py): its pure parts, and the
whole example run headless as CI runs it (issue #16, acceptance item 4)."""

import itertools
import math
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tests.test_examples import EXAMPLES, environment

sys.path.insert(0, str(EXAMPLES))
from _viewgroup_ledger import DeliveryLedger
from _viewgroup_svg import PairLine, PlayerMark, renderMap
from _viewgroup_world import ViewTracker, WorldMap, mapSide, pairsWithin

PLAYERS = 50
SECONDS = 3
RUN_TIMEOUT = 60.0

coordinate = st.floats(min_value=0, max_value=1000, allow_nan=False)


def bruteForcePairs(positions, reach):
    return {(i, j) for i, j in itertools.combinations(range(len(positions)), 2)
            if math.dist(positions[i], positions[j]) <= reach}


class PairsWithinTests(SynchronousTestCase):
    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.tuples(coordinate, coordinate), max_size=60),
           st.floats(min_value=1, max_value=400))
    def test_theGridFindsWhatComparingEveryPairFinds(self, positions, reach):
        found = pairsWithin(positions, reach)
        # Squared distances a rounding away from the reach may fall either side.
        doubtful = {(i, j) for i, j in itertools.combinations(range(len(positions)), 2)
                    if abs(math.dist(positions[i], positions[j]) - reach) < 1e-6}
        self.assertEqual(set(found) - doubtful, bruteForcePairs(positions, reach) - doubtful)
        for (i, j), d2 in found.items():
            self.assertLess(i, j)
            self.assertAlmostEqual(d2, math.dist(positions[i], positions[j]) ** 2)

    def test_pairsAcrossACellCornerAreFound(self):
        # Cells are 10 wide: (9.9, 9.9) and (10.1, 0.1) touch diagonally-up-right.
        self.assertEqual(set(pairsWithin([(9.9, 9.9), (10.1, 0.1), (0.1, 10.1)], 10)),
                         {(0, 1), (0, 2)})


class ViewTrackerTests(SynchronousTestCase):
    def test_aPairEntersAtTheRadiusAndLeavesBeyondTheMargin(self):
        tracker = ViewTracker(radius=100, margin=0.1)
        self.assertEqual(tracker.update([(0, 0), (101, 0)]), ([], []))
        self.assertEqual(tracker.update([(0, 0), (100, 0)]), ([(0, 1)], []))
        self.assertEqual(tracker.update([(0, 0), (109, 0)]), ([], []))    # still in view
        self.assertEqual(tracker.update([(0, 0), (111, 0)]), ([], [(0, 1)]))
        self.assertEqual(tracker.update([(0, 0), (105, 0)]), ([], []))    # not back yet
        self.assertEqual(tracker.inView, set())

    def test_forgetDropsEveryPairOfAPlayer(self):
        tracker = ViewTracker(radius=10)
        tracker.update([(0, 0), (5, 0), (0, 5), (50, 50)])
        self.assertEqual(tracker.forget(0), [(0, 1), (0, 2)])
        self.assertEqual(tracker.inView, {(1, 2)})

    def test_charactersStayOnTheMapAndTheMapFitsTheCrowd(self):
        side = mapSide(200, 100)
        world = WorldMap(200, side, speed=40, seed=3)
        for _ in range(300):
            world.step(0.1)
        for x, y in world.positions():
            self.assertTrue(0 <= x <= side and 0 <= y <= side, (x, y))
        # About NEIGHBOURS_IN_VIEW (5) neighbours each when scattered at random.
        start = WorldMap(200, side, speed=40, seed=4).positions()
        mean = 2 * len(pairsWithin(start, 100)) / 200
        self.assertTrue(3 < mean < 7, mean)


class DeliveryLedgerTests(SynchronousTestCase):
    def test_everythingDeliveredIsClean(self):
        ledger = DeliveryLedger()
        for seq in (1, 2, 3):
            ledger.sent(10, seq, [20, 30])
            ledger.received(10, 20, seq)
            ledger.received(10, 30, seq)
        counts = ledger.counts(final=True)
        self.assertEqual((counts.sent, counts.received, counts.broken), (6, 6, 0))

    def test_aHoleBeforeALaterMessageIsLost(self):
        ledger = DeliveryLedger()
        for seq in (1, 2, 3):
            ledger.sent(10, seq, [20])
        ledger.received(10, 20, 1)
        ledger.received(10, 20, 3)
        self.assertEqual(ledger.counts().lost, 1)

    def test_aMissingTailIsPendingUntilTheEndThenLost(self):
        ledger = DeliveryLedger()
        ledger.sent(10, 1, [20])
        ledger.sent(10, 2, [20])
        ledger.received(10, 20, 1)
        self.assertEqual((ledger.counts().pending, ledger.counts().lost), (1, 0))
        self.assertEqual(ledger.counts(final=True).lost, 1)

    def test_theTailOfAPartedPairIsDroppedNotLost(self):
        ledger = DeliveryLedger()
        for seq in (1, 2, 3):
            ledger.sent(10, seq, [20])
        ledger.received(10, 20, 1)
        ledger.parted(10, 20)
        ledger.sent(10, 4, [20])           # together again: a new segment
        ledger.received(10, 20, 4)
        counts = ledger.counts(final=True)
        self.assertEqual((counts.lost, counts.droppedAtParting), (0, 2))

    def test_aHoleInsideAPartedSegmentIsStillLost(self):
        ledger = DeliveryLedger()
        for seq in (1, 2, 3):
            ledger.sent(10, seq, [20])
        ledger.received(10, 20, 1)
        ledger.received(10, 20, 3)
        ledger.parted(10, 20)
        self.assertEqual(ledger.counts(final=True).lost, 1)

    def test_duplicatesAndReorderingAreCounted(self):
        ledger = DeliveryLedger()
        for seq in (1, 2):
            ledger.sent(10, seq, [20])
        ledger.received(10, 20, 2)
        ledger.received(10, 20, 1)
        ledger.received(10, 20, 1)
        counts = ledger.counts(final=True)
        self.assertEqual((counts.duplicated, counts.reordered, counts.broken), (1, 1, 2))

    def test_messagesNotAddressedToAReceiverAreNotOwedToIt(self):
        ledger = DeliveryLedger()
        ledger.sent(10, 1, [20])
        ledger.sent(10, 2, [30])
        ledger.received(10, 20, 1)
        ledger.received(10, 30, 2)
        self.assertEqual(ledger.counts(final=True).broken, 0)


class PictureTests(SynchronousTestCase):
    def test_everyPlayerIsNamedAndEachPairDrawnByItsPath(self):
        svg = renderMap(100, 10, [PlayerMark("ann", 10, 10), PlayerMark("<bob>", 15, 10, True),
                                  PlayerMark("cy", 90, 90, cheater=True)],
                        [PairLine("ann", "<bob>", direct=True), PairLine("ann", "cy", False)])
        self.assertIn(">ann</text>", svg)
        self.assertIn(">&lt;bob&gt;</text>", svg)
        self.assertIn(">cy</text>", svg)
        self.assertEqual(svg.count("<line "), 2)
        self.assertEqual(svg.count('stroke-dasharray="5,3"'), 1)
        self.assertIn("1 direct (solid), 1 relayed (dashed)", svg)


def fields(line):
    return dict(re.findall(r"(\w+)=(\S+)", line))


class HeadlessRunTests(SynchronousTestCase):
    """CI runs the example as a user would and reads its report."""

    def test_fiftyPlayersFormAndPartPairsLosingNothingAndTheCheaterIsRefused(self):
        directory = tempfile.TemporaryDirectory()
        self.addCleanup(directory.cleanup)
        cwd = directory.name
        picture = Path(cwd) / "map.svg"
        done = subprocess.run(
            [sys.executable, str(EXAMPLES / "viewgroup.py"), "--players", str(PLAYERS),
             "--seconds", str(SECONDS), "--svg", str(picture)],
            cwd=cwd, env=environment(), capture_output=True, text=True, check=False,
            timeout=RUN_TIMEOUT)
        output = done.stdout + done.stderr
        self.assertEqual(done.returncode, 0, output)
        lines = done.stdout.splitlines()
        seconds = [fields(line) for line in lines if line.startswith("t=")]
        (total,) = [fields(line) for line in lines if line.startswith("total ")]
        self.assertEqual(len(seconds), SECONDS, output)

        # Pairs came into view and left it while the players walked, not
        # only when the map first filled.
        self.assertTrue(any(int(s["joins"]) > 0 for s in seconds[1:]), output)
        self.assertTrue(any(int(s["leaves"]) > 0 for s in seconds), output)
        self.assertGreater(int(total["leaves"]), 0)
        # Some pairs went direct, the relay-only players' pairs stayed relayed.
        self.assertGreater(int(seconds[-1]["direct"]), 0, output)
        self.assertGreater(int(seconds[-1]["relayed"]), 0, output)
        self.assertGreater(int(total["relayed_bytes"]), 0)
        self.assertGreater(int(total["positions"]), 0)

        # Reliable chat: every line owed arrived once and in order.
        self.assertEqual(total["settled"], "yes", output)
        self.assertGreater(int(total["chat"]), 0)
        for report in [*seconds, total]:
            for key in ("lost", "duplicated", "reordered", "stale", "intrusions"):
                self.assertEqual(report[key], "0", (key, output))

        # The cheater sent to strangers; the server refused every one and
        # said so, and nobody heard from a player outside its groups.
        self.assertGreater(int(total["cheats"]), 0, output)
        self.assertEqual(total["refused"], total["cheats"], output)
        self.assertGreater(int(total["hack_reports"]), 0, output)

        svg = picture.read_text(encoding="utf-8")
        for n in range(PLAYERS):
            self.assertIn(f">p{n:03d}</text>", svg)
        self.assertIn(f"{PLAYERS} players, {total['pairs']} pairs", svg)

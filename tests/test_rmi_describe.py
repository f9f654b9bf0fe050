"""python -m proud_twisted.rmi describe: a declaration as text, and the docs built from it."""

import contextlib
import io
import os
import pathlib
import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

from proud_twisted.rmi.__main__ import main
from proud_twisted.rmi.describe import describe
from proud_twisted.rmi.fingerprint import interfaceDigest
from tests.test_rmi_calls import Game

ROOT = pathlib.Path(__file__).resolve().parent.parent


class DescribeTests(SynchronousTestCase):
    def test_theTextNamesIDsMethodsParametersAndSizes(self):
        text = describe(Game)
        self.assertIn(f"Game: IDs 5000-5004, fingerprint {interfaceDigest(Game).hex()}", text)
        self.assertIn("5000  say(text: str, color: Color{WHITE=0,RED=1}) -> one-way", text)
        self.assertIn("5002  buy(item: int, count: int, seller: HostID) -> int", text)
        self.assertIn("raises NotEnoughGold", text)
        self.assertIn("message 7-38 B, item 1-10 B, count 1-10 B, seller 1-10 B", text)
        self.assertIn("5001  move(where: Position(x: float, y: float)) -> one-way", text)
        self.assertIn("message 19 B, where 16 B", text)

    def test_theCommandPrintsItOrAClearError(self):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            self.assertEqual(main(["describe", "tests.test_rmi_calls.Game"]), 0)
            self.assertEqual(main(["describe", "tests.test_rmi_calls.Nothing"]), 2)
            self.assertEqual(main(["describe", "tests.test_rmi_calls.Recording"]), 2)
        self.assertEqual(out.getvalue(), describe(Game) + "\n")
        self.assertIn("has no attribute 'Nothing'", err.getvalue())
        self.assertIn("is not a RemoteInterface subclass", err.getvalue())

    def test_itRunsAsAModule(self):
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        done = subprocess.run([sys.executable, "-m", "proud_twisted.rmi", "describe",
                               "tests.test_rmi_calls.Game"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=60, check=False)
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertEqual(done.stdout, describe(Game) + "\n")

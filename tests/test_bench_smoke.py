"""The benchmark scripts run to the end on tiny sizes and print their ratio
line.  Their figures are not checked: benchmarks measure, tests do not time."""

import importlib.util
import pathlib
import re
import subprocess
import sys

import pytest

BENCH = pathlib.Path(__file__).resolve().parent.parent / "bench"
RATIO_LINE = re.compile(r"^[^:\n]+: ours=[\d,.]+ \S+, baseline=[\d,.]+ \S+ .*ratio=[\d.]+",
                        re.MULTILINE)
TIMEOUT = 120


def needsEnet():
    return pytest.mark.skipif(importlib.util.find_spec("enet") is None,
                              reason="pyenet is not installed (pip install -e '.[bench]')")


@pytest.mark.parametrize("script, options", [
    pytest.param("rudp_throughput.py", ["--messages", "200", "--repeat", "1"],
                 marks=needsEnet()),
    ("rudp_loss.py", ["--messages", "200"]),
    ("rudp_rtt.py", ["--messages", "50", "--repeat", "1"]),
    ("p2p_times.py", ["--quick"]),
    ("framework_rtt.py", ["--quick", "--profile", "--profile-top", "5"]),
    ("security_overhead.py", ["--pings", "50", "--blocks", "2", "--messages", "500",
                              "--relay-runs", "1", "--floor"]),
    ("group_churn.py", ["--clients", "4", "--group-size", "3", "--rounds", "2",
                        "--steps", "5"]),
    ("server_gc.py", ["--clients", "6", "--group-size", "3"]),
    ("attacks.py", ["--quick", "--seconds", "1", "--scenario", "slow-consumer",
                    "--scenario", "rejected-relay-flood"]),
    ("scale.py", ["--quick"]),
    ("cluster.py", ["--quick"]),
    ("rmi.py", ["--quick"]),
])
def test_benchmarkPrintsRatio(script, options):
    done = subprocess.run(
        [sys.executable, str(BENCH / script), *options, "--timeout", str(TIMEOUT - 10)],
        capture_output=True, text=True, check=False, timeout=TIMEOUT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert RATIO_LINE.search(done.stdout), done.stdout
    if "--floor" in options:
        assert "AES-GCM calls alone (information): ours=" in done.stdout, done.stdout
        for cipher in ("aesgcm", "chacha20poly1305"):
            assert f"seal+open of 64 B, {cipher}, in a loop (information): ours=" in done.stdout
    if script == "scale.py":
        for line in ("clients joined in the storm", "SYNs dropped in the storm",
                     "server CPU per join, storm of", "server memory per idle grouped client",
                     "server CPU per idle client per second",
                     "server CPU per relayed frame under the trickle",
                     "messages lost in the hold", "clients dropped during the hold"):
            assert re.search(rf"^{re.escape(line)}.*: ours=.*\(goal .*: (met|MISSED)\)",
                             done.stdout, re.MULTILINE), (line, done.stdout)

"""The benchmarks keep running (numbers are theirs to print, not ours to judge)."""

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def test_bench_channel_runs(tmp_path):
    p = subprocess.run([sys.executable, str(BENCH / "bench_channel.py"), "--samples", "20"],
                       capture_output=True, text=True, timeout=300, cwd=str(tmp_path))
    assert p.returncode == 0, p.stderr
    assert "target:" in p.stdout and "10000" in p.stdout


def test_bench_suite_describes_itself(tmp_path):
    p = subprocess.run([sys.executable, str(BENCH / "bench_suite.py"), "--help"],
                       capture_output=True, text=True, timeout=60, cwd=str(tmp_path))
    assert p.returncode == 0 and "--quick" in p.stdout

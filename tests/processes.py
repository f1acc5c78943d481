"""Helpers for the tests that run ``train.py`` or ``rlrnn`` as a real process."""

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def start_training(*args: str, **kwargs) -> subprocess.Popen:
    """``python train.py ARGS`` from the repository root, its output captured."""
    return subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        **kwargs,
    )


def rlrnn(*args: str, cwd: Path = ROOT, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m rlrnn.cli ARGS``, run to its end, its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "rlrnn.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 120) -> None:
    """Wait until ``path`` exists, failing if ``process`` ends first or time runs out."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)

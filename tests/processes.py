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


def children_of(pid: int) -> list[int]:
    """The process ids of ``pid``'s children (none once it has ended)."""
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def wait_for_children(process: subprocess.Popen, count: int, timeout: float = 120) -> list[int]:
    """The ids of ``process``'s children once it has ``count`` of them (its workers started,
    still importing torch), failing if it ends first or time runs out."""
    deadline = time.monotonic() + timeout
    while len(children := children_of(process.pid)) < count:
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.01)
    return children


def still_running(pids: list[int], timeout: float = 20) -> list[int]:
    """Those of ``pids`` still running after up to ``timeout`` seconds (zombies count as ended)."""
    deadline = time.monotonic() + timeout
    while True:
        running = []
        for pid in pids:
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if state != "Z":
                running.append(pid)
        if not running or time.monotonic() > deadline:
            return running
        time.sleep(0.1)

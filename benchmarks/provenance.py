"""Where a result came from: the command, the commit, the machine and the float path.

Every result file a benchmark writes starts with this record, so that a table generated from it
says what produced its numbers, and a reader on another machine knows what to compare with.
"""

from __future__ import annotations

import datetime
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]


def commit(checkout: Path = ROOT) -> str:
    """``checkout``'s commit (this one by default), with ``+dirty`` when tracked files differ
    from it."""

    def git(*args: str) -> str:
        result = subprocess.run(["git", *args], cwd=checkout, capture_output=True, text=True)
        return result.stdout.strip() if result.returncode == 0 else ""

    sha = git("rev-parse", "HEAD") or "unknown"
    return sha + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def float_path() -> str:
    """Which CPU kernels torch runs: ``ATEN_CPU_CAPABILITY`` as set (else ``automatic``) and
    the capability torch picked. Two paths round sums differently, so one seed follows two
    trajectories on them."""
    asked = os.environ.get("ATEN_CPU_CAPABILITY", "automatic")
    return f"{asked} ({torch.backends.cpu.get_cpu_capability()})"


def provenance(argv: list[str] | None = None) -> dict[str, Any]:
    """The record a result file starts with."""
    argv = sys.argv if argv is None else argv
    capability = os.environ.get("ATEN_CPU_CAPABILITY")
    prefix = f"ATEN_CPU_CAPABILITY={capability} " if capability else ""
    script = Path(argv[0]).resolve()
    shown = script.relative_to(ROOT) if script.is_relative_to(ROOT) else script
    return {
        "command": prefix + shlex.join(["python", str(shown), *argv[1:]]),
        "commit": commit(),
        "date": datetime.date.today().isoformat(),
        "machine": f"{cpu_model()}, {os.cpu_count()} CPUs, {platform.machine()}",
        "float_path": float_path(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }

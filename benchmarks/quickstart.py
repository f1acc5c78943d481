"""Record what the README's quick start prints: ``python train.py`` run as a user runs it.

Runs ``python train.py`` in a fresh temporary folder (so its ``runs/`` folder is thrown away),
captures what it prints and the run's ``summary.json``, and writes both, with where they came
from (command, commit, machine, float path, torch), to ``benchmarks/results/quickstart.json``;
the run's ``learning_curve.png`` becomes ``docs/learning_curve.png``, the README's figure of the
same run. ``benchmarks/tables.py`` writes the README's expected output from that file:

    python benchmarks/quickstart.py && python benchmarks/tables.py
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from provenance import provenance  # benchmarks/, beside this script

from rlrnn.files import atomic_write, atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
COMMAND = ["python", "train.py"]  # as the README shows it
# summary.json's fields a reader of the quick start cares about (one seed: seed 0).
KEPT = (
    "agent",
    "env_id",
    "seed",
    "env_steps",
    "train_seconds",
    "steps_per_second",
    "solved_at_steps",
    "solved_at_seconds",
    "final_eval_mean",
    "final_eval_std",
    "best_eval_mean",
    "device",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "quickstart.json"
    )
    parser.add_argument(
        "--figure", type=Path, default=ROOT / "docs" / "learning_curve.png", help="the run's curve"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        # The same interpreter, on the repository's train.py, from an empty folder.
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, str(ROOT / "train.py")], cwd=tmp, capture_output=True, text=True
        )
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            sys.exit(f"python train.py exited with {done.returncode}:\n{done.stderr}")
        (run,) = (Path(tmp) / "runs").iterdir()  # the one run it made
        summary = json.loads((run / "summary.json").read_text())
        curve = (run / "learning_curve.png").read_bytes()
    atomic_write(args.figure, lambda f: f.write(curve))
    where = provenance()
    record = {
        **where,
        "command": " ".join(COMMAND),  # what was measured; "recorded_by" is what ran it
        "recorded_by": where["command"],
        "wall_seconds": round(seconds, 1),
        # Other work on the machine slows the run: the 1-minute load average as it ended.
        "load_average": round(os.getloadavg()[0], 1),
        "stdout": done.stdout.splitlines(),
        "summary": {key: summary.get(key) for key in KEPT},
        "figure": shown(args.figure),
    }
    atomic_write_text(args.out, json.dumps(record, indent=2) + "\n")
    print(done.stdout, end="")
    print(f"wrote {shown(args.out)} and {shown(args.figure)}")


def shown(path: Path) -> str:
    path = path.resolve()
    return str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)


if __name__ == "__main__":
    main()

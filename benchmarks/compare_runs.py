"""``rlrnn compare`` with its per-run values kept: a result file for the docs' compare tables.

Runs ``rlrnn compare`` with the arguments after ``--`` (its report folder is ``--out``, kept
for re-use), then writes ``--result``: the provenance (command, commit, machine, float path),
each env's table rows and, for the memory suite, its verdicts, and every run's own values (final
and best weights' mean return, steps and seconds to solve, how well it stayed solved), so a
table can be checked against the runs behind it:

    python benchmarks/compare_runs.py --result benchmarks/results/memory_automatic.json -- \\
        --suite memory --seeds 10 --out /tmp/memory --quiet
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from provenance import provenance  # benchmarks/, beside this script

from rlrnn.tools.common.stability import stability


def run_values(run: dict[str, Any]) -> dict[str, Any]:
    """One run of a report: its own figures, read from its folder's summary."""
    summary = json.loads((Path(run["run_dir"]) / "summary.json").read_text())
    held = stability(summary["evaluations"], summary["reward_threshold"])
    return {
        "agent": run["agent"],
        "seed": run["seed"],
        "final": statistics.mean(run["final_returns"]),
        "best": statistics.mean(run["best_returns"]),
        "solved_at_steps": summary["solved_at_steps"],
        "solved_at_seconds": summary["solved_at_seconds"],
        "stability": held._asdict(),
        "threshold": summary["reward_threshold"],
    }


def collect(out_dir: Path) -> dict[str, Any]:
    """Every env's report under ``out_dir`` (one for a comparison, one per env for a suite)."""
    suite = out_dir / "summary.json"
    separated = json.loads(suite.read_text())["separated"] if suite.exists() else {}
    envs = {}
    for path in sorted(out_dir.glob("**/report.json")):
        report = json.loads(path.read_text())
        env_id = report["env_id"]
        envs[env_id] = {
            "episodes": report["episodes"],
            "rows": report["results"],
            "separated": separated.get(env_id),
            "runs": [run_values(run) for run in report["runs"]],
        }
    return envs


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--result", type=Path, required=True, help="result file to write (JSON)")
    parser.add_argument("compare_args", nargs=argparse.REMAINDER, help="-- rlrnn compare's")
    args = parser.parse_args()
    compare_args = args.compare_args[1:] if args.compare_args[:1] == ["--"] else args.compare_args
    if "--out" not in compare_args:
        parser.error("give rlrnn compare an --out folder after --")
    out_dir = Path(compare_args[compare_args.index("--out") + 1])
    source = provenance()  # the code as it was when the runs started
    done = subprocess.run([sys.executable, "-m", "rlrnn.cli", "compare", *compare_args])
    if done.returncode:
        raise SystemExit(done.returncode)
    result = {**source, "envs": collect(out_dir)}
    args.result.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.result}")


if __name__ == "__main__":
    main()

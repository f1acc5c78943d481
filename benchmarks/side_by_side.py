"""This checkout against another (e.g. an older commit's worktree), side by side: training
throughput (rollout + update, as ``benchmarks/throughput.py`` measures it) and time to solve over
seeds, the two alternating run by run (ABBA), each run in a fresh process.

    git worktree add /tmp/old 54845b4
    python benchmarks/side_by_side.py /tmp/old --num-envs 64 1024 --seeds 0 1 2 --rounds 4

Throughput: the median over ``--rounds`` of env steps per second, by the wall clock and by the
process's CPU time (steadier on a shared machine); time to solve: the median over seeds of the
training seconds to the first evaluation >= 475 (defaults, 100k env steps).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import checkouts
from provenance import commit, provenance


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("baseline", type=Path, help="the other checkout")
    parser.add_argument("--num-envs", type=int, nargs="+", default=[64, 1024])
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--max-steps", type=int, default=100_000)
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()
    here = Path(__file__).resolve().parents[1]
    sides = {"this": here, "baseline": args.baseline.resolve()}
    speed: dict[str, list[dict[int, dict[str, float]]]] = {name: [] for name in sides}
    for k in range(args.rounds):
        order = list(sides) if k % 2 == 0 else list(reversed(sides))  # ABBA: drifts cancel
        for name in order:
            runs = {n: checkouts.throughput(sides[name], n, args.iterations) for n in args.num_envs}
            speed[name].append(runs)
    solve: dict[str, list[dict]] = {name: [] for name in sides}
    for seed in args.seeds:
        for name, checkout in sides.items() if seed % 2 == 0 else reversed(sides.items()):
            solve[name].append(checkouts.run_rlrnn(checkout, seed, args.max_steps, 4096, "cpu", 1))
    columns = [f"steps/s at {n:,} envs (wall / CPU)" for n in args.num_envs]
    columns += ["median seconds to solve", "median steps to solve", "solved"]
    print("| checkout | " + " | ".join(columns) + " |")
    print("|---|" + "---|" * (len(args.num_envs) + 3))
    report = {}
    for name in sides:
        cells = [
            " / ".join(
                f"{statistics.median(r[n][clock] for r in speed[name]):,.0f}"
                for clock in ("wall", "cpu")
            )
            for n in args.num_envs
        ]
        solved = [r for r in solve[name] if r["solved_at_seconds"] is not None]
        seconds = statistics.median(r["solved_at_seconds"] for r in solved) if solved else None
        steps = statistics.median(r["solved_at_steps"] for r in solved) if solved else None
        cells.append("-" if seconds is None else f"{seconds:.2f}")
        cells.append("-" if steps is None else f"{steps:,.0f}")
        cells.append(f"{len(solved)}/{len(args.seeds)}")
        print(f"| {name} ({sides[name]}) | " + " | ".join(cells) + " |")
        report[name] = {"checkout": str(sides[name]), "throughput": speed[name]}
        report[name]["solve"] = solve[name]
    if args.out:
        sides_commits = {name: commit(checkout) for name, checkout in sides.items()}
        record = {"provenance": provenance(), "commits": sides_commits, **report}
        args.out.write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()

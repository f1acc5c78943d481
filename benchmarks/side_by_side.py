"""This checkout against another (e.g. an older commit's worktree), side by side: training
throughput (each checkout's ``benchmarks/throughput.py``) and time to solve over seeds, the two
alternating run by run, each run in a fresh process.

    git worktree add /tmp/old 54845b4
    python benchmarks/side_by_side.py /tmp/old --num-envs 64 1024 --seeds 0 1 2 --rounds 3

Throughput: the median over ``--rounds`` of env steps per second; time to solve: the median over
seeds of the training seconds to the first evaluation >= 475 (defaults, 100k env steps).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import checkouts


def throughput(checkout: Path, num_envs: list[int], iterations: int) -> dict[int, float]:
    """Env steps per second of ``checkout``'s trainer at each number of envs (1 thread, CPU)."""
    sizes = [str(n) for n in num_envs]
    out = checkouts.run_in(
        checkout,
        ["benchmarks/throughput.py", "--device", "cpu", "--num-envs", *sizes,
         "--iterations", str(iterations)],
    )  # fmt: skip
    rows = [line.split("|") for line in out.splitlines() if line.startswith("| custom")]
    return {int(r[2].replace(",", "")): float(r[3].replace(",", "")) for r in rows}


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
    speed: dict[str, list[dict[int, float]]] = {name: [] for name in sides}
    for _ in range(args.rounds):
        for name, checkout in sides.items():
            speed[name].append(throughput(checkout, args.num_envs, args.iterations))
    solve: dict[str, list[dict]] = {name: [] for name in sides}
    for seed in args.seeds:
        for name, checkout in sides.items():
            solve[name].append(checkouts.run_rlrnn(checkout, seed, args.max_steps, 4096, "cpu", 1))
    columns = [f"steps/s at {n:,} envs" for n in args.num_envs]
    columns += ["median seconds to solve", "median steps to solve", "solved"]
    print("| checkout | " + " | ".join(columns) + " |")
    print("|---|" + "---|" * (len(args.num_envs) + 3))
    report = {}
    for name in sides:
        sps = [statistics.median(r[n] for r in speed[name]) for n in args.num_envs]
        solved = [r for r in solve[name] if r["solved_at_seconds"] is not None]
        seconds = statistics.median(r["solved_at_seconds"] for r in solved) if solved else None
        steps = statistics.median(r["solved_at_steps"] for r in solved) if solved else None
        cells = [f"{v:,.0f}" for v in sps]
        cells += [
            "-" if seconds is None else f"{seconds:.2f}",
            "-" if steps is None else f"{steps:,.0f}",
        ]
        print(f"| {name} ({sides[name]}) | " + " | ".join(cells)
              + f" | {len(solved)}/{len(args.seeds)} |")  # fmt: skip
        report[name] = {
            "checkout": str(sides[name]),
            "throughput": speed[name],
            "solve": solve[name],
        }
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()

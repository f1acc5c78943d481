"""Does memory matter? Train agents over seeds and evaluate each on 100 fresh episodes.

    python benchmarks/learning.py --agents lstm mlp --seeds 0 1 2 3 4

For every run: the env steps at which it was first solved (20-episode periodic evaluation
>= 475), and the 100-episode deterministic return of its ``best.pt`` and ``final.pt``.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path

from rlrnn.learning.evaluation import evaluate
from rlrnn.learning.hyperparams import default_config
from rlrnn.runs.loading import load_checkpoint
from rlrnn.runs.training import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", nargs="+", default=["lstm", "mlp"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--episodes", type=int, default=100)
    args = parser.parse_args()
    print("| agent | seed | solved at steps | best.pt return | final.pt return |")
    print("|---|---|---|---|---|")
    for agent in args.agents:
        for seed in args.seeds:
            config = dataclasses.replace(default_config(agent), seed=seed)
            with tempfile.TemporaryDirectory() as tmp:
                summary = train(config, Path(tmp), show_progress=False)
                means = []
                for name in ("best", "final"):
                    policy, _, _ = load_checkpoint(Path(tmp) / f"{name}.pt")
                    means.append(evaluate(policy, config.env_id, args.episodes).mean)
            solved = summary["solved_at_steps"]
            print(
                f"| {agent} | {seed} | {'-' if solved is None else f'{solved:,}'} |"
                f" {means[0]:.1f} | {means[1]:.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()

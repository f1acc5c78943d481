"""Compare rlrnn training settings over seeds: median env steps and seconds to solve.

Each variant is ``name:key=value,key=value`` over RunConfig / AgentConfig / PPOConfig fields
(tuples as ``pi_hidden=64/64``).

Variants start from ``--agent``'s tuned defaults (rlrnn/hyperparams.py).

    python benchmarks/tune.py --seeds 0 1 2 "default:" "one-minibatch:num_minibatches=1"
    python benchmarks/tune.py --agent framestack "default:" "k8:frame_stack=8"
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
from pathlib import Path

from rlrnn.config import AgentConfig, PPOConfig, RunConfig
from rlrnn.hyperparams import default_config
from rlrnn.training import train


def parse_variant(text: str, base: RunConfig) -> tuple[str, RunConfig]:
    name, _, assignments = text.partition(":")
    changes: dict[type, dict] = {RunConfig: {}, AgentConfig: {}, PPOConfig: {}}
    for item in filter(None, assignments.split(",")):
        key, _, raw = item.partition("=")
        for cls, target in ((AgentConfig, base.agent), (PPOConfig, base.ppo), (RunConfig, base)):
            if key in {f.name for f in dataclasses.fields(cls)}:
                current = getattr(target, key)
                if isinstance(current, bool):
                    value = raw == "True"
                elif isinstance(current, tuple):  # widths as 64/64
                    value = tuple(int(w) for w in raw.split("/"))
                else:
                    value = type(current)(raw)
                changes[cls][key] = value
                break
        else:
            raise SystemExit(f"unknown field {key!r}")
    agent = dataclasses.replace(base.agent, **changes[AgentConfig])
    ppo = dataclasses.replace(base.ppo, **changes[PPOConfig])
    return name, dataclasses.replace(base, agent=agent, ppo=ppo, **changes[RunConfig])


def median_or_none(values: list) -> float | None:
    solved = [v for v in values if v is not None]
    return statistics.median(solved) if len(solved) > len(values) / 2 else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="+")
    parser.add_argument("--agent", default="lstm", help="agent whose defaults variants change")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--eval-interval", type=int, default=2048)
    args = parser.parse_args()
    print("| variant | solved | median steps | median seconds | steps/s | final eval |")
    print("|---|---|---|---|---|---|")
    for text in args.variants:
        base = dataclasses.replace(default_config(args.agent), eval_interval=args.eval_interval)
        name, config = parse_variant(text, base)
        runs = []
        for seed in args.seeds:
            with tempfile.TemporaryDirectory() as tmp:
                run = dataclasses.replace(config, seed=seed)
                runs.append(train(run, Path(tmp), show_progress=False))
        steps = median_or_none([r["solved_at_steps"] for r in runs])
        secs = median_or_none([r["solved_at_seconds"] for r in runs])
        solved = sum(r["solved_at_steps"] is not None for r in runs)
        sps = statistics.median(r["steps_per_second"] for r in runs)
        final = statistics.mean(r["final_eval_mean"] for r in runs)
        print(
            f"| {name} | {solved}/{len(runs)} | {steps} | "
            f"{'-' if secs is None else f'{secs:.2f}'} | {sps:,.0f} | {final:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()

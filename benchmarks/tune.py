"""Compare rlrnn training settings over seeds: median env steps and seconds to solve.

Each variant is ``name:key=value,key=value`` over RunConfig / AgentConfig / PPOConfig fields
(tuples as ``pi_hidden=64/64``). Variants start from ``--agent``'s tuned defaults
(rlrnn/learning/hyperparams.py).

The variants x seeds grid is an Optuna study run by ``rlrnn tune``'s engine: every point is
enqueued once and run by exactly one worker, so ``--workers``, ``--storage`` and ``--study`` split
it between processes and machines as they do for ``rlrnn tune`` (run the same command on each);
the runs are kept in ``--out``, and running the command again only runs what is missing.

    python benchmarks/tune.py --seeds 0 1 2 "default:" "one-minibatch:num_minibatches=1"
    python benchmarks/tune.py --agent framestack "default:" "k8:frame_stack=8" --workers 2
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from envs import make_batched_env
from rlrnn.errors import UsageError
from rlrnn.files import make_writable_dir
from rlrnn.learning.config import AgentConfig, PPOConfig, RunConfig
from rlrnn.learning.hyperparams import Choice, Variants, default_config, with_values
from rlrnn.tools.common.storage import check_study, create_study, describe, open_storage
from rlrnn.tools.tune.setup import Setup, check_space
from rlrnn.tools.tune.tune import Job, fill, load
from rlrnn.tools.tune.workers import run_local


def parse_variant(text: str, base: RunConfig) -> tuple[str, dict[str, Any]]:
    """``name:key=value,...`` -> (name, {dotted key: value}), values typed like ``base``'s."""
    name, _, assignments = text.partition(":")
    values: dict[str, Any] = {}
    sections = ((AgentConfig, "agent.", base.agent), (PPOConfig, "ppo.", base.ppo))
    for item in filter(None, assignments.split(",")):
        key, _, raw = item.partition("=")
        for cls, prefix, target in (*sections, (RunConfig, "", base)):
            if key in {f.name for f in dataclasses.fields(cls)}:
                current = getattr(target, key)
                if isinstance(current, bool):
                    value: Any = raw == "True"
                elif isinstance(current, tuple):  # widths as 64/64
                    value = tuple(int(w) for w in raw.split("/"))
                else:
                    value = type(current)(raw)
                values[prefix + key] = value
                break
        else:
            raise UsageError(f"unknown field {key!r} in variant {text!r}")
    return name, values


def median_or_none(values: list) -> float | None:
    solved = [v for v in values if v is not None]
    return statistics.median(solved) if len(solved) > len(values) / 2 else None


def table(study: Any, names: list[str]) -> str:
    """Per variant: seeds solved, medians over the solved seeds, the mean final evaluation and
    the mean stays-solved fraction of the solved seeds (rlrnn.tools.common.stability)."""
    lines = [
        "| variant | solved | median steps | median seconds | steps/s | final eval"
        " | stays solved |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in names:
        runs = [t.user_attrs for t in study.get_trials() if t.params.get("variant") == name]
        runs = [r for r in runs if r.get("status") in ("finished", "diverged")]
        if not runs:
            lines.append(f"| {name} | no runs finished |  |  |  |  |  |")
            continue
        steps = median_or_none([r["solved_at_steps"] for r in runs])
        secs = median_or_none([r["solved_at_seconds"] for r in runs])
        solved = sum(r["solved_at_steps"] is not None for r in runs)
        sps = statistics.median(r["env_steps"] / r["train_seconds"] for r in runs)
        final = statistics.mean(r["final_eval_mean"] for r in runs)
        stays = [r["stays_solved"] for r in runs if r["stays_solved"] is not None]
        held = f"{statistics.mean(stays):.2f}" if stays else "-"
        lines.append(
            f"| {name} | {solved}/{len(runs)} | {steps} | "
            f"{'-' if secs is None else f'{secs:.2f}'} | {sps:,.0f} | {final:.0f} | {held} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="+")
    parser.add_argument("--agent", default="lstm", help="agent whose defaults variants change")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--eval-interval", type=int, default=2048)
    parser.add_argument("--workers", type=int, default=1, help="processes on this machine")
    parser.add_argument("--storage", metavar="URL", help="shared study storage (see rlrnn tune)")
    parser.add_argument("--study", help="study name (default: one per grid)")
    parser.add_argument("--out", type=Path, help="runs folder (default: reports/sweeps/<study>)")
    args = parser.parse_args()
    try:
        base = with_values(default_config(args.agent), {"eval_interval": args.eval_interval})
        variants = dict(parse_variant(text, base) for text in args.variants)
        space = {"variant": Variants(variants), "seed": Choice(tuple(args.seeds))}
        threshold = make_batched_env(base.env_id, 1, "cpu").reward_threshold
        setup = Setup(base, space, objective="seconds", threshold=threshold)
        check_space(setup)
        attrs = setup.attrs()
        name = args.study or "sweep-" + hashlib.sha1(json.dumps(attrs).encode()).hexdigest()[:10]
        out = make_writable_dir(args.out or Path("reports/sweeps") / name, "runs folder")
        grid = len(setup.grid())
        job = Job(setup, args.storage, name, out, grid, grid, pruner="none", sampler="grid")
        shown = describe(args.storage, job.journal)
        storage = open_storage(args.storage, job.journal)
        if not check_study(storage, name, attrs, shown):
            create_study(storage, name, setup.direction, attrs, shown, fill(job))
        code, messages = run_local(job, args.workers, grid, show=True)
    except UsageError as e:
        print(f"tune.py: error: {e}", file=sys.stderr)
        return 2
    for message in messages:
        print(f"tune.py: {message}", file=sys.stderr)
    print(table(load(job), list(variants)))
    print(f"Runs: {out}/trials/ (study {name} in {shown})")
    return code


if __name__ == "__main__":
    sys.exit(main())

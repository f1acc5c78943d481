"""Time to solve the position-only cart-pole: rlrnn's recurrent PPO vs sb3-contrib's RecurrentPPO.

Both are trained in this one process, seed after seed, and judged by the same rule: every
``--eval-interval`` env steps, 20 deterministic episodes on the same start states (rlrnn's
evaluator for both); *solved* is the first evaluation with a mean return >= 475. Seconds are
training seconds, evaluation time excluded for both. RecurrentPPO uses rl-baselines3-zoo's tuned
``CartPoleNoVel-v1`` hyperparameters and stops once solved (or at ``--max-steps``).

``--baseline DIR`` also times the rlrnn of another checkout (e.g. a git worktree of an older
commit) with its own defaults, seed by seed between the others, so a change to the defaults is
measured side by side with what it replaces. rlrnn runs each seed in a fresh subprocess (the
checkout under test on ``PYTHONPATH``); RecurrentPPO runs in this process.

    python benchmarks/speed_vs_sb3.py --seeds 0 1 2 3 4
    git worktree add /tmp/old HEAD~3
    python benchmarks/speed_vs_sb3.py --baseline /tmp/old
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time
from pathlib import Path

import checkouts
import torch
from provenance import commit, provenance
from sb3_contrib import RecurrentPPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecNormalize
from torch import nn

import envs  # noqa: F401  (registers PositionOnlyCartPole-v1)
from rlrnn.learning.evaluation import evaluate
from rlrnn.runs.sb3 import SB3Policy

ENV_ID = "PositionOnlyCartPole-v1"
THRESHOLD = 475.0
EVAL_EPISODES = 20

ZOO_CARTPOLE_NOVEL = dict(  # rl-baselines3-zoo, hyperparams/ppo_lstm.yml, CartPoleNoVel-v1
    n_steps=32,
    batch_size=256,
    gae_lambda=0.8,
    gamma=0.98,
    n_epochs=20,
    ent_coef=0.0,
    learning_rate=lambda progress: 1e-3 * progress,
    clip_range=lambda progress: 0.2 * progress,
    policy_kwargs=dict(
        ortho_init=False,
        activation_fn=nn.ReLU,
        lstm_hidden_size=64,
        enable_critic_lstm=True,
        net_arch=dict(pi=[64], vf=[64]),
    ),
)


class SolveWatch(BaseCallback):
    """Evaluates after each update once ``interval`` more env steps are done; stops when solved.

    Evaluating at rollout start (after the previous update) judges the policy as rlrnn's loop
    does: after the update that consumed the steps counted.
    """

    def __init__(self, interval: int, vec_normalize: VecNormalize) -> None:
        super().__init__()
        self.interval, self.vec_normalize = interval, vec_normalize
        self.next_eval, self.eval_seconds = interval, 0.0
        self.solved_at_steps: int | None = None
        self.solved_at_seconds: float | None = None
        self.start = time.perf_counter()

    def _on_rollout_start(self) -> None:
        if self.num_timesteps < self.next_eval or self.solved_at_steps is not None:
            return
        self.next_eval += self.interval
        t0 = time.perf_counter()
        train_seconds = t0 - self.start - self.eval_seconds
        policy = SB3Policy(self.model, self.vec_normalize.normalize_obs)
        result = evaluate(policy, ENV_ID, EVAL_EPISODES)
        self.eval_seconds += time.perf_counter() - t0
        if result.mean >= THRESHOLD:
            self.solved_at_steps, self.solved_at_seconds = self.num_timesteps, train_seconds

    def _on_step(self) -> bool:
        return self.solved_at_steps is None  # False stops learn()

    def train_seconds(self) -> float:
        return time.perf_counter() - self.start - self.eval_seconds


def run_sb3(seed: int, max_steps: int, eval_interval: int, device: str) -> dict:
    vec_env = VecNormalize(make_vec_env(ENV_ID, n_envs=8, seed=seed), gamma=0.98)
    model = RecurrentPPO("MlpLstmPolicy", vec_env, seed=seed, device=device, **ZOO_CARTPOLE_NOVEL)
    watch = SolveWatch(eval_interval, vec_env)
    model.learn(max_steps, callback=watch)
    seconds = watch.train_seconds()
    return {
        "solved_at_steps": watch.solved_at_steps,
        "solved_at_seconds": watch.solved_at_seconds,
        "steps_per_second": model.num_timesteps / seconds,
    }


def run_rlrnn(checkout: Path, seed: int, max_steps: int, eval_interval: int, device: str) -> dict:
    """Train rlrnn's defaults from ``checkout`` in a fresh process."""
    return checkouts.run_rlrnn(
        checkout, seed, max_steps, eval_interval, device, torch.get_num_threads()
    )


def median_solved(runs: list[dict], key: str) -> float:
    """Median over all seeds, an unsolved seed counting as infinitely slow."""
    return statistics.median(math.inf if r[key] is None else r[key] for r in runs)


def show(value: float, fmt: str) -> str:
    return "not solved" if math.isinf(value) else format(value, fmt)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--max-steps", type=int, default=100_000)
    parser.add_argument("--eval-interval", type=int, default=2048)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads for both")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument(
        "--baseline", type=Path, help="another rlrnn checkout to time beside this one"
    )
    args = parser.parse_args()
    source = provenance()  # the code as it was when the runs started
    torch.set_num_threads(args.threads)

    here = Path(__file__).resolve().parents[1]
    runners = {"rlrnn": lambda *a: run_rlrnn(here, *a)}
    if args.baseline:
        baseline = args.baseline.resolve()
        runners["rlrnn (baseline)"] = lambda *a: run_rlrnn(baseline, *a)
    runners["sb3-contrib RecurrentPPO"] = run_sb3
    rows = []
    for seed in args.seeds:
        for name, runner in runners.items():
            torch.set_num_threads(args.threads)
            result = runner(seed, args.max_steps, args.eval_interval, args.device)
            rows.append({"agent": name, "seed": seed, **result})
            print(json.dumps(rows[-1]), flush=True)

    print("\n| agent | solved | median env steps to solve | median seconds to solve | steps/s |")
    print("|---|---|---|---|---|")
    medians = {}
    for name in runners:
        runs = [r for r in rows if r["agent"] == name]
        solved = sum(r["solved_at_steps"] is not None for r in runs)
        steps, secs = (
            median_solved(runs, "solved_at_steps"),
            median_solved(runs, "solved_at_seconds"),
        )
        sps = statistics.median(r["steps_per_second"] for r in runs)
        medians[name] = secs
        print(
            f"| {name} | {solved}/{len(runs)} | {show(steps, ',.0f')} | {show(secs, '.2f')}"
            f" | {sps:,.0f} |"
        )
    ratio = medians["sb3-contrib RecurrentPPO"] / medians["rlrnn"]
    if math.isfinite(medians["rlrnn"]):
        print(f"\nrlrnn solves {ratio:.1f}x faster (median seconds to solve).")
    if args.baseline:
        change = medians["rlrnn"] / medians["rlrnn (baseline)"] - 1
        print(f"rlrnn vs the baseline checkout: {change:+.0%} median seconds to solve.")
    machine = (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores,"
        f" {args.threads} torch thread(s), torch {torch.__version__}, device {args.device}"
    )
    print(f"machine: {machine}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        report = {**source, "machine": machine, "runs": rows, "speedup": ratio}
        report["seeds"] = args.seeds
        if args.baseline:
            report["baseline"] = str(args.baseline)
            report["baseline_commit"] = commit(args.baseline)
        args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

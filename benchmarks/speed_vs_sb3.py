"""Time to solve a position-only task: rlrnn's recurrent PPO vs sb3-contrib's RecurrentPPO.

Both are trained by this one script, seed after seed, and judged by the same rule: every
``--eval-interval`` env steps, 20 deterministic episodes on the same start states (rlrnn's
evaluator for both); *solved* is the first evaluation whose mean return reaches the env's
threshold (475 for the cart-pole, -200 for the pendulum). Seconds are training seconds,
evaluation time excluded for both. RecurrentPPO uses rl-baselines3-zoo's tuned hyperparameters
(``CartPoleNoVel-v1``, ``PendulumNoVel-v1``) and stops once solved (or at ``--max-steps``);
with ``--final-episodes N`` both train to ``--max-steps`` and their final weights are judged
over N fresh episodes too.

``--baseline DIR`` also times the rlrnn of another checkout (e.g. a git worktree of an older
commit) with its own defaults, seed by seed between the others, so a change to the defaults is
measured side by side with what it replaces. rlrnn runs each seed in a fresh subprocess (the
checkout under test on ``PYTHONPATH``); RecurrentPPO runs in this process.

    python benchmarks/speed_vs_sb3.py --seeds 0 1 2 3 4
    python benchmarks/speed_vs_sb3.py --env PositionOnlyPendulum-v1 --agent gru \
        --max-steps 200000 --eval-interval 8192 --final-episodes 100
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
from collections.abc import Callable
from pathlib import Path

import checkouts
import gymnasium as gym
import numpy as np
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

EVAL_EPISODES = 20

# rl-baselines3-zoo's tuned RecurrentPPO policy for both tasks (hyperparams/ppo_lstm.yml).
ZOO_POLICY = dict(
    ortho_init=False,
    activation_fn=nn.ReLU,
    lstm_hidden_size=64,
    enable_critic_lstm=True,
    net_arch=dict(pi=[64], vf=[64]),
)
ZOO_CARTPOLE_NOVEL = dict(  # rl-baselines3-zoo, hyperparams/ppo_lstm.yml, CartPoleNoVel-v1
    n_steps=32,
    batch_size=256,
    gae_lambda=0.8,
    gamma=0.98,
    n_epochs=20,
    ent_coef=0.0,
    learning_rate=lambda progress: 1e-3 * progress,
    clip_range=lambda progress: 0.2 * progress,
    policy_kwargs=ZOO_POLICY,
)
# rl-baselines3-zoo, hyperparams/ppo_lstm.yml, PendulumNoVel-v1 (its batch size is RecurrentPPO's
# default, 128).
ZOO_PENDULUM_NOVEL = dict(
    n_steps=1024,
    gae_lambda=0.95,
    gamma=0.9,
    n_epochs=10,
    ent_coef=0.0,
    learning_rate=1e-3,
    clip_range=0.2,
    use_sde=True,
    sde_sample_freq=4,
    policy_kwargs=ZOO_POLICY,
)
# env id -> (envs, normalised by VecNormalize, RecurrentPPO's arguments)
ZOO = {
    "PositionOnlyCartPole-v1": (8, True, ZOO_CARTPOLE_NOVEL),
    "PositionOnlyPendulum-v1": (4, True, ZOO_PENDULUM_NOVEL),
}


class SolveWatch(BaseCallback):
    """Evaluates after each update once ``interval`` more env steps are done; stops when solved.

    Evaluating at rollout start (after the previous update) judges the policy as rlrnn's loop
    does: after the update that consumed the steps counted.
    """

    def __init__(
        self, env_id: str, interval: int, normalize: Callable[[np.ndarray], np.ndarray], stop: bool
    ) -> None:
        super().__init__()
        self.env_id, self.interval, self.normalize, self.stop = env_id, interval, normalize, stop
        self.threshold = gym.spec(env_id).reward_threshold
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
        result = evaluate(SB3Policy(self.model, self.normalize), self.env_id, EVAL_EPISODES)
        self.eval_seconds += time.perf_counter() - t0
        if result.mean >= self.threshold:
            self.solved_at_steps, self.solved_at_seconds = self.num_timesteps, train_seconds

    def _on_step(self) -> bool:
        return not (self.stop and self.solved_at_steps is not None)  # False stops learn()

    def train_seconds(self) -> float:
        return time.perf_counter() - self.start - self.eval_seconds


def run_sb3(
    seed: int, max_steps: int, eval_interval: int, device: str, env_id: str, final_episodes: int
) -> dict:
    n_envs, normalized, kwargs = ZOO[env_id]
    vec_env = make_vec_env(env_id, n_envs=n_envs, seed=seed)
    if normalized:
        vec_env = VecNormalize(vec_env, gamma=kwargs["gamma"])
    normalize = vec_env.normalize_obs if normalized else np.asarray
    model = RecurrentPPO("MlpLstmPolicy", vec_env, seed=seed, device=device, **kwargs)
    watch = SolveWatch(env_id, eval_interval, normalize, stop=not final_episodes)
    model.learn(max_steps, callback=watch)
    seconds = watch.train_seconds()
    result = {
        "solved_at_steps": watch.solved_at_steps,
        "solved_at_seconds": watch.solved_at_seconds,
        "steps_per_second": model.num_timesteps / seconds,
    }
    if final_episodes:
        policy = SB3Policy(model, normalize)
        result["final"] = evaluate(policy, env_id, final_episodes, seed=10_000).mean
    return result


def median_solved(runs: list[dict], key: str) -> float:
    """Median over all seeds, an unsolved seed counting as infinitely slow."""
    return statistics.median(math.inf if r[key] is None else r[key] for r in runs)


def show(value: float, fmt: str) -> str:
    return "not solved" if math.isinf(value) else format(value, fmt)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", choices=tuple(ZOO), default="PositionOnlyCartPole-v1")
    parser.add_argument("--agent", default="lstm", help="rlrnn's agent (its tuned defaults)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--max-steps", type=int, default=100_000)
    parser.add_argument("--eval-interval", type=int, default=2048)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads for both")
    parser.add_argument(
        "--final-episodes",
        type=int,
        default=0,
        help="train both to --max-steps and judge the final weights over this many episodes",
    )
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument(
        "--baseline", type=Path, help="another rlrnn checkout to time beside this one"
    )
    args = parser.parse_args()
    source = provenance()  # the code as it was when the runs started
    torch.set_num_threads(args.threads)

    here = Path(__file__).resolve().parents[1]
    plain = (args.env, args.agent, args.final_episodes) == ("PositionOnlyCartPole-v1", "lstm", 0)
    named = None if plain else (args.agent, args.env, args.final_episodes)
    threads = args.threads  # rlrnn runs each seed in a fresh process (checkouts.py)
    runners = {"rlrnn": lambda *a: checkouts.run_rlrnn(here, *a, threads, named)}
    if args.baseline:
        baseline = args.baseline.resolve()
        runners["rlrnn (baseline)"] = lambda *a: checkouts.run_rlrnn(baseline, *a, threads, named)
    runners["sb3-contrib RecurrentPPO"] = lambda *a: run_sb3(*a, args.env, args.final_episodes)
    rows = []
    for seed in args.seeds:
        for name, runner in runners.items():
            torch.set_num_threads(args.threads)
            result = runner(seed, args.max_steps, args.eval_interval, args.device)
            rows.append({"agent": name, "seed": seed, **result})
            print(json.dumps(rows[-1]), flush=True)

    final = " final weights: mean, worst seed |" if args.final_episodes else ""
    print(f"\n{args.env}, rlrnn's {args.agent} beside RecurrentPPO, seeds {args.seeds}")
    print(f"| agent | solved | median steps to solve | median seconds to solve | steps/s |{final}")
    print("|---|---|---|---|---|" + ("---|" if final else ""))
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
        finals = [r["final"] for r in runs if "final" in r]
        judged = f" {statistics.mean(finals):.1f}, {min(finals):.1f} |" if finals else ""
        print(
            f"| {name} | {solved}/{len(runs)} | {show(steps, ',.0f')} | {show(secs, '.2f')}"
            f" | {sps:,.0f} |{judged}"
        )
    ratio = medians["sb3-contrib RecurrentPPO"] / medians["rlrnn"]
    if not math.isfinite(medians["sb3-contrib RecurrentPPO"]):  # a median of runs that never solved
        print("\nRecurrentPPO did not solve within the budget (median over seeds).")
    elif math.isfinite(medians["rlrnn"]):
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
        speedup = ratio if math.isfinite(ratio) else None  # None: a side never solved
        report = {**source, "machine": machine, "runs": rows, "speedup": speedup}
        report |= {"env": args.env, "agent": args.agent, "seeds": args.seeds}
        report |= {"max_steps": args.max_steps, "eval_interval": args.eval_interval}
        report["final_episodes"] = args.final_episodes
        if args.baseline:
            report["baseline"] = str(args.baseline)
            report["baseline_commit"] = commit(args.baseline)
        args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

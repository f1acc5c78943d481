"""Eager vs ``--compile`` on the CPU, side by side: training and rollout steps/s, time to solve.

    python benchmarks/compile_speed.py --num-envs 64 1024 4096 --seeds 0 1 2

1. *Throughput*: for each number of envs (the default agent and PPO settings otherwise, 1 torch
   thread), an eager and a compiled learner are built and compiled once (compile seconds
   reported apart), then measured in turn, ``--rounds`` times: ``--iterations`` training
   iterations each, and as many rollouts alone. Medians over rounds; the ratio is compiled over
   eager within each round, so a load that changes between rounds cancels.
2. *Time to solve*: ``train.py`` at its defaults, each seed with and without ``--compile``, each
   run in a fresh process (so each compiled run pays its compile), alternating. Reports
   the training seconds to the first solved evaluation, and with the compile seconds added.

Inductor keeps the code it generates in a cache on disk (``TORCHINDUCTOR_CACHE_DIR``); a second
process compiling the same graphs is much faster. ``--cold`` points the cache at an empty folder
for each compile, to time a first compile on a fresh machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from envs import make_batched_env
from rlrnn.learning.compiled import compile_hot_loop
from rlrnn.learning.config import RunConfig
from rlrnn.learning.ppo import PPOLearner
from rlrnn.runs.loading import build_agent

ROOT = Path(__file__).resolve().parents[1]


def learner(num_envs: int, compiled: bool) -> tuple[PPOLearner, float]:
    base = RunConfig()
    ppo_config = dataclasses.replace(base.ppo, num_envs=num_envs, total_timesteps=10**9)
    torch.manual_seed(0)
    env = make_batched_env(base.env_id, num_envs)
    ppo = PPOLearner(build_agent(base, env.obs_dim, env.num_actions), env, ppo_config, 0)
    if compiled:  # as in a fresh process: graphs for this size alone, not dynamic-shaped ones
        torch._dynamo.reset()
    return ppo, compile_hot_loop(ppo) if compiled else 0.0


def steps_per_second(ppo: PPOLearner, iterations: int, rollout_only: bool) -> float:
    start = time.perf_counter()
    for _ in range(iterations):
        if rollout_only:
            ppo.collect_rollout()
        else:
            ppo.iterate()
    return iterations * ppo.config.batch_size / (time.perf_counter() - start)


def throughput(num_envs: int, rounds: int, iterations: int) -> dict:
    eager, _ = learner(num_envs, compiled=False)
    compiled, compile_seconds = learner(num_envs, compiled=True)
    for ppo in (eager, compiled):
        ppo.iterate()  # warm-up: allocations, the optimizer's state
    samples: dict[str, list[float]] = {}
    for _ in range(rounds):
        for kind, rollout_only in (("train", False), ("rollout", True)):
            for name, ppo in (("eager", eager), ("compiled", compiled)):
                sps = steps_per_second(ppo, iterations, rollout_only)
                samples.setdefault(f"{kind}_{name}", []).append(sps)
            ratio = samples[f"{kind}_compiled"][-1] / samples[f"{kind}_eager"][-1]
            samples.setdefault(f"{kind}_ratio", []).append(ratio)
    out = {k: statistics.median(v) for k, v in samples.items()}
    return out | {"num_envs": num_envs, "compile_seconds": compile_seconds, "samples": samples}


def solve(seed: int, compiled: bool, cache: str | None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        env = os.environ | ({"TORCHINDUCTOR_CACHE_DIR": cache} if cache else {})
        command = [sys.executable, str(ROOT / "train.py"), "--quiet", "--seed", str(seed)]
        command += ["--run-dir", f"{tmp}/run"] + (["--compile"] if compiled else [])
        subprocess.run(command, check=True, env=env, cwd=ROOT)
        summary = json.loads(Path(tmp, "run", "summary.json").read_text())
    keys = ("solved_at_steps", "solved_at_seconds", "compile_seconds", "steps_per_second")
    return {"seed": seed, "compiled": compiled} | {k: summary.get(k) for k in keys}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-envs", type=int, nargs="+", default=[64, 1024, 4096])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=3, help="per round and mode")
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument("--cold", action="store_true", help="compile with an empty cache")
    parser.add_argument("--out", type=Path, help="write every number here as JSON")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cold = tempfile.mkdtemp(prefix="inductor-cold-") if args.cold else None
    if cold:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = cold
    print(f"torch {torch.__version__}, CPU, 1 thread; inductor cache {'cold' if cold else 'warm'}")
    results: dict = {"throughput": [], "solve": []}
    print(
        "| envs | compile s | train eager | train compiled | ratio | rollout eager |"
        " rollout compiled | ratio |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for n in args.num_envs:
        r = throughput(n, args.rounds, args.iterations)
        results["throughput"].append(r)
        print(
            f"| {n:,} | {r['compile_seconds']:.0f} | {r['train_eager']:,.0f} |"
            f" {r['train_compiled']:,.0f} | {r['train_ratio']:.2f} | {r['rollout_eager']:,.0f} |"
            f" {r['rollout_compiled']:,.0f} | {r['rollout_ratio']:.2f} |",
            flush=True,
        )
    for seed in args.seeds:
        for compiled in (False, True):
            cache = tempfile.mkdtemp(prefix="inductor-cold-") if cold and compiled else None
            results["solve"].append(solve(seed, compiled, cache))
    print(
        "\n| mode | solved | median steps to solve | median s to solve | median compile s |"
        " median total s |"
    )
    print("|---|---|---|---|---|---|")
    for compiled in (False, True):
        runs = [r for r in results["solve"] if r["compiled"] == compiled]
        solved = [r for r in runs if r["solved_at_seconds"] is not None]
        compile_s = [r["compile_seconds"] or 0.0 for r in solved]
        totals = [r["solved_at_seconds"] + c for r, c in zip(solved, compile_s, strict=True)]

        def med(values: list, digits: int = 1) -> str:
            return f"{statistics.median(values):,.{digits}f}" if values else "-"

        print(
            f"| {'--compile' if compiled else 'eager'} | {len(solved)}/{len(runs)} |"
            f" {med([r['solved_at_steps'] for r in solved], 0)} |"
            f" {med([r['solved_at_seconds'] for r in solved])} | {med(compile_s)} | {med(totals)} |"
        )
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

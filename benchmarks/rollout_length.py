"""What a longer rollout costs, with and without ``--bptt-len``: seconds per PPO iteration.

One iteration is a rollout of ``num_steps`` steps in every env and the update over it; without
``--bptt-len`` the update replays each env's whole rollout step by step, with it chunks of
``bptt_len`` steps side by side. For each (num_steps, bptt_len) this builds the lstm's default
trainer with those two changed and times ``--repeats`` iterations after a warm-up (the median),
on one torch thread:

    python benchmarks/rollout_length.py --out benchmarks/results/rollout_length_cpu.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path

import torch
from provenance import provenance  # benchmarks/, beside this script

from envs import make_batched_env
from rlrnn.learning.hyperparams import default_config
from rlrnn.learning.ppo import PPOLearner
from rlrnn.runs.loading import build_agent

CASES = ((16, None), (16, 8), (128, None), (128, 32), (128, 16), (512, None), (512, 32))


def seconds_per_iteration(num_steps: int, bptt_len: int | None, repeats: int) -> float:
    base = default_config("lstm")
    ppo = dataclasses.replace(
        base.ppo, num_steps=num_steps, bptt_len=bptt_len, total_timesteps=10**9
    )
    config = dataclasses.replace(base, ppo=ppo)
    torch.manual_seed(0)
    env = make_batched_env(config.env_id, ppo.num_envs)
    trainer = PPOLearner(
        build_agent(config, env.obs_dim, env.num_actions, env.continuous), env, ppo, 0
    )
    trainer.iterate()  # warm-up
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        trainer.iterate()
        times.append(time.perf_counter() - began)
    env.close()
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, help="result file (JSON)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    source = provenance()
    rows = []
    for num_steps, bptt_len in CASES:
        seconds = seconds_per_iteration(num_steps, bptt_len, args.repeats)
        envs = default_config("lstm").ppo.num_envs
        rows.append(
            {"num_steps": num_steps, "bptt_len": bptt_len, "num_envs": envs, "seconds": seconds}
        )
        print(f"num_steps {num_steps:4} bptt_len {bptt_len!s:>4}: {seconds:.3f} s", flush=True)
    if args.out:
        result = {**source, "threads": 1, "repeats": args.repeats, "rows": rows}
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()

"""Training throughput of rlrnn's recurrent PPO (rollout + update) at growing numbers of envs.

    python benchmarks/throughput.py --device cuda --num-envs 1024 4096 16384
    python benchmarks/throughput.py --device cpu --num-envs 32 128 512 --compile
    python benchmarks/throughput.py --num-envs 64 1024 4096 --env PositionOnlyCartPole-v1 \
        NoisyPositionOnlyCartPoleEasy-v1 FlickeringPositionOnlyCartPole-v1

Reports env steps per second over ``--iterations`` iterations after one warm-up iteration,
with the default agent and PPO settings except the number of envs (and 4 minibatches). With
several ``--env`` the envs are measured side by side, one size at a time, in ``--rounds``
interleaved rounds (the median is reported), so that a busy machine slows them alike.
``--compile`` runs the hot loop through torch.compile (``rlrnn.learning.compiled``) and reports the
compile seconds apart.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path

import torch
from provenance import provenance

from envs import make_batched_env
from rlrnn.learning.compiled import compile_hot_loop
from rlrnn.learning.config import RunConfig
from rlrnn.learning.fields import resolve_device
from rlrnn.learning.ppo import PPOLearner
from rlrnn.runs.loading import build_agent


def measure(
    num_envs: int, device: torch.device, iterations: int, backend: str, env_id: str, compiled: bool
) -> tuple[float, float]:
    """Env steps per second, and the seconds spent compiling."""
    base = dataclasses.replace(RunConfig(), env_id=env_id)
    ppo_config = dataclasses.replace(
        base.ppo, num_envs=num_envs, num_minibatches=4, total_timesteps=10**9
    )
    config = dataclasses.replace(
        base, ppo=ppo_config, agent=dataclasses.replace(base.agent, backend=backend)
    )
    torch.manual_seed(0)
    env = make_batched_env(config.env_id, num_envs, device)
    agent = build_agent(config, env.obs_dim, env.num_actions, env.continuous).to(device)
    ppo = PPOLearner(agent, env, ppo_config, seed=0)
    compile_seconds = compile_hot_loop(ppo) if compiled else 0.0
    ppo.iterate()  # warm-up: allocations, cuDNN / kernel selection
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(iterations):
        stats, _ = ppo.iterate()
    stats["policy_loss"].item()  # wait for the device
    return iterations * ppo_config.batch_size / (time.perf_counter() - start), compile_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--num-envs", type=int, nargs="+", default=[32, 128, 512])
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--backend", choices=("custom", "torch"), nargs="+", default=["custom"])
    parser.add_argument("--env", nargs="+", default=["PositionOnlyCartPole-v1"], help="env ids")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds (median)")
    parser.add_argument("--compile", action="store_true", help="through torch.compile")
    parser.add_argument("--out", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args()
    rows = []
    device = resolve_device(args.device)
    torch.set_num_threads(1)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU, 1 thread"
    print(f"device: {name}; torch {torch.__version__}")
    print("| env | backend | envs | env steps / s | compile s |")
    print("|---|---|---|---|---|")
    for backend in args.backend:
        for n in args.num_envs:
            rounds: dict[str, list[tuple[float, float]]] = {env_id: [] for env_id in args.env}
            for _ in range(args.rounds):
                for env_id in args.env:
                    rounds[env_id].append(
                        measure(n, device, args.iterations, backend, env_id, args.compile)
                    )
            for env_id, runs in rounds.items():
                median = statistics.median(sps for sps, _ in runs)
                seconds = max(compile_s for _, compile_s in runs)
                print(
                    f"| {env_id} | {backend} | {n:,} | {median:,.0f} | {seconds:.1f} |", flush=True
                )
                rows.append({"env_id": env_id, "backend": backend, "num_envs": n})
                rows[-1] |= {"steps_per_second": median, "rounds": [sps for sps, _ in runs]}
    if args.out:
        args.out.write_text(json.dumps({"provenance": provenance(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()

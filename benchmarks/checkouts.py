"""Run rlrnn from a given checkout (this one, or a git worktree of an older commit) in a fresh
process, so two versions are timed side by side by one script.

    git worktree add /tmp/old HEAD~3
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

# Trains rlrnn's defaults in the checkout on PYTHONPATH; prints the summary's speed figures.
# With an agent and env (a checkout with default_config), that agent's defaults on that env, and
# the final weights' mean return over ``final_episodes`` fresh episodes when that is not 0.
RLRNN_RUN = """
import dataclasses, json, sys, tempfile, torch
from pathlib import Path
try:
    from rlrnn import RunConfig, train
except ImportError:  # a checkout from before the Python API
    from rlrnn.config import RunConfig
    from rlrnn.training import train
seed, max_steps, eval_interval, device, threads, *named = json.loads(sys.argv[1])
torch.set_num_threads(threads)
if named:
    from rlrnn import default_config, evaluate, load_agent
    agent, env_id, final_episodes = named
    base = default_config(agent, env_id)
else:
    base, final_episodes = RunConfig(), 0
config = dataclasses.replace(
    base, seed=seed, device=device, eval_interval=eval_interval,
    ppo=dataclasses.replace(base.ppo, total_timesteps=max_steps),
)
with tempfile.TemporaryDirectory() as tmp:
    summary = train(config, Path(tmp), show_progress=False)
    keys = ("solved_at_steps", "solved_at_seconds", "steps_per_second")
    result = {k: summary[k] for k in keys}
    if final_episodes:
        policy, _ = load_agent(Path(tmp), "final")
        result["final"] = evaluate(policy, config.env_id, final_episodes, seed=10_000).mean
print(json.dumps(result))
"""


# Times rollout + update iterations of the default agent at a number of envs (as
# benchmarks/throughput.py does), in wall-clock and in CPU seconds of this process: on a machine
# shared with other work the CPU time is the steadier measure.
THROUGHPUT_RUN = """
import dataclasses, json, sys, time, torch
from envs import make_batched_env
try:
    from rlrnn.learning.config import RunConfig
    from rlrnn.learning.ppo import PPOLearner
    from rlrnn.runs.loading import build_agent
except ImportError:
    try:  # a checkout from before rlrnn/learning/ and rlrnn/runs/
        from rlrnn.core.config import RunConfig
        from rlrnn.core.loading import build_agent
        from rlrnn.core.ppo import RecurrentPPO as PPOLearner
    except ImportError:  # a checkout from before rlrnn/core/
        from rlrnn.checkpoint import build_agent
        from rlrnn.config import RunConfig
        from rlrnn.ppo import RecurrentPPO as PPOLearner
num_envs, iterations = json.loads(sys.argv[1])
torch.set_num_threads(1)
base = RunConfig()
ppo_config = dataclasses.replace(
    base.ppo, num_envs=num_envs, num_minibatches=4, total_timesteps=10**9
)
torch.manual_seed(0)
env = make_batched_env(base.env_id, num_envs, "cpu")
agent = build_agent(base, env.obs_dim, env.num_actions)
ppo = PPOLearner(agent, env, ppo_config, seed=0)
ppo.iterate()  # warm-up
wall, cpu = time.perf_counter(), time.process_time()
for _ in range(iterations):
    ppo.iterate()
steps = iterations * ppo_config.batch_size
wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
print(json.dumps({"wall": steps / wall, "cpu": steps / cpu}))
"""


def run_in(checkout: Path, args: list[str]) -> str:
    """``python ARGS`` with ``checkout`` as the working directory and first on the path; its
    standard output."""
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    command = [sys.executable, *args]
    return subprocess.run(
        command, env=env, cwd=checkout, capture_output=True, text=True, check=True
    ).stdout


def run_rlrnn(
    checkout: Path,
    seed: int,
    max_steps: int,
    eval_interval: int,
    device: str,
    threads: int,
    named: tuple[str, str, int] | None = None,
) -> dict:
    """Train rlrnn's defaults from ``checkout`` in a fresh process; its speed figures.
    ``named``: (agent, env id, final episodes) for that agent's defaults on that env."""
    args = json.dumps([seed, max_steps, eval_interval, device, threads, *(named or ())])
    return json.loads(run_in(checkout, ["-c", RLRNN_RUN, args]).strip().splitlines()[-1])


def throughput(checkout: Path, num_envs: int, iterations: int) -> dict[str, float]:
    """Env steps per second of ``checkout``'s trainer at ``num_envs`` envs (CPU, 1 thread),
    by the wall clock (``wall``) and by this process's CPU time (``cpu``)."""
    args = json.dumps([num_envs, iterations])
    return json.loads(run_in(checkout, ["-c", THROUGHPUT_RUN, args]).strip().splitlines()[-1])

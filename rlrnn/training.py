"""A training run: the PPO loop plus what a user sees and keeps.

Writes ``<run_dir>/``: ``config.json``, ``final.pt`` and ``best.pt`` checkpoints, TensorBoard logs
in ``tb/``, ``summary.json`` and a ``learning_curve.png``.

Time is kept as *training seconds*: wall-clock time of rollouts and updates, without the periodic
evaluations (whose cost depends on how long the policy balances, not on how fast it learns).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from envs import make_batched_env
from rlrnn.checkpoint import atomic_write_text, build_agent, save_checkpoint
from rlrnn.config import RunConfig
from rlrnn.errors import UsageError
from rlrnn.evaluation import evaluate
from rlrnn.ppo import RecurrentPPO


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("device 'cuda' asked for, but CUDA is not available on this machine")
    return torch.device(name)


def prepare_run_dir(run_dir: Path) -> Path:
    """Create an empty run directory or explain in one line why it cannot be used."""
    run_dir = Path(run_dir)
    if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
        raise UsageError(f"run directory {run_dir} already exists and is not empty")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise UsageError(f"cannot write run directory {run_dir}: {e.strerror}") from None
    return run_dir


def train(config: RunConfig, run_dir: Path, show_progress: bool = True) -> dict[str, Any]:
    """Train ``config`` into ``run_dir`` (created if missing); returns the summary."""
    run_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    if device.type == "cpu":
        torch.set_num_threads(config.torch_threads)
    env = make_batched_env(config.env_id, config.ppo.num_envs, device)
    agent = build_agent(config, env.obs_dim, env.num_actions).to(device)
    ppo = RecurrentPPO(agent, env, config.ppo, config.seed)
    threshold = env.reward_threshold
    atomic_write_text(run_dir / "config.json", config.to_json())
    writer = SummaryWriter(str(run_dir / "tb"))
    writer.add_text("config", f"```\n{config.to_json()}\n```")

    evaluations: list[dict[str, float]] = []
    solved_at_steps = solved_at_seconds = None
    best_mean = -math.inf
    train_seconds = eval_seconds = 0.0
    next_eval = config.eval_interval
    recent_return = float("nan")
    wall_start = time.perf_counter()

    def run_evaluation() -> dict[str, float]:
        nonlocal best_mean, solved_at_steps, solved_at_seconds, eval_seconds
        start = time.perf_counter()
        result = evaluate(agent, config.env_id, config.eval_episodes, device=device)
        eval_seconds += time.perf_counter() - start
        record = {
            "env_steps": ppo.env_steps,
            "train_seconds": train_seconds,
            "mean_return": result.mean,
            "std_return": result.std,
        }
        evaluations.append(record)
        writer.add_scalar("eval/mean_return", result.mean, ppo.env_steps)
        writer.add_scalar("eval/std_return", result.std, ppo.env_steps)
        if result.mean >= best_mean:
            best_mean = result.mean
            save_checkpoint(run_dir / "best.pt", agent, config, {"env_steps": ppo.env_steps})
        if threshold is not None and solved_at_steps is None and result.mean >= threshold:
            solved_at_steps, solved_at_seconds = ppo.env_steps, train_seconds
        return record

    bar = tqdm(
        total=config.ppo.num_iterations * config.ppo.batch_size,
        unit="step",
        disable=not show_progress,
        dynamic_ncols=True,
        desc=f"{config.agent.agent} s{config.seed}",
    )
    for _ in range(config.ppo.num_iterations):
        start = time.perf_counter()
        stats, episodes = ppo.iterate()
        names = list(stats)
        values = torch.stack([*stats.values(), *episodes]).tolist()  # the one sync per iteration
        train_seconds += time.perf_counter() - start

        logged = dict(zip(names, values[: len(names)], strict=True))
        count, return_sum, length_sum = values[len(names) :]
        step = ppo.env_steps
        for key, value in logged.items():
            prefix = "charts" if key == "learning_rate" else "losses"
            writer.add_scalar(f"{prefix}/{key}", value, step)
        sps = step / max(train_seconds, 1e-9)
        writer.add_scalar("charts/SPS", sps, step)
        if count > 0:
            recent_return = return_sum / count
            writer.add_scalar("charts/episodic_return", recent_return, step)
            writer.add_scalar("charts/episodic_length", length_sum / count, step)
        if config.eval_interval and step >= next_eval:
            run_evaluation()
            while next_eval <= step:
                next_eval += config.eval_interval
        postfix = {"return": f"{recent_return:.1f}", "sps": f"{sps:,.0f}"}
        if evaluations:
            postfix["eval"] = f"{evaluations[-1]['mean_return']:.1f}"
        bar.set_postfix(postfix, refresh=False)
        bar.update(config.ppo.batch_size)
    bar.close()

    final = (
        run_evaluation()
        if not evaluations or evaluations[-1]["env_steps"] != ppo.env_steps
        else evaluations[-1]
    )
    save_checkpoint(run_dir / "final.pt", agent, config, {"env_steps": ppo.env_steps})
    writer.close()
    summary = {
        "env_id": config.env_id,
        "agent": config.agent.agent,
        "seed": config.seed,
        "device": str(device),
        "parameters": sum(p.numel() for p in agent.parameters()),
        "env_steps": ppo.env_steps,
        "iterations": ppo.iteration,
        "train_seconds": train_seconds,
        "eval_seconds": eval_seconds,
        "wall_seconds": time.perf_counter() - wall_start,
        "steps_per_second": ppo.env_steps / max(train_seconds, 1e-9),
        "reward_threshold": threshold,
        "solved_at_steps": solved_at_steps,
        "solved_at_seconds": solved_at_seconds,
        "final_eval_mean": final["mean_return"],
        "final_eval_std": final["std_return"],
        "best_eval_mean": best_mean,
        "evaluations": evaluations,
    }
    atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2))
    return summary

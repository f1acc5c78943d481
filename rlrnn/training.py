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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from envs import make_batched_env
from rlrnn.checkpoint import atomic_write_text, build_agent, save_checkpoint
from rlrnn.config import SB3_AGENTS, RunConfig
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


class EvaluationLog:
    """Periodic deterministic evaluations of one run: TensorBoard scalars, the best checkpoint
    (written by ``save_best(path, env_steps)``) and the first time the mean reached the env's
    reward threshold."""

    def __init__(
        self,
        config: RunConfig,
        run_dir: Path,
        policy: Any,
        writer: SummaryWriter,
        save_best: Callable[[Path, int], None],
        threshold: float | None,
        device: torch.device | str = "cpu",
    ) -> None:
        self.config, self.run_dir, self.policy, self.writer = config, run_dir, policy, writer
        self.save_best, self.threshold, self.device = save_best, threshold, device
        self.records: list[dict[str, float]] = []
        self.best_mean = -math.inf
        self.solved_at_steps: int | None = None
        self.solved_at_seconds: float | None = None
        self.seconds = 0.0

    def run(self, env_steps: int, train_seconds: float) -> dict[str, float]:
        start = time.perf_counter()
        result = evaluate(
            self.policy, self.config.env_id, self.config.eval_episodes, device=self.device
        )
        record = {
            "env_steps": env_steps,
            "train_seconds": train_seconds,
            "mean_return": result.mean,
            "std_return": result.std,
        }
        self.records.append(record)
        self.writer.add_scalar("eval/mean_return", result.mean, env_steps)
        self.writer.add_scalar("eval/std_return", result.std, env_steps)
        if result.mean >= self.best_mean:
            self.best_mean = result.mean
            self.save_best(self.run_dir / "best.pt", env_steps)
        reached = self.threshold is not None and result.mean >= self.threshold
        if reached and self.solved_at_steps is None:
            self.solved_at_steps, self.solved_at_seconds = env_steps, train_seconds
        self.seconds += time.perf_counter() - start
        return record

    def final(self, env_steps: int, train_seconds: float) -> dict[str, float]:
        """The evaluation of the final weights (made now unless the last one was at this step)."""
        if self.records and self.records[-1]["env_steps"] == env_steps:
            return self.records[-1]
        return self.run(env_steps, train_seconds)

    def summary(self, **fields: Any) -> dict[str, Any]:
        """The run's ``summary.json``: ``fields`` and the evaluation results."""
        final = self.records[-1]
        return {
            "env_id": self.config.env_id,
            "agent": self.config.agent.agent,
            "seed": self.config.seed,
            **fields,
            "eval_seconds": self.seconds,
            "steps_per_second": fields["env_steps"] / max(fields["train_seconds"], 1e-9),
            "reward_threshold": self.threshold,
            "solved_at_steps": self.solved_at_steps,
            "solved_at_seconds": self.solved_at_seconds,
            "final_eval_mean": final["mean_return"],
            "final_eval_std": final["std_return"],
            "best_eval_mean": self.best_mean,
            "evaluations": self.records,
        }


def progress_bar(config: RunConfig, total_steps: int, show: bool) -> tqdm:
    return tqdm(
        total=total_steps,
        unit="step",
        disable=not show,
        dynamic_ncols=True,
        desc=f"{config.agent.agent} s{config.seed}",
    )


def train(config: RunConfig, run_dir: Path, show_progress: bool = True) -> dict[str, Any]:
    """Train ``config`` into ``run_dir`` (created if missing); returns the summary."""
    if config.agent.agent in SB3_AGENTS:
        from rlrnn.sb3 import train_sb3  # SB3 is imported only when needed

        return train_sb3(config, run_dir, show_progress)
    run_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    if device.type == "cpu":
        torch.set_num_threads(config.torch_threads)
    env = make_batched_env(config.env_id, config.ppo.num_envs, device)
    agent = build_agent(config, env.obs_dim, env.num_actions).to(device)
    ppo = RecurrentPPO(agent, env, config.ppo, config.seed)
    atomic_write_text(run_dir / "config.json", config.to_json())
    writer = SummaryWriter(str(run_dir / "tb"))
    writer.add_text("config", f"```\n{config.to_json()}\n```")

    def save_best(path: Path, env_steps: int) -> None:
        save_checkpoint(path, agent, config, {"env_steps": env_steps})

    evals = EvaluationLog(config, run_dir, agent, writer, save_best, env.reward_threshold, device)
    train_seconds = 0.0
    next_eval = config.eval_interval
    recent_return = float("nan")
    wall_start = time.perf_counter()
    bar = progress_bar(config, config.ppo.num_iterations * config.ppo.batch_size, show_progress)
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
            evals.run(step, train_seconds)
            while next_eval <= step:
                next_eval += config.eval_interval
        postfix = {"return": f"{recent_return:.1f}", "sps": f"{sps:,.0f}"}
        if evals.records:
            postfix["eval"] = f"{evals.records[-1]['mean_return']:.1f}"
        bar.set_postfix(postfix, refresh=False)
        bar.update(config.ppo.batch_size)
    bar.close()

    evals.final(ppo.env_steps, train_seconds)
    save_checkpoint(run_dir / "final.pt", agent, config, {"env_steps": ppo.env_steps})
    writer.close()
    summary = evals.summary(
        device=str(device),
        parameters=sum(p.numel() for p in agent.parameters()),
        env_steps=ppo.env_steps,
        iterations=ppo.iteration,
        train_seconds=train_seconds,
        wall_seconds=time.perf_counter() - wall_start,
    )
    atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2))
    return summary

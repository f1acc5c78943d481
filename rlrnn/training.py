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

from agents import ActorCritic
from envs import make_batched_env
from rlrnn.checkpoint import (
    build_agent,
    env_signature,
    read_checkpoint,
    save_checkpoint,
    write_checkpoint,
)
from rlrnn.config import SB3_AGENTS, RunConfig, config_differences
from rlrnn.errors import TrainingDiverged, TrainingInterrupted, UsageError
from rlrnn.evaluation import evaluate
from rlrnn.files import atomic_write_text, make_writable_dir
from rlrnn.ppo import RecurrentPPO
from rlrnn.safety import DivergenceGuard, StopSignals, all_finite


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
    return make_writable_dir(run_dir, "run directory")


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

    def state_dict(self) -> dict[str, Any]:
        keys = ("records", "best_mean", "solved_at_steps", "solved_at_seconds", "seconds")
        return {k: getattr(self, k) for k in keys}

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        for key, value in saved.items():
            setattr(self, key, value)

    def final(self, env_steps: int, train_seconds: float) -> dict[str, float]:
        """The evaluation of the final weights (made now unless the last one was at this step)."""
        if self.records and self.records[-1]["env_steps"] == env_steps:
            return self.records[-1]
        return self.run(env_steps, train_seconds)

    def summary(self, **fields: Any) -> dict[str, Any]:
        """The run's ``summary.json``: ``fields`` and the evaluation results."""
        final = self.records[-1] if self.records else {"mean_return": None, "std_return": None}
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


# Called with each periodic evaluation record; returning False ends the run there.
EvaluationHook = Callable[[dict[str, float]], bool]


def train(
    config: RunConfig,
    run_dir: Path,
    show_progress: bool = True,
    resume: bool = False,
    on_evaluation: EvaluationHook | None = None,
) -> dict[str, Any]:
    """Train ``config`` into ``run_dir`` (created if missing); returns the summary.

    ``resume`` continues the run saved in ``run_dir/last.pt``: on a CPU, interrupting and
    resuming gives the same weights as an uninterrupted run. SIGINT / SIGTERM stop the run after
    the current update with ``last.pt`` and ``summary.json`` written (:class:`TrainingInterrupted`).
    ``on_evaluation`` sees every periodic evaluation (a tuner reports it and may prune the run):
    when it returns False the run ends there with ``"status": "stopped"``.
    """
    if config.agent.agent in SB3_AGENTS:
        if resume:
            raise UsageError(f"--resume is for rlrnn's agents; {config.agent.agent} runs restart")
        from rlrnn.sb3 import train_sb3  # SB3 is imported only when needed

        return train_sb3(config, run_dir, show_progress, on_evaluation)
    run_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    if device.type == "cpu":
        torch.set_num_threads(config.torch_threads)
    env = make_batched_env(config.env_id, config.ppo.num_envs, device)
    agent = build_agent(config, env.obs_dim, env.num_actions).to(device)
    ppo = RecurrentPPO(agent, env, config.ppo, config.seed)

    def save_best(path: Path, env_steps: int) -> None:
        save_checkpoint(path, agent, config, {"env_steps": env_steps})

    writer = SummaryWriter(str(run_dir / "tb"))  # a resumed run appends a new event file
    evals = EvaluationLog(config, run_dir, agent, writer, save_best, env.reward_threshold, device)
    loop = {"train_seconds": 0.0, "wall_seconds": 0.0, "recent_return": math.nan}
    loop |= {"next_eval": config.eval_interval, "restores": 0}
    if resume:
        for leftover in run_dir.glob(".*.tmp*"):  # half-written files of a killed process
            leftover.unlink()
        loop |= load_training_state(run_dir / LAST, agent, ppo, evals)
    atomic_write_text(run_dir / "config.json", config.to_json())  # a resume may extend the run
    writer.add_text("config", f"```\n{config.to_json()}\n```")
    guard = DivergenceGuard(ppo)
    guard.restores = loop["restores"]
    next_checkpoint = ppo.env_steps + config.checkpoint_interval
    wall_start = time.perf_counter() - loop["wall_seconds"]
    bar = progress_bar(config, config.ppo.num_iterations * config.ppo.batch_size, show_progress)
    bar.update(ppo.env_steps)

    def save_last(status: str) -> None:
        loop.update(wall_seconds=time.perf_counter() - wall_start, restores=guard.restores)
        save_training_state(run_dir / LAST, agent, config, ppo, evals, loop, status)

    def finish(status: str) -> dict[str, Any]:
        save_last(status)
        writer.close()
        bar.close()
        summary = evals.summary(
            status=status,
            device=str(device),
            parameters=sum(p.numel() for p in agent.parameters()),
            env_steps=ppo.env_steps,
            iterations=ppo.iteration,
            train_seconds=loop["train_seconds"],
            wall_seconds=time.perf_counter() - wall_start,
            divergence_restores=guard.restores,
        )
        atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2))
        return summary

    with StopSignals() as stop:
        while ppo.iteration < config.ppo.num_iterations:
            start = time.perf_counter()
            stats, episodes = ppo.iterate()
            finite = all_finite(stats, list(agent.parameters()))
            names = list(stats)
            values = torch.stack([*stats.values(), *episodes, finite]).tolist()  # the one sync
            loop["train_seconds"] += time.perf_counter() - start
            step = ppo.env_steps
            try:
                kept = guard.check(bool(values[-1]), step)
            except TrainingDiverged:
                finish("diverged")
                raise
            if not kept:
                writer.add_scalar("charts/divergence_restores", guard.restores, step)
                bar.write(f"step {step:,}: non-finite update rolled back to the last good state")
            else:
                logged = dict(zip(names, values[: len(names)], strict=True))
                _log_iteration(writer, logged, values, step, loop)
            if config.eval_interval and step >= loop["next_eval"] and kept:
                record = evals.run(step, loop["train_seconds"])
                while loop["next_eval"] <= step:
                    loop["next_eval"] += config.eval_interval
                if on_evaluation is not None and not on_evaluation(record):
                    return finish("stopped")
            sps = step / max(loop["train_seconds"], 1e-9)
            postfix = {"return": f"{loop['recent_return']:.1f}", "sps": f"{sps:,.0f}"}
            if evals.records:
                postfix["eval"] = f"{evals.records[-1]['mean_return']:.1f}"
            bar.set_postfix(postfix, refresh=False)
            bar.update(config.ppo.batch_size)
            if stop.requested is not None:
                finish("interrupted")
                raise TrainingInterrupted(
                    f"stopped by {stop.requested.name} at {step:,} env steps; saved {run_dir}/"
                    f"{LAST} and summary.json. Resume: python train.py --resume {run_dir}",
                    stop.requested.value,
                )
            if config.checkpoint_interval and step >= next_checkpoint:
                save_last("running")
                next_checkpoint = step + config.checkpoint_interval

    evals.final(ppo.env_steps, loop["train_seconds"])
    save_checkpoint(run_dir / "final.pt", agent, config, {"env_steps": ppo.env_steps})
    return finish("finished")


def _log_iteration(
    writer: SummaryWriter, logged: dict[str, float], values: list[float], step: int, loop: dict
) -> None:
    """TensorBoard scalars of one kept iteration; ``values`` ends with the episode statistics."""
    count, return_sum, length_sum = values[len(logged) : len(logged) + 3]
    for key, value in logged.items():
        prefix = "charts" if key in ("learning_rate", "epochs") else "losses"
        writer.add_scalar(f"{prefix}/{key}", value, step)
    writer.add_scalar("charts/SPS", step / max(loop["train_seconds"], 1e-9), step)
    if count > 0:
        loop["recent_return"] = return_sum / count
        writer.add_scalar("charts/episodic_return", loop["recent_return"], step)
        writer.add_scalar("charts/episodic_length", length_sum / count, step)


# ---------------------------------------------------------------- resuming

LAST = "last.pt"  # the resume checkpoint: weights plus the whole training state
# What a resumed run may change; anything else would make it another run.
RESUMABLE_CHANGES = ("ppo.total_timesteps", "ppo.learning_rate", "ppo.max_grad_norm", "device")


def saved_run(run_dir: Path) -> tuple[RunConfig, dict[str, Any]]:
    """The config and status of the run to resume in ``run_dir``."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UsageError(f"--resume {run_dir}: no such run folder")
    if not (run_dir / LAST).is_file():
        raise UsageError(
            f"--resume {run_dir}: no {LAST} in it (the run stopped before its first checkpoint,"
            " or it is an SB3 run); start it again instead"
        )
    payload = read_checkpoint(run_dir / LAST)
    config = RunConfig.from_dict(json.loads(payload["config"]))
    return config, json.loads(payload.get("extra", "{}"))


def check_resume(
    run_dir: Path, saved: RunConfig, status: dict[str, Any], wanted: RunConfig
) -> None:
    """Refuse a resume that would change what the run is, or that has nothing left to do."""
    changes = config_differences(saved.to_dict(), wanted.to_dict())
    fixed = [c for c in changes if c.split(" ")[0] not in RESUMABLE_CHANGES]
    if fixed:
        raise UsageError(
            f"--resume {run_dir} keeps the run's config, but the command changes"
            f" {', '.join(fixed)}; only {', '.join(RESUMABLE_CHANGES)} may change"
        )
    done = status.get("env_steps", 0)
    if done >= wanted.ppo.num_iterations * wanted.ppo.batch_size:
        raise UsageError(
            f"--resume {run_dir}: the run already has {done:,} of its"
            f" {wanted.ppo.total_timesteps:,} env steps; pass a larger --total-timesteps"
        )


def save_training_state(
    path: Path,
    agent: ActorCritic,
    config: RunConfig,
    ppo: RecurrentPPO,
    evals: EvaluationLog,
    loop: dict[str, Any],
    status: str,
) -> None:
    """``last.pt``: an ordinary checkpoint (it evaluates like best.pt) plus what resuming needs."""
    trainer = {"ppo": ppo.state_dict(), "loop": json.dumps(loop), "evals": evals.state_dict()}
    trainer["evals"] = json.dumps(trainer["evals"])
    extra = {"env_steps": ppo.env_steps, "status": status}
    env = env_signature(agent.obs_dim, agent.num_actions, config.env_id)
    write_checkpoint(path, config, env, agent.state_dict(), extra, trainer=trainer)


def load_training_state(
    path: Path, agent: ActorCritic, ppo: RecurrentPPO, evals: EvaluationLog
) -> dict[str, Any]:
    """Put the state saved in ``path`` back; returns the loop counters."""
    payload = read_checkpoint(path)
    if "trainer" not in payload:
        raise UsageError(f"{path} holds weights only, no training state to resume")
    agent.load_state_dict(payload["model"])
    trainer = payload["trainer"]
    ppo.load_state_dict(trainer["ppo"])
    evals.load_state_dict(json.loads(trainer["evals"]))
    return json.loads(trainer["loop"])

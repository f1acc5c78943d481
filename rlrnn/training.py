"""A training run: the PPO loop plus what a user sees and keeps.

Writes ``<run_dir>/``: ``config.json``, ``final.pt`` and ``best.pt`` checkpoints, TensorBoard logs
in ``tb/``, ``summary.json`` and a ``learning_curve.png``.

Time is kept as *training seconds*: wall-clock time of rollouts and updates, without the periodic
evaluations (whose cost depends on how long the policy balances, not on how fast it learns).
"""

from __future__ import annotations

import json
import math
import shlex
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
    checkpoint_config,
    env_signature,
    read_checkpoint,
    save_checkpoint,
    write_checkpoint,
)
from rlrnn.config import SB3_AGENTS, RunConfig, config_differences
from rlrnn.errors import TrainingDiverged, TrainingInterrupted, UsageError
from rlrnn.evaluation import evaluate
from rlrnn.files import atomic_write_text
from rlrnn.ppo import RecurrentPPO
from rlrnn.rundir import RunLock, claim_run_dir, temp_files
from rlrnn.safety import DivergenceGuard, StopSignals, all_finite
from rlrnn.schedule import checkpoint_every, eval_every


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("device 'cuda' asked for, but CUDA is not available on this machine")
    return torch.device(name)


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

    STATE = ("records", "best_mean", "solved_at_steps", "solved_at_seconds", "seconds")

    def state_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.STATE}

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
    The run holds the folder's lock throughout (:class:`rlrnn.rundir.RunLock`): a second writer
    is refused. ``on_evaluation`` sees every periodic evaluation (a tuner reports it and may
    prune the run): when it returns False the run ends there with ``"status": "stopped"``.
    """
    run_dir = claim_run_dir(run_dir)
    with RunLock(run_dir):
        return _train_locked(config, run_dir, show_progress, resume, on_evaluation)


def _train_locked(
    config: RunConfig,
    run_dir: Path,
    show_progress: bool,
    resume: bool,
    on_evaluation: EvaluationHook | None,
) -> dict[str, Any]:
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

    loop = {"train_seconds": 0.0, "wall_seconds": 0.0, "recent_return": math.nan}
    eval_steps, checkpoint_steps = eval_every(config), checkpoint_every(config)
    loop |= {"next_eval": eval_steps, "restores": 0, "compile_seconds": 0.0}
    saved_evals = None
    if resume:
        saved_loop, saved_evals = load_training_state(run_dir / LAST, agent, ppo)
        loop |= saved_loop
        for leftover in temp_files(run_dir):  # half-written files of a killed process
            leftover.unlink()
    # Made after the checks above, so a refused resume leaves no new event file behind.
    writer = SummaryWriter(str(run_dir / "tb"))  # a resumed run appends a new event file
    evals = EvaluationLog(config, run_dir, agent, writer, save_best, env.reward_threshold, device)
    if saved_evals is not None:
        evals.load_state_dict(saved_evals)
    atomic_write_text(run_dir / "config.json", config.to_json())  # a resume may extend the run
    writer.add_text("config", f"```\n{config.to_json()}\n```")
    guard = DivergenceGuard(ppo)
    guard.restores = loop["restores"]
    next_checkpoint = ppo.env_steps + checkpoint_steps
    wall_start = time.perf_counter() - loop["wall_seconds"]
    if config.compile:
        from rlrnn.compiled import compile_hot_loop  # imports torch's compiler only when asked

        loop["compile_seconds"] += compile_hot_loop(ppo)
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
            compile_seconds=loop["compile_seconds"],
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
            if eval_steps and step >= loop["next_eval"] and kept:
                record = evals.run(step, loop["train_seconds"])
                while loop["next_eval"] <= step:
                    loop["next_eval"] += eval_steps
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
                    f"{LAST} and summary.json. Resume: python train.py --resume"
                    f" {shlex.quote(str(run_dir))}",
                    stop.requested.value,
                )
            if checkpoint_steps and step >= next_checkpoint:
                save_last("running")
                next_checkpoint = step + checkpoint_steps

    evals.final(ppo.env_steps, loop["train_seconds"])
    save_checkpoint(run_dir / "final.pt", agent, config, {"env_steps": ppo.env_steps})
    return finish("finished")


def _log_iteration(
    writer: SummaryWriter, logged: dict[str, float], values: list[float], step: int, loop: dict
) -> None:
    """TensorBoard scalars of one kept iteration; ``values`` ends with the episode statistics."""
    count, return_sum, length_sum = values[len(logged) : len(logged) + 3]
    for key, value in logged.items():
        if "/" not in key:  # PPO's own statistics; diagnostics come with their tag
            key = f"{'charts' if key in ('learning_rate', 'epochs') else 'losses'}/{key}"
        writer.add_scalar(key, value, step)
    writer.add_scalar("charts/SPS", step / max(loop["train_seconds"], 1e-9), step)
    if count > 0:
        loop["recent_return"] = return_sum / count
        writer.add_scalar("charts/episodic_return", loop["recent_return"], step)
        writer.add_scalar("charts/episodic_length", length_sum / count, step)


# ---------------------------------------------------------------- resuming

LAST = "last.pt"  # the resume checkpoint: weights plus the whole training state
# What a resumed run may change; anything else would make it another run.
RESUMABLE_CHANGES = (
    "ppo.total_timesteps",
    "ppo.learning_rate",
    "ppo.max_grad_norm",
    "device",
    "compile",
)


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
    config = checkpoint_config(payload, run_dir / LAST)
    try:
        status = json.loads(payload.get("extra", "{}"))
        steps = status.get("env_steps", 0)
    except (TypeError, ValueError, AttributeError):
        status, steps = None, None
    if not isinstance(steps, int):
        raise UsageError(f"cannot resume from {run_dir / LAST}: its status is damaged")
    return config, status


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
    path: Path, agent: ActorCritic, ppo: RecurrentPPO
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Put the state saved in ``path`` back into ``agent`` and ``ppo``; returns the loop
    counters and the evaluation log's state. A damaged state is a UsageError, found before
    anything is written."""
    payload = read_checkpoint(path)
    if "trainer" not in payload:
        raise UsageError(f"{path} holds weights only, no training state to resume")
    healthy = ppo.state_dict()  # what a state of this run looks like
    try:
        trainer = payload["trainer"]
        problem = _state_problem(healthy, trainer["ppo"], "")
        problem = problem or _optimizer_problem(agent, trainer["ppo"]["optimizer"])
        if problem is None:
            agent.load_state_dict(payload["model"])
            ppo.load_state_dict(trainer["ppo"])
            loop, evals = json.loads(trainer["loop"]), json.loads(trainer["evals"])
            problem = _log_problem(loop, evals)
    except (KeyError, ValueError, RuntimeError, TypeError, AttributeError, IndexError) as e:
        problem = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if problem is not None:
        raise UsageError(
            f"cannot resume from {path}: its training state is damaged ({problem});"
            " start the run again"
        )
    return loop, evals


def _state_problem(healthy: Any, saved: Any, where: str) -> str | None:
    """What in ``saved`` differs in structure, shape or type from ``healthy`` (None: nothing);
    the optimizer's state is checked against the parameters instead."""
    if isinstance(healthy, torch.Tensor):
        ok = isinstance(saved, torch.Tensor) and saved.shape == healthy.shape
        wrong = f"{where.rstrip('.') or 'state'} is wrong"
        return None if ok and saved.dtype == healthy.dtype else wrong
    if isinstance(healthy, dict):
        optional = {"cuda_rng"}  # present only on a GPU; a resume may change the device
        if not isinstance(saved, dict) or set(saved) - optional != set(healthy) - optional:
            return f"{where.rstrip('.') or 'state'} has other entries"
        for key in set(healthy) - optional:
            if key != "optimizer":
                problem = _state_problem(healthy[key], saved[key], f"{where}{key}.")
                if problem:
                    return problem
        return None
    if isinstance(healthy, int | float) and not isinstance(saved, int | float):
        return f"{where.rstrip('.')} is not a number"
    return None


def _optimizer_problem(agent: ActorCritic, saved: Any) -> str | None:
    """Adam's saved moments must have the shapes of the parameters they belong to."""
    params = list(agent.parameters())
    state = saved.get("state", {}) if isinstance(saved, dict) else None
    if not isinstance(state, dict):
        return "optimizer state is wrong"
    for index, moments in state.items():
        if not isinstance(index, int) or not 0 <= index < len(params):
            return "optimizer state names a parameter the agent does not have"
        for name in ("exp_avg", "exp_avg_sq"):
            value = moments.get(name) if isinstance(moments, dict) else None
            if not isinstance(value, torch.Tensor) or value.shape != params[index].shape:
                return f"optimizer {name} of parameter {index} is wrong"
    return None


def _log_problem(loop: Any, evals: Any) -> str | None:
    def number(value: Any, optional: bool = False) -> bool:
        return (optional and value is None) or (
            isinstance(value, int | float) and not isinstance(value, bool)
        )

    if not isinstance(loop, dict) or not all(number(v) for v in loop.values()):
        return "loop counters are not numbers"
    if not isinstance(evals, dict) or set(evals) != set(EvaluationLog.STATE):
        return "evaluation log has other entries"
    records = evals["records"]
    fields = ("env_steps", "train_seconds", "mean_return", "std_return")
    if not isinstance(records, list) or not all(
        isinstance(r, dict) and all(number(r.get(k)) for k in fields) for r in records
    ):
        return "evaluation records are wrong"
    if not (number(evals["best_mean"]) and number(evals["seconds"])):
        return "evaluation log is wrong"
    if not (number(evals["solved_at_steps"], True) and number(evals["solved_at_seconds"], True)):
        return "evaluation log is wrong"
    return None

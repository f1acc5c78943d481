"""Resuming a run: its resume checkpoint (``RunFolder.last``: an ordinary checkpoint plus the
whole training state), what a resume may change, and the checks that find a damaged state
before anything is written. Every refusal is a :class:`rlrnn.errors.ResumeRefused`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from agents import ActorCritic
from rlrnn.errors import ResumeRefused, UsageError
from rlrnn.learning.config import RunConfig
from rlrnn.learning.fields import config_differences
from rlrnn.learning.ppo import PPOLearner
from rlrnn.runs.checkpoint import (
    checkpoint_config,
    env_signature,
    read_checkpoint,
    write_checkpoint,
)
from rlrnn.runs.folder import RunFolder
from rlrnn.runs.runlog import EvaluationLog

# What a resumed run may change; anything else would make it another run.
RESUMABLE_CHANGES = (
    "ppo.total_timesteps",
    "ppo.learning_rate",
    "ppo.max_grad_norm",
    "device",
    "compile",
)


def saved_run(run_dir: Path | str) -> tuple[RunConfig, dict[str, Any]]:
    """The config and status of the run to resume in ``run_dir``."""
    folder = RunFolder(run_dir)
    if not folder.path.is_dir():
        raise ResumeRefused(f"cannot resume {folder.path}: no such run folder")
    if not folder.last.is_file():
        raise ResumeRefused(
            f"cannot resume {folder.path}: no {folder.last.name} in it (the run stopped before its"
            " first checkpoint, or it is an SB3 run); start it again instead"
        )
    try:
        payload = read_checkpoint(folder.last)
        config = checkpoint_config(payload, folder.last)
    except UsageError as e:
        raise ResumeRefused(f"cannot resume {folder.path}: {e}") from None
    try:
        status = json.loads(payload.get("extra", "{}"))
        steps = status.get("env_steps", 0)
    except (TypeError, ValueError, AttributeError, RecursionError):
        status, steps = None, None
    if not isinstance(steps, int):
        raise ResumeRefused(f"cannot resume from {folder.last}: its status is damaged")
    return config, status


def check_resume(
    run_dir: Path | str, saved: RunConfig, status: dict[str, Any], wanted: RunConfig
) -> None:
    """Refuse a resume that would change what the run is, or that has nothing left to do."""
    changes = config_differences(saved.to_dict(), wanted.to_dict())
    fixed = [c for c in changes if c.split(" ")[0] not in RESUMABLE_CHANGES]
    if fixed:
        raise ResumeRefused(
            f"resuming {run_dir} keeps the run's config, but the config given changes"
            f" {', '.join(fixed)}; only {', '.join(RESUMABLE_CHANGES)} may change"
        )
    done = status.get("env_steps", 0)
    if done >= wanted.ppo.num_iterations * wanted.ppo.batch_size:
        raise ResumeRefused(
            f"cannot resume {run_dir}: the run already has {done:,} of its"
            f" {wanted.ppo.total_timesteps:,} env steps; pass a larger total_timesteps",
            fields=("total_timesteps",),
        )


def save_training_state(
    path: Path,
    agent: ActorCritic,
    config: RunConfig,
    ppo: PPOLearner,
    evals: EvaluationLog,
    loop: dict[str, Any],
    status: str,
) -> None:
    """The resume checkpoint: an ordinary checkpoint (it evaluates like the best one) plus what
    resuming needs."""
    trainer = {"ppo": ppo.state_dict(), "loop": json.dumps(loop), "evals": evals.state_dict()}
    trainer["evals"] = json.dumps(trainer["evals"])
    extra = {"env_steps": ppo.env_steps, "status": status}
    env = env_signature(agent.obs_dim, agent.num_actions, config.env_id, agent.continuous)
    write_checkpoint(path, config, env, agent.state_dict(), extra, trainer=trainer)


def load_training_state(
    path: Path, agent: ActorCritic, ppo: PPOLearner
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Put the state saved in ``path`` back into ``agent`` and ``ppo``; returns the loop
    counters and the evaluation log's state. A damaged state is refused (ResumeRefused) before
    anything is written."""
    payload = read_checkpoint(path)
    if "trainer" not in payload:
        raise ResumeRefused(f"{path} holds weights only, no training state to resume")
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
        # RuntimeError covers RecursionError: JSON nested too deeply
        problem = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if problem is not None:
        raise ResumeRefused(
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

"""What a training run keeps and shows besides its weights: the log of its periodic evaluations
(scores, the best checkpoint, when it was first solved) and its progress bar. rlrnn's trainer
(:mod:`rlrnn.runs.training`) and the SB3 reference agents' (:mod:`rlrnn.runs.sb3`) share both.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from tqdm import tqdm

from rlrnn.learning.config import RunConfig
from rlrnn.learning.evaluation import evaluate

if TYPE_CHECKING:  # TensorBoard's writer: imported by the loops that make one
    from torch.utils.tensorboard import SummaryWriter

# Called with each periodic evaluation record; returning False ends the run there.
EvaluationHook = Callable[[dict[str, float]], bool]


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

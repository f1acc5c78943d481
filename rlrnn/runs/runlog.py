"""What a training run keeps besides its weights: the log of its periodic evaluations (scores,
the best checkpoint, when it was first solved) and the summary made from it. rlrnn's trainer
(:mod:`rlrnn.runs.training`) and the SB3 reference agents' (:mod:`rlrnn.runs.sb3`) share it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch

from rlrnn.learning.config import RunConfig
from rlrnn.learning.evaluation import evaluate
from rlrnn.runs.logger import RunLogger

# Called with each periodic evaluation record; returning False ends the run there.
EvaluationHook = Callable[[dict[str, float]], bool]


class EvaluationLog:
    """Periodic deterministic evaluations of one run: handed to the run's logger, the best
    checkpoint (written by ``save_best(env_steps)``) and the first time the mean reached the
    env's reward threshold."""

    def __init__(
        self,
        config: RunConfig,
        policy: Any,
        log: RunLogger,
        save_best: Callable[[int], None],
        threshold: float | None,
        device: torch.device | str = "cpu",
    ) -> None:
        self.config, self.policy, self.log = config, policy, log
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
        self.log.evaluation(record)
        if result.mean >= self.best_mean:
            self.best_mean = result.mean
            self.save_best(env_steps)
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
        """The run's summary (``RunFolder.summary``): ``fields`` and the evaluation results."""
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

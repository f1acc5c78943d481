"""The learner with what a run keeps around it: clocks, the divergence guard, the periodic
evaluations, and the resume checkpoint (``RunFolder.last``).

:class:`Trainer` is what :func:`rlrnn.runs.training.train`'s loop steps. Time is kept as
*training seconds*: wall-clock time of rollouts and updates, without the periodic evaluations
(whose cost depends on how long the policy balances, not on how fast it learns).
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch

from envs import make_batched_env
from rlrnn.learning.config import RunConfig
from rlrnn.learning.fields import resolve_device
from rlrnn.learning.ppo import PPOLearner
from rlrnn.runs.checkpoint import save_checkpoint
from rlrnn.runs.folder import RunFolder, temp_files
from rlrnn.runs.loading import build_agent
from rlrnn.runs.logger import RunLogger
from rlrnn.runs.resume import load_training_state, save_training_state
from rlrnn.runs.runlog import EvaluationLog
from rlrnn.runs.safety import DivergenceGuard, all_finite
from rlrnn.runs.schedule import checkpoint_every, eval_every


class Trainer:
    """A run of rlrnn's PPO in ``folder``: built from ``config``, or put back as the folder's
    resume checkpoint left it (``resume``; a damaged state is refused before anything is
    written). Its numbers go to ``log``, made by :meth:`start_logging` once the state is back."""

    def __init__(self, config: RunConfig, folder: RunFolder, resume: bool) -> None:
        self.config, self.folder = config, folder
        self.device = resolve_device(config.device)
        torch.manual_seed(config.seed)
        env = make_batched_env(config.env_id, config.ppo.num_envs, self.device)
        agent = build_agent(config, env.obs_dim, env.num_actions, env.continuous)
        self.agent = agent.to(self.device)
        self.ppo = PPOLearner(self.agent, env, config.ppo, config.seed)
        self.threshold = env.reward_threshold
        self.eval_steps, self.checkpoint_steps = eval_every(config), checkpoint_every(config)
        self.clock = {"train_seconds": 0.0, "wall_seconds": 0.0, "recent_return": math.nan}
        self.clock |= {"next_eval": self.eval_steps, "restores": 0, "compile_seconds": 0.0}
        self.saved_evals: dict[str, Any] | None = None
        if resume:
            saved_clock, self.saved_evals = load_training_state(folder.last, self.agent, self.ppo)
            self.clock |= saved_clock
            for leftover in temp_files(folder.path):  # half-written files of a killed process
                leftover.unlink(missing_ok=True)  # a plain file (temp_files): no link followed
        self.guard = DivergenceGuard(self.ppo)
        self.guard.restores = self.clock["restores"]
        self.next_checkpoint = self.ppo.env_steps + self.checkpoint_steps
        self.wall_start = time.perf_counter() - self.clock["wall_seconds"]
        if config.compile:
            from rlrnn.learning.compiled import compile_hot_loop  # torch's compiler: when asked

            self.clock["compile_seconds"] += compile_hot_loop(self.ppo)

    @property
    def done(self) -> bool:
        return self.ppo.iteration >= self.config.ppo.num_iterations

    def start_logging(self, show_progress: bool) -> RunLogger:
        """The run's logger and evaluation log; the config saved (a resume may extend it)."""
        total = self.config.ppo.num_iterations * self.config.ppo.batch_size
        self.log = RunLogger(self.folder, self.config, total, show_progress, self.ppo.env_steps)
        self.log.recent_return = self.clock["recent_return"]
        self.evals = EvaluationLog(
            self.config, self.agent, self.log, self.save_best, self.threshold, self.device
        )
        if self.saved_evals is not None:
            self.evals.load_state_dict(self.saved_evals)
        self.folder.write_config(self.config.to_json())
        return self.log

    def iterate(self) -> bool:
        """One rollout and update, logged; False when the guard rolled a non-finite one back
        (:class:`rlrnn.runs.safety.DivergenceGuard` raises TrainingDiverged after three)."""
        start = time.perf_counter()
        stats, episodes = self.ppo.iterate()
        finite = all_finite(stats, list(self.agent.parameters()))
        # The one host sync per iteration: statistics, episode sums, the finite flag.
        values = torch.stack([*stats.values(), *episodes, finite]).tolist()
        self.clock["train_seconds"] += time.perf_counter() - start
        step, n = self.ppo.env_steps, len(stats)
        if not self.guard.check(bool(values[-1]), step):
            self.log.rollback(step, self.guard.restores)
            return False
        self.log.update(dict(zip(stats, values[:n], strict=True)), step)
        self.log.speed(step, self.clock["train_seconds"])
        self.log.episodes(*values[n : n + 3], step)
        self.clock["recent_return"] = self.log.recent_return
        return True

    def evaluation_due(self) -> bool:
        return bool(self.eval_steps) and self.ppo.env_steps >= self.clock["next_eval"]

    def evaluate(self) -> dict[str, float]:
        record = self.evals.run(self.ppo.env_steps, self.clock["train_seconds"])
        while self.clock["next_eval"] <= self.ppo.env_steps:
            self.clock["next_eval"] += self.eval_steps
        return record

    def checkpoint_due(self) -> bool:
        return bool(self.checkpoint_steps) and self.ppo.env_steps >= self.next_checkpoint

    def save_best(self, env_steps: int) -> None:
        save_checkpoint(
            self.folder.checkpoint("best"), self.agent, self.config, {"env_steps": env_steps}
        )

    def save_last(self, status: str) -> None:
        """The resume checkpoint: weights and the whole training state."""
        now = time.perf_counter()
        self.clock.update(wall_seconds=now - self.wall_start, restores=self.guard.restores)
        save_training_state(
            self.folder.last, self.agent, self.config, self.ppo, self.evals, self.clock, status
        )
        self.next_checkpoint = self.ppo.env_steps + self.checkpoint_steps

    def save_final(self) -> None:
        """The final weights, evaluated (unless the last evaluation was at this step)."""
        self.evals.final(self.ppo.env_steps, self.clock["train_seconds"])
        steps = {"env_steps": self.ppo.env_steps}
        save_checkpoint(self.folder.checkpoint("final"), self.agent, self.config, steps)

    def finish(self, status: str) -> dict[str, Any]:
        """The resume checkpoint and the summary written, the log closed; the summary."""
        self.save_last(status)
        self.log.close()
        summary = self.evals.summary(
            status=status,
            device=str(self.device),
            parameters=sum(p.numel() for p in self.agent.parameters()),
            env_steps=self.ppo.env_steps,
            iterations=self.ppo.iteration,
            train_seconds=self.clock["train_seconds"],
            compile_seconds=self.clock["compile_seconds"],
            wall_seconds=time.perf_counter() - self.wall_start,
            divergence_restores=self.guard.restores,
        )
        self.folder.write_summary(summary)
        return summary

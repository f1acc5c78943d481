"""Training an SB3 reference agent (:mod:`rlrnn.runs.sb3`) into a run folder, as rlrnn's own.

TensorBoard: the run's event files get SB3's training statistics under the names rlrnn's trainer
writes (:data:`TENSORBOARD_KEYS`: ``losses/value_loss``, ``losses/policy_loss``,
``losses/entropy``, ``losses/approx_kl``, ``losses/clipfrac``, ``losses/explained_variance``,
``charts/learning_rate``; ``charts/SPS``, ``charts/episodic_return`` and
``charts/episodic_length`` computed as rlrnn computes them), at the env step of the update they
describe, beside the evaluations' ``eval/*``, so the two kinds of run compare in one TensorBoard.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import KVWriter, Logger
from stable_baselines3.common.vec_env import VecNormalize

from rlrnn.learning.config import RunConfig
from rlrnn.learning.fields import resolve_device
from rlrnn.learning.threads import torch_threads
from rlrnn.runs.checkpoint import env_signature, write_checkpoint
from rlrnn.runs.folder import RunFolder
from rlrnn.runs.logger import RunLogger
from rlrnn.runs.runlog import EvaluationHook, EvaluationLog
from rlrnn.runs.sb3 import SB3Policy, action_size, build_model, make_vec_env, obs_statistics

# SB3's name of a training statistic -> (rlrnn's name, factor): the same quantity as rlrnn's
# trainer logs under that name. SB3's entropy_loss is minus the mean entropy; its value loss is the
# whole mean squared error, rlrnn's half of it.
TENSORBOARD_KEYS: dict[str, tuple[str, float]] = {
    "train/value_loss": ("losses/value_loss", 0.5),
    "train/policy_gradient_loss": ("losses/policy_loss", 1.0),
    "train/entropy_loss": ("losses/entropy", -1.0),
    "train/approx_kl": ("losses/approx_kl", 1.0),
    "train/clip_fraction": ("losses/clipfrac", 1.0),
    "train/explained_variance": ("losses/explained_variance", 1.0),
    "train/learning_rate": ("charts/learning_rate", 1.0),
}


class _TensorBoardKeys(KVWriter):
    """An SB3 logger output that writes SB3's training statistics to the run's TensorBoard
    writer under rlrnn's names (:data:`TENSORBOARD_KEYS`); the other ``train/`` statistics
    (``train/loss``, ``train/clip_range``) keep SB3's names. SB3's ``rollout/`` and ``time/``
    entries are left out: :class:`_Schedule` writes rlrnn's own episode and speed charts."""

    def __init__(self, log: RunLogger) -> None:
        self.log = log

    def write(
        self,
        key_values: dict[str, Any],
        key_excluded: dict[str, tuple[str, ...]],
        step: int = 0,
    ) -> None:
        for key, value in key_values.items():
            excluded = key_excluded.get(key) or ()
            if not key.startswith("train/") or "tensorboard" in excluded:
                continue
            if not isinstance(value, int | float | np.number) or isinstance(value, bool):
                continue
            name, factor = TENSORBOARD_KEYS.get(key, (key, 1.0))
            self.log.scalar(name, factor * float(value), step)

    def close(self) -> None:
        pass  # the logger is the run's: train_sb3 closes it


class _Schedule(BaseCallback):
    """Evaluates every ``eval_interval`` env steps (after the update that used them, as rlrnn's
    loop does), keeps training time apart from evaluation time, moves the progress bar and
    writes each update's TensorBoard scalars as rlrnn's trainer does: SB3's statistics of the
    update (flushed from its logger once the update is done) and ``charts/SPS`` at the env step
    the update trained on, and the mean return and length of the episodes that ended in the
    rollout (``charts/episodic_return``, ``charts/episodic_length``)."""

    def __init__(
        self,
        config: RunConfig,
        evals: EvaluationLog,
        log: RunLogger,
        on_evaluation: EvaluationHook | None = None,
    ) -> None:
        super().__init__()
        self.config, self.evals, self.log = config, evals, log
        self.on_evaluation = on_evaluation
        self.next_eval = config.eval_interval
        self.start = time.perf_counter()
        self.stopped = False  # the evaluation hook ended the run
        self.episodes: list[tuple[float, float]] = []  # (return, length) ended this rollout
        self.logged_update = 0  # the env step whose update was last logged

    def train_seconds(self) -> float:
        return time.perf_counter() - self.start - self.evals.seconds

    def log_update(self) -> None:
        """The scalars of the update just made (SB3 runs it between two rollouts, or last)."""
        steps = self.num_timesteps
        if steps == self.logged_update:  # none since the last one (or before the first)
            return
        self.logged_update = steps
        self.logger.dump(steps)  # SB3 recorded the update's statistics: they go out now
        self.log.speed(steps, self.train_seconds())

    def _on_rollout_start(self) -> None:
        self.log_update()
        steps = self.num_timesteps
        if self.config.eval_interval and steps >= self.next_eval:
            record = self.evals.run(steps, self.train_seconds())
            while self.next_eval <= steps:
                self.next_eval += self.config.eval_interval
            if self.on_evaluation is not None and not self.on_evaluation(record):
                self.stopped = True

    def _on_rollout_end(self) -> None:
        steps = self.num_timesteps
        if self.episodes:
            returns, lengths = zip(*self.episodes, strict=True)
            self.log.episodes(len(returns), float(np.sum(returns)), float(np.sum(lengths)), steps)
            self.episodes = []
        self.log.progress(self.config.ppo.batch_size, steps, self.train_seconds())

    def _on_step(self) -> bool:
        for info in self.locals.get("infos", ()):
            episode = info.get("episode")  # SB3's Monitor: the episode's return and length
            if episode is not None:
                self.episodes.append((float(episode["r"]), float(episode["l"])))
        return not self.stopped  # False ends model.learn (after one step of the envs)


def train_sb3(
    config: RunConfig,
    folder: RunFolder,
    show_progress: bool = True,
    on_evaluation: EvaluationHook | None = None,
) -> dict[str, Any]:
    """Train an SB3 reference agent into ``folder``; returns the same summary as rlrnn's
    (``on_evaluation`` as in :func:`rlrnn.runs.training.train`, which calls this)."""
    with torch_threads(config.torch_threads):
        return _train_sb3(config, folder, show_progress, on_evaluation)


def _train_sb3(
    config: RunConfig,
    folder: RunFolder,
    show_progress: bool,
    on_evaluation: EvaluationHook | None,
) -> dict[str, Any]:
    folder.path.mkdir(parents=True, exist_ok=True)
    device = resolve_device(config.device)
    a, p = config.agent, config.ppo
    vec_env = make_vec_env(config, p.num_envs)
    if a.normalize_obs or p.normalize_reward:
        vec_env = VecNormalize(
            vec_env, norm_obs=a.normalize_obs, norm_reward=p.normalize_reward, gamma=p.gamma
        )
    model = build_model(config, vec_env, device)
    folder.write_config(config.to_json())
    log = RunLogger(folder, config, p.total_timesteps, show_progress)
    model.set_logger(Logger(None, [_TensorBoardKeys(log)]))  # one event file, rlrnn's names
    obs_dim = int(np.prod(vec_env.observation_space.shape))
    continuous, num_actions = action_size(vec_env.action_space)
    signature = env_signature(obs_dim, num_actions, config.env_id, continuous)

    def save(path: Path, env_steps: int) -> None:
        state = model.policy.state_dict()
        write_checkpoint(
            path, config, signature, state, {"env_steps": env_steps}, obs_statistics(vec_env)
        )

    live = SB3Policy(model, vec_env.normalize_obs if isinstance(vec_env, VecNormalize) else None)
    threshold = vec_env.get_attr("spec")[0].reward_threshold
    evals = EvaluationLog(
        config, live, log, lambda steps: save(folder.checkpoint("best"), steps), threshold
    )
    wall_start = time.perf_counter()
    schedule = _Schedule(config, evals, log, on_evaluation)
    model.learn(p.total_timesteps, callback=schedule)
    schedule.log_update()  # the last update's (SB3 logs an update at the next rollout's start)
    train_seconds = schedule.train_seconds()
    if not schedule.stopped:
        evals.final(model.num_timesteps, train_seconds)
        save(folder.checkpoint("final"), model.num_timesteps)
    log.close()
    vec_env.close()
    summary = evals.summary(
        status="stopped" if schedule.stopped else "finished",
        device=str(device),
        parameters=sum(p.numel() for p in model.policy.parameters()),
        env_steps=model.num_timesteps,
        iterations=model.num_timesteps // p.batch_size,
        train_seconds=train_seconds,
        wall_seconds=time.perf_counter() - wall_start,
    )
    folder.write_summary(summary)
    return summary

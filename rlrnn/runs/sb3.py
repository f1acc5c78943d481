"""The reference agents: Stable-Baselines3 ``PPO`` and sb3-contrib ``RecurrentPPO``.

They train through ``rlrnn train --agent sb3-ppo | sb3-recurrentppo`` into the same run layout
(``config.json``, ``best.pt``, ``final.pt``, ``summary.json``, ``tb/``), are judged by the same
evaluator on the same schedule, and load back with :func:`rlrnn.runs.loading.load_checkpoint`.

rlrnn's config fields map onto SB3's arguments: ``num_envs`` -> ``n_envs``, ``num_steps`` ->
``n_steps``, ``num_minibatches`` -> ``batch_size = n_envs * n_steps / num_minibatches``,
``update_epochs`` -> ``n_epochs``, ``target_kl`` (0: None), ``anneal_lr`` / ``anneal_clip`` ->
linear schedules, ``normalize_obs`` / ``normalize_reward`` -> ``VecNormalize``, ``pi_hidden`` /
``vf_hidden`` -> ``net_arch``; for ``RecurrentPPO`` also ``hidden_size`` -> ``lstm_hidden_size``,
``num_layers`` -> ``n_lstm_layers`` and ``shared_core`` -> ``shared_lstm`` (else one LSTM each).

TensorBoard: the run's ``tb/`` gets SB3's training statistics under the names rlrnn's trainer
writes (:data:`TENSORBOARD_KEYS`: ``losses/value_loss``, ``losses/policy_loss``,
``losses/entropy``, ``losses/approx_kl``, ``losses/clipfrac``, ``losses/explained_variance``,
``charts/learning_rate``; ``charts/SPS``, ``charts/episodic_return`` and
``charts/episodic_length`` computed as rlrnn computes them), at the env step of the update they
describe, beside the evaluations' ``eval/*``, so the two kinds of run compare in one TensorBoard.

Checkpoints keep only tensors (the policy's ``state_dict`` and the normalisation statistics), like
rlrnn's own: loading rebuilds the SB3 model from the saved config and never unpickles.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from sb3_contrib import RecurrentPPO
from stable_baselines3 import PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import KVWriter, Logger
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecNormalize
from torch.utils.tensorboard import SummaryWriter

from agents.registry import ACTIVATIONS
from envs import register_variant  # importing envs registers PositionOnlyCartPole-v1 and co.
from rlrnn.runs.checkpoint import describe_mismatch, env_signature, write_checkpoint
from rlrnn.learning.config import RunConfig, resolve_device
from rlrnn.runs.runlog import EvaluationHook, EvaluationLog, progress_bar
from rlrnn.learning.threads import torch_threads
from rlrnn.errors import UsageError
from rlrnn.files import atomic_write_text

Normalizer = Callable[[np.ndarray], np.ndarray]


class SB3Policy:
    """An SB3 model behind rlrnn's policy interface (``initial_state`` / ``act`` / ``predict``).

    ``normalize`` maps raw observations to what the model was trained on (``VecNormalize``).
    """

    def __init__(self, model: BaseAlgorithm, normalize: Normalizer | None = None) -> None:
        self.model = model
        self.normalize = normalize or (lambda obs: obs)
        self.obs_dim = int(np.prod(model.observation_space.shape))
        self.num_actions = int(model.action_space.n)

    def initial_state(self, batch_size: int, device: torch.device | str = "cpu") -> None:
        return None  # SB3's predict starts a fresh recurrent state from None

    def predict(
        self,
        observation: np.ndarray,
        state: Any = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, Any]:
        obs = self.normalize(np.asarray(observation, dtype=np.float32))
        return self.model.predict(obs, state, episode_start, deterministic)

    def act(
        self, obs: torch.Tensor, state: Any, episode_starts: torch.Tensor, deterministic: bool
    ) -> tuple[torch.Tensor, Any]:
        starts = episode_starts.cpu().numpy().astype(bool)
        actions, state = self.predict(obs.cpu().numpy(), state, starts, deterministic)
        return torch.as_tensor(actions, device=obs.device), state


def _flatten_non_box(env: gym.Env) -> gym.Env:
    """Discrete / MultiDiscrete observations as the one-hots rlrnn's batched env feeds (the
    same encoding), so that SB3's policies act on what rlrnn's evaluator gives them."""
    if isinstance(env.observation_space, gym.spaces.Box):
        return env
    return gym.wrappers.FlattenObservation(env)


def _make_vec_env(config: RunConfig, num_envs: int) -> VecEnv:
    # A parametrized variant id is registered on first use, in each process (a compare worker too).
    register_variant(config.env_id)
    try:
        return make_vec_env(
            config.env_id,
            num_envs,
            seed=config.seed,
            vec_env_cls=DummyVecEnv,
            wrapper_class=_flatten_non_box,
        )
    except gym.error.Error as e:
        raise UsageError(f"cannot make env {config.env_id!r}: {e}") from None


def build_model(config: RunConfig, vec_env: VecEnv, device: torch.device | str) -> BaseAlgorithm:
    """The SB3 algorithm that ``config`` describes, on ``vec_env``."""
    a, p = config.agent, config.ppo  # a.backend is "custom": the config refuses any other here
    lr, clip = p.learning_rate, p.clip_coef
    kwargs: dict[str, Any] = {
        "n_steps": p.num_steps,
        "batch_size": p.batch_size // p.num_minibatches,
        "n_epochs": p.update_epochs,
        "learning_rate": (lambda progress: lr * progress) if p.anneal_lr else lr,
        "clip_range": (lambda progress: clip * progress) if p.anneal_clip else clip,
        "gamma": p.gamma,
        "gae_lambda": p.gae_lambda,
        "ent_coef": p.ent_coef,
        "vf_coef": p.vf_coef,
        "max_grad_norm": p.max_grad_norm if p.max_grad_norm > 0 else float("inf"),
        "normalize_advantage": p.norm_adv,
        "target_kl": p.target_kl if p.target_kl > 0 else None,
        "seed": config.seed,
        "device": device,
    }
    policy_kwargs: dict[str, Any] = {
        "net_arch": {"pi": list(a.pi_hidden), "vf": list(a.vf_hidden)},
        "activation_fn": ACTIVATIONS[a.activation],
    }
    if a.agent == "sb3-ppo":
        return PPO("MlpPolicy", vec_env, policy_kwargs=policy_kwargs, **kwargs)
    policy_kwargs |= {
        "lstm_hidden_size": a.hidden_size,
        "n_lstm_layers": a.num_layers,
        "shared_lstm": a.shared_core,
        "enable_critic_lstm": not a.shared_core,
        "ortho_init": False,  # as rl-baselines3-zoo's tuned CartPoleNoVel-v1 setting
    }
    return RecurrentPPO("MlpLstmPolicy", vec_env, policy_kwargs=policy_kwargs, **kwargs)


def _normalizer(
    mean: np.ndarray, var: np.ndarray, epsilon: np.ndarray, clip: np.ndarray
) -> Normalizer:
    """``VecNormalize``'s observation normalisation with frozen statistics."""
    scale = 1.0 / np.sqrt(var + epsilon)
    return lambda obs: np.clip((obs - mean) * scale, -clip, clip).astype(np.float32)


def _obs_rms(vec_env: VecEnv) -> dict[str, torch.Tensor] | None:
    if not isinstance(vec_env, VecNormalize) or not vec_env.norm_obs:
        return None
    return {
        "mean": torch.as_tensor(vec_env.obs_rms.mean, dtype=torch.float64),
        "var": torch.as_tensor(vec_env.obs_rms.var, dtype=torch.float64),
        "epsilon": torch.tensor(vec_env.epsilon, dtype=torch.float64),
        "clip": torch.tensor(vec_env.clip_obs, dtype=torch.float64),
    }


def expected_weights(config: RunConfig, obs_dim: int, num_actions: int) -> dict[str, torch.Size]:
    """The name and shape of every tensor of the SB3 policy ``config`` describes (as
    :func:`build_model` makes it), computed without building it."""
    a = config.agent
    recurrent = a.agent == "sb3-recurrentppo"
    features = a.hidden_size if recurrent else obs_dim
    shapes: dict[str, tuple[int, ...]] = {}
    for net, widths in (("policy_net", a.pi_hidden), ("value_net", a.vf_hidden)):
        width = features
        for i, w in enumerate(widths):  # Linear, activation, Linear, ...
            shapes[f"mlp_extractor.{net}.{2 * i}.weight"] = (w, width)
            shapes[f"mlp_extractor.{net}.{2 * i}.bias"] = (w,)
            width = w
        head, out = ("action_net", num_actions) if net == "policy_net" else ("value_net", 1)
        shapes[f"{head}.weight"], shapes[f"{head}.bias"] = (out, width), (out,)
    if recurrent:
        h = a.hidden_size
        for lstm in ("lstm_actor",) if a.shared_core else ("lstm_actor", "lstm_critic"):
            for k in range(a.num_layers):
                shapes[f"{lstm}.weight_ih_l{k}"] = (4 * h, obs_dim if k == 0 else h)
                shapes[f"{lstm}.weight_hh_l{k}"] = (4 * h, h)
                shapes[f"{lstm}.bias_ih_l{k}"] = shapes[f"{lstm}.bias_hh_l{k}"] = (4 * h,)
    return {k: torch.Size(v) for k, v in shapes.items()}


def load_sb3_policy(
    config: RunConfig,
    weights: dict[str, torch.Tensor],
    obs_rms: dict[str, torch.Tensor] | None,
    device: torch.device | str = "cpu",
    path: Path | str = "checkpoint",
) -> SB3Policy:
    """Rebuild the SB3 model of ``config`` (on its ``env_id``, which the caller trusts) and load
    its policy weights, once their shapes are known to fit the config (so a config claiming a
    huge size allocates nothing)."""
    vec_env = _make_vec_env(config, 1)
    obs_dim = int(np.prod(vec_env.observation_space.shape))
    expected = expected_weights(config, obs_dim, int(vec_env.action_space.n))
    if set(weights) != set(expected) or any(weights[k].shape != v for k, v in expected.items()):
        vec_env.close()
        raise UsageError(
            f"checkpoint {path} does not match its agent {config.agent.agent} (hidden_size"
            f" {config.agent.hidden_size}): {describe_mismatch(expected, weights)}"
        )
    # One env and one minibatch: acting needs only the policy, not the training setup.
    acting = replace(config, ppo=replace(config.ppo, num_envs=1, num_minibatches=1))
    model = build_model(acting, vec_env, device)
    model.policy.load_state_dict(weights)
    if obs_rms is None:
        return SB3Policy(model)
    mean, var = obs_rms["mean"].numpy(), obs_rms["var"].numpy()
    return SB3Policy(
        model, _normalizer(mean, var, float(obs_rms["epsilon"]), float(obs_rms["clip"]))
    )


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

    def __init__(self, writer: SummaryWriter) -> None:
        self.writer = writer

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
            self.writer.add_scalar(name, factor * float(value), step)

    def close(self) -> None:
        pass  # the writer is the run's: train_sb3 closes it


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
        bar: Any,
        on_evaluation: EvaluationHook | None = None,
    ) -> None:
        super().__init__()
        self.config, self.evals, self.bar = config, evals, bar
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
        self.evals.writer.add_scalar("charts/SPS", steps / max(self.train_seconds(), 1e-9), steps)

    def _on_rollout_start(self) -> None:
        self.log_update()
        steps = self.num_timesteps
        if self.config.eval_interval and steps >= self.next_eval:
            record = self.evals.run(steps, self.train_seconds())
            while self.next_eval <= steps:
                self.next_eval += self.config.eval_interval
            if self.on_evaluation is not None and not self.on_evaluation(record):
                self.stopped = True
            self.bar.set_postfix(eval=f"{self.evals.records[-1]['mean_return']:.1f}", refresh=False)

    def _on_rollout_end(self) -> None:
        if self.episodes:
            returns, lengths = zip(*self.episodes, strict=True)
            steps, writer = self.num_timesteps, self.evals.writer
            writer.add_scalar("charts/episodic_return", float(np.mean(returns)), steps)
            writer.add_scalar("charts/episodic_length", float(np.mean(lengths)), steps)
            self.episodes = []
        self.bar.update(self.config.ppo.batch_size)

    def _on_step(self) -> bool:
        for info in self.locals.get("infos", ()):
            episode = info.get("episode")  # SB3's Monitor: the episode's return and length
            if episode is not None:
                self.episodes.append((float(episode["r"]), float(episode["l"])))
        return not self.stopped  # False ends model.learn (after one step of the envs)


def train_sb3(
    config: RunConfig,
    run_dir: Path,
    show_progress: bool = True,
    on_evaluation: EvaluationHook | None = None,
) -> dict[str, Any]:
    """Train an SB3 reference agent into ``run_dir``; returns the same summary as rlrnn's
    (``on_evaluation`` as in :func:`rlrnn.runs.training.train`, which calls this)."""
    with torch_threads(config.torch_threads):
        return _train_sb3(config, run_dir, show_progress, on_evaluation)


def _train_sb3(
    config: RunConfig,
    run_dir: Path,
    show_progress: bool,
    on_evaluation: EvaluationHook | None,
) -> dict[str, Any]:
    run_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(config.device)
    a, p = config.agent, config.ppo
    vec_env = _make_vec_env(config, p.num_envs)
    if a.normalize_obs or p.normalize_reward:
        vec_env = VecNormalize(
            vec_env, norm_obs=a.normalize_obs, norm_reward=p.normalize_reward, gamma=p.gamma
        )
    model = build_model(config, vec_env, device)
    atomic_write_text(run_dir / "config.json", config.to_json())
    writer = SummaryWriter(str(run_dir / "tb"))
    model.set_logger(Logger(None, [_TensorBoardKeys(writer)]))  # one event file, rlrnn's names
    obs_dim = int(np.prod(vec_env.observation_space.shape))
    signature = env_signature(obs_dim, int(vec_env.action_space.n), config.env_id)

    def save(path: Path, env_steps: int) -> None:
        state = model.policy.state_dict()
        write_checkpoint(
            path, config, signature, state, {"env_steps": env_steps}, _obs_rms(vec_env)
        )

    live = SB3Policy(model, vec_env.normalize_obs if isinstance(vec_env, VecNormalize) else None)
    threshold = vec_env.get_attr("spec")[0].reward_threshold
    evals = EvaluationLog(config, run_dir, live, writer, save, threshold)
    wall_start = time.perf_counter()
    bar = progress_bar(config, p.total_timesteps, show_progress)
    schedule = _Schedule(config, evals, bar, on_evaluation)
    model.learn(p.total_timesteps, callback=schedule)
    schedule.log_update()  # the last update's (SB3 logs an update at the next rollout's start)
    train_seconds = schedule.train_seconds()
    bar.close()
    if not schedule.stopped:
        evals.final(model.num_timesteps, train_seconds)
        save(run_dir / "final.pt", model.num_timesteps)
    writer.close()
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
    atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2))
    return summary

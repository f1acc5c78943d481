"""The reference agents: Stable-Baselines3 ``PPO`` and sb3-contrib ``RecurrentPPO``.

They train through the same front door as rlrnn's agents into the same run folder
(:mod:`rlrnn.runs.sb3_training`), are judged by the same evaluator on the same schedule, and load
back with :func:`rlrnn.runs.loading.load_checkpoint`. This module builds their models and envs
and loads their checkpoints.

rlrnn's config fields map onto SB3's arguments: ``num_envs`` -> ``n_envs``, ``num_steps`` ->
``n_steps``, ``num_minibatches`` -> ``batch_size = n_envs * n_steps / num_minibatches``,
``update_epochs`` -> ``n_epochs``, ``target_kl`` (0: None), ``sde_sample_freq`` -> ``use_sde``
and ``sde_sample_freq`` (0: no gSDE), ``anneal_lr`` / ``anneal_clip`` ->
linear schedules, ``normalize_obs`` / ``normalize_reward`` -> ``VecNormalize``, ``pi_hidden`` /
``vf_hidden`` -> ``net_arch``; for ``RecurrentPPO`` also ``hidden_size`` -> ``lstm_hidden_size``,
``num_layers`` -> ``n_lstm_layers`` and ``shared_core`` -> ``shared_lstm`` (else one LSTM each).

Checkpoints keep only tensors (the policy's ``state_dict`` and the normalisation statistics), like
rlrnn's own: loading rebuilds the SB3 model from the saved config and never unpickles.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from sb3_contrib import RecurrentPPO
from stable_baselines3 import PPO
from stable_baselines3.common import env_util
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecNormalize

from agents.registry import ACTIVATIONS
from envs import register_variant  # importing envs registers PositionOnlyCartPole-v1 and co.
from rlrnn.errors import UsageError
from rlrnn.learning.config import RunConfig
from rlrnn.runs.checkpoint import describe_mismatch

Normalizer = Callable[[np.ndarray], np.ndarray]


class SB3Policy:
    """An SB3 model behind rlrnn's policy interface (``initial_state`` / ``act`` / ``predict``).

    ``normalize`` maps raw observations to what the model was trained on (``VecNormalize``).
    """

    def __init__(self, model: BaseAlgorithm, normalize: Normalizer | None = None) -> None:
        self.model = model
        self.normalize = normalize or (lambda obs: obs)
        self.obs_dim = int(np.prod(model.observation_space.shape))
        self.continuous, self.num_actions = action_size(model.action_space)

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
        if self.continuous:  # SB3 clips a Box action to its bounds: (B, *shape) -> (B, A)
            actions = np.asarray(actions, dtype=np.float32).reshape(len(starts), -1)
        return torch.as_tensor(actions, device=obs.device), state


def action_size(space: gym.spaces.Space) -> tuple[bool, int]:
    """Whether ``space`` is a Box, and its dimension (or a Discrete's number of actions)."""
    if isinstance(space, gym.spaces.Box):
        return True, int(np.prod(space.shape))
    return False, int(space.n)


def _flatten_non_box(env: gym.Env) -> gym.Env:
    """Discrete / MultiDiscrete observations as the one-hots rlrnn's batched env feeds (the
    same encoding), so that SB3's policies act on what rlrnn's evaluator gives them."""
    if isinstance(env.observation_space, gym.spaces.Box):
        return env
    return gym.wrappers.FlattenObservation(env)


def make_vec_env(config: RunConfig, num_envs: int) -> VecEnv:
    """``num_envs`` copies of the config's env, seeded from its seed, as SB3 steps them."""
    # A parametrized variant id is registered on first use, in each process (a compare worker too).
    register_variant(config.env_id)
    try:
        return env_util.make_vec_env(
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
        "use_sde": p.sde_sample_freq > 0,
        "sde_sample_freq": p.sde_sample_freq or -1,
        "seed": config.seed,
        "device": device,
    }
    policy_kwargs: dict[str, Any] = {
        "net_arch": {"pi": list(a.pi_hidden), "vf": list(a.vf_hidden)},
        "activation_fn": ACTIVATIONS[a.activation],
        "log_std_init": a.log_std_init,  # a Discrete env refuses any but 0 (runs.start)
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


def obs_statistics(vec_env: VecEnv) -> dict[str, torch.Tensor] | None:
    if not isinstance(vec_env, VecNormalize) or not vec_env.norm_obs:
        return None
    return {
        "mean": torch.as_tensor(vec_env.obs_rms.mean, dtype=torch.float64),
        "var": torch.as_tensor(vec_env.obs_rms.var, dtype=torch.float64),
        "epsilon": torch.tensor(vec_env.epsilon, dtype=torch.float64),
        "clip": torch.tensor(vec_env.clip_obs, dtype=torch.float64),
    }


def expected_weights(
    config: RunConfig, obs_dim: int, num_actions: int, continuous: bool = False
) -> dict[str, torch.Size]:
    """The name and shape of every tensor of the SB3 policy ``config`` describes (as
    :func:`build_model` makes it), computed without building it; a Box action space adds the
    Gaussian's ``log_std`` (gSDE's, a matrix, with ``sde_sample_freq``)."""
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
    if continuous:  # gSDE's log-std is a matrix over the policy's last features
        pi_features = a.pi_hidden[-1] if a.pi_hidden else features
        gsde = config.ppo.sde_sample_freq > 0
        shapes["log_std"] = (pi_features, num_actions) if gsde else (num_actions,)
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
    vec_env = make_vec_env(config, 1)
    obs_dim = int(np.prod(vec_env.observation_space.shape))
    expected = expected_weights(config, obs_dim, *reversed(action_size(vec_env.action_space)))
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

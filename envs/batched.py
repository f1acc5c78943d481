"""One batched interface over every environment rlrnn trains in (:mod:`envs.protocol`).

:func:`make_batched_env` picks the tensor cart-pole or pendulum for the built-in ids and wraps
any other gymnasium id (Box observations; Discrete actions, or Box ones with finite bounds) in
:class:`GymnasiumBatchedEnv`.
"""

from __future__ import annotations

import functools
import sys
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from torch import Tensor

from envs import spaces as obs_spaces
from envs import variants
from envs.partial_cartpole import TensorPartialCartPole
from envs.pendulum import TensorPendulum
from envs.protocol import BatchedEnv, HiddenVelocity, StepResult
from envs.tensor_cartpole import TensorCartPole


class EnvError(ValueError):
    """An environment id that rlrnn cannot train on."""


class GymnasiumBatchedEnv:
    """Any gymnasium env with a Discrete action, or a Box one with finite bounds, behind the
    batched interface.

    Box observations are flattened, Discrete and MultiDiscrete ones one-hot encoded
    (:mod:`envs.spaces`). Box actions come as ``(N, A)`` floats and are clipped to the env's
    bounds here, at the env (the policy's sample is not). Runs ``num_envs`` copies in a
    synchronous vector env (same-step auto-reset) and converts between numpy and tensors on
    ``device`` at this edge only.
    """

    def __init__(
        self,
        env_id: str,
        num_envs: int,
        device: str | torch.device = "cpu",
        max_episode_steps: int | None = None,
    ) -> None:
        probe = _make_checked(env_id)
        self.env_id = env_id
        self.num_envs = num_envs
        self.device = torch.device(device)
        self.observation_space = probe.observation_space
        self.obs_dim = obs_spaces.flat_size(probe.observation_space)
        actions = probe.action_space
        self.continuous = isinstance(actions, gym.spaces.Box)
        self.num_actions = int(np.prod(actions.shape)) if self.continuous else int(actions.n)
        if self.continuous:
            self.action_low, self.action_high = actions.low.reshape(-1), actions.high.reshape(-1)
            self._action_shape = actions.shape
        spec = probe.spec
        self.max_episode_steps = spec.max_episode_steps if spec else None
        self.reward_threshold = spec.reward_threshold if spec else None
        if max_episode_steps is not None:  # another time limit: the threshold no longer applies
            self.max_episode_steps, self.reward_threshold = max_episode_steps, None
        probe.close()
        make = functools.partial(gym.make, env_id, max_episode_steps=max_episode_steps)
        self._vec = SyncVectorEnv(
            [make] * num_envs,
            autoreset_mode=AutoresetMode.SAME_STEP,
        )

    def _tensor(self, array: np.ndarray) -> Tensor:
        try:
            encoded = obs_spaces.encode(self.observation_space, array)  # (N, obs_dim)
        except obs_spaces.ObservationError as e:  # the env broke its own contract: blame it
            raise EnvError(f"env {self.env_id!r} {e}") from None
        return torch.as_tensor(encoded, dtype=torch.float32, device=self.device)

    def reset(self, seed: int = 0) -> Tensor:
        obs, _ = self._vec.reset(seed=seed)
        return self._tensor(obs)

    def step(self, actions: Tensor) -> StepResult:
        taken = actions.cpu().numpy()
        if self.continuous:  # (N, A) -> clipped, in the env's own shape and type
            taken = np.clip(taken.reshape(self.num_envs, -1), self.action_low, self.action_high)
            taken = taken.reshape(self.num_envs, *self._action_shape).astype(np.float32)
        obs, reward, terminated, truncated, info = self._vec.step(taken)
        final = np.array(obs, copy=True)  # raw observations: encoded below
        if "_final_obs" in info:
            for i in np.flatnonzero(info["_final_obs"]):
                final[i] = info["final_obs"][i]

        def as_bool(a: np.ndarray) -> Tensor:
            return torch.as_tensor(a, device=self.device)

        return StepResult(
            self._tensor(obs),
            torch.as_tensor(reward, dtype=torch.float32, device=self.device),
            as_bool(terminated),
            as_bool(truncated),
            self._tensor(final),
        )

    def close(self) -> None:
        self._vec.close()


# Built-in ids that run as tensors: id -> observe only positions?
TENSOR_CARTPOLES = {"PositionOnlyCartPole-v1": True, "CartPole-v1": False}
# Built-in ids with Box actions that run as tensors: id -> (class, its arguments).
TENSOR_BOX_ENVS: dict[str, tuple[type[TensorPendulum | TensorCartPole], dict[str, bool]]] = {
    "PositionOnlyPendulum-v1": (TensorPendulum, {"position_only": True}),
    "Pendulum-v1": (TensorPendulum, {"position_only": False}),
    "ContinuousPositionOnlyCartPole-v1": (
        TensorCartPole,
        {"position_only": True, "continuous": True},
    ),
}
TENSOR_ENVS = (*TENSOR_CARTPOLES, *TENSOR_BOX_ENVS)  # no per-env gymnasium overhead


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__


def _register_variant(env_id: str) -> bool:
    """Register a partially observed cart-pole id (:mod:`envs.variants`); whether it is one."""
    try:
        return variants.register(env_id)
    except variants.VariantError as e:
        raise EnvError(str(e)) from None


def _make_checked(env_id: str) -> gym.Env:
    _register_variant(env_id)
    try:
        env = gym.make(env_id)
    except (gym.error.Error, ModuleNotFoundError, AttributeError, ValueError) as e:
        raise EnvError(f"unknown env id {env_id!r} ({_first_line(e).split(': ', 1)[-1]})") from None
    except (Exception, SystemExit) as e:  # the env's own module or constructor failed
        raise EnvError(f"cannot make env {env_id!r}: {_first_line(e)}") from None
    problem = _action_problem(env.action_space)
    if problem is None and obs_spaces.space_problem(env.observation_space) is not None:
        problem = obs_spaces.space_problem(env.observation_space)
    if problem is not None:
        env.close()
        raise EnvError(f"env {env_id!r} {problem}")
    return env


# env id -> (its registration, observation space, action space): what the checks of one
# command read, so a command makes an env once for all of them (not once per check).
_CHECKED: dict[str, tuple[Any, gym.spaces.Space, gym.spaces.Space]] = {}


def _checked_spaces(env_id: str) -> tuple[gym.spaces.Space, gym.spaces.Space]:
    """``env_id``'s spaces, the env made and checked (:func:`_make_checked`) on the first call
    for an id and registration, remembered after."""
    spec = gym.registry.get(env_id.rpartition(":")[2])
    known = _CHECKED.get(env_id)
    if known is None or spec is None or known[0] is not spec:
        env = _make_checked(env_id)
        spaces = env.observation_space, env.action_space
        env.close()
        known = _CHECKED[env_id] = (gym.registry.get(env_id.rpartition(":")[2]), *spaces)
    return known[1], known[2]


def _action_problem(space: gym.spaces.Space) -> str | None:
    """What keeps rlrnn from acting in ``space`` (None: nothing): Discrete with actions, or a
    Box with finite bounds."""
    if isinstance(space, gym.spaces.Discrete):
        return "has no actions" if int(space.n) < 1 else None
    if isinstance(space, gym.spaces.Box):
        if not (np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))):
            return f"has a Box action space with infinite bounds ({space}); rlrnn clips to them"
        return "has an empty Box action space" if int(np.prod(space.shape)) < 1 else None
    return f"needs a Discrete or Box action space, has {space}"


def is_registered(env_id: str) -> bool:
    """Whether making ``env_id`` imports no module that is not imported yet: the id is registered
    with gymnasium (rlrnn's, gymnasium's, an installed plugin's) and any ``module:`` prefix names
    a module already imported (e.g. by a ``--env module:EnvId`` the user typed)."""
    module, _, name = env_id.rpartition(":")
    if module in KNOWN_PLUGINS and module not in sys.modules:
        _import_plugin(module)
    try:
        _register_variant(name)
    except EnvError:
        return False
    return (not module or module in sys.modules) and name in gym.registry


# Installed packages whose envs rlrnn makes by id, importing them when a file names them
# (rlrnn trusts installed packages): its optional extras.
KNOWN_PLUGINS = ("popgym",)


def _import_plugin(module: str) -> None:
    import contextlib
    import importlib

    with contextlib.suppress(ImportError):  # not installed: the id stays unregistered
        importlib.import_module(module)


def check_env_id(env_id: str) -> None:
    """Raise :class:`EnvError` unless ``env_id`` names an env rlrnn can train on."""
    if env_id not in TENSOR_ENVS and not _register_variant(env_id):
        _checked_spaces(env_id)


def env_sizes(env_id: str) -> tuple[int, int]:
    """``(obs_dim, num_actions)`` of ``env_id`` (an :class:`EnvError` if rlrnn cannot use it)."""
    if env_id in TENSOR_CARTPOLES:
        return (2 if TENSOR_CARTPOLES[env_id] else 4), 2
    if _register_variant(env_id):
        return 2 + int(variants.variant_params(env_id).last_action), 2
    observations, actions = _checked_spaces(env_id)
    if isinstance(actions, gym.spaces.Box):
        return obs_spaces.flat_size(observations), int(np.prod(actions.shape))
    return obs_spaces.flat_size(observations), int(actions.n)


def has_box_actions(env_id: str) -> bool:
    """Whether ``env_id`` takes Box actions (an :class:`EnvError` if rlrnn cannot use it)."""
    if env_id in TENSOR_BOX_ENVS:
        return True
    if env_id in TENSOR_CARTPOLES or _register_variant(env_id):
        return False
    return isinstance(_checked_spaces(env_id)[1], gym.spaces.Box)


def action_bounds(env_id: str) -> tuple[list[float], list[float]]:
    """The low and high bounds of ``env_id``'s Box actions, flattened (an :class:`EnvError` if
    rlrnn cannot use it; a ValueError for Discrete actions)."""
    actions = _checked_spaces(env_id)[1]
    if not isinstance(actions, gym.spaces.Box):
        raise ValueError(f"env {env_id!r} has no Box actions")
    return actions.low.reshape(-1).tolist(), actions.high.reshape(-1).tolist()


def observation_space(env_id: str) -> gym.spaces.Space:
    """``env_id``'s observation space as gymnasium makes the env (an :class:`EnvError` if rlrnn
    cannot use it)."""
    return _checked_spaces(env_id)[0]


CARTPOLE_STATE = ("cart position", "cart velocity", "pole angle", "pole angular velocity")


def observation_entries(env_id: str) -> list[str] | None:
    """What each number of ``env_id``'s observation is, for rlrnn's cart-poles; None for any
    other env (its own documentation says)."""
    if env_id in TENSOR_CARTPOLES:
        return [CARTPOLE_STATE[i] for i in ((0, 2) if TENSOR_CARTPOLES[env_id] else range(4))]
    if not _register_variant(env_id):
        return None
    params = variants.variant_params(env_id)
    last = ["last push (-1 left, +1 right, 0 at an episode start)"] if params.last_action else []
    return [CARTPOLE_STATE[0], CARTPOLE_STATE[2], *last]


def hidden_velocities(env_id: str) -> tuple[HiddenVelocity, ...]:
    """The velocities in the state of ``env_id``'s tensor env (its ``HIDDEN_VELOCITIES``); none
    for an env rlrnn does not simulate itself or a variant id with an impossible parameter."""
    if env_id in TENSOR_CARTPOLES:
        return TensorCartPole.HIDDEN_VELOCITIES
    if env_id in TENSOR_BOX_ENVS:
        return TENSOR_BOX_ENVS[env_id][0].HIDDEN_VELOCITIES
    try:
        variant = variants.variant_params(env_id) is not None
    except variants.VariantError:
        return ()
    return TensorPartialCartPole.HIDDEN_VELOCITIES if variant else ()


def make_batched_env(
    env_id: str,
    num_envs: int,
    device: str | torch.device = "cpu",
    max_episode_steps: int | None = None,
) -> BatchedEnv:
    """The tensor cart-pole for the built-in ids and the partially observed variants
    (:mod:`envs.variants`), gymnasium's vector API for any other id.

    ``max_episode_steps`` replaces the env's time limit (None keeps it).
    """
    limit = {} if max_episode_steps is None else {"max_episode_steps": max_episode_steps}
    if env_id in TENSOR_CARTPOLES:
        return TensorCartPole(num_envs, device, position_only=TENSOR_CARTPOLES[env_id], **limit)
    if env_id in TENSOR_BOX_ENVS:
        cls, kwargs = TENSOR_BOX_ENVS[env_id]
        return cls(num_envs, device, **kwargs, **limit)
    if _register_variant(env_id):
        params = variants.variant_kwargs(env_id) or {}
        return TensorPartialCartPole(num_envs, device, **params, **limit)
    return GymnasiumBatchedEnv(env_id, num_envs, device, max_episode_steps)

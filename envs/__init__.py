"""The worlds rlrnn trains in.

Importing this package registers ``PositionOnlyCartPole-v1``, its continuous-force twin
``ContinuousPositionOnlyCartPole-v1``, ``PositionOnlyPendulum-v1`` and the named noisy and
flickering cart-pole variants (:mod:`envs.variants`) with gymnasium; it imports gymnasium only
(the tensor envs and their torch load on first use), so ``import rlrnn``, which imports it,
stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

import gymnasium as gym

from envs.variants import NAMED_VARIANTS
from envs.variants import register as register_variant

POSITION_ONLY_CARTPOLE = "PositionOnlyCartPole-v1"
POSITION_ONLY_PENDULUM = "PositionOnlyPendulum-v1"
CONTINUOUS_CARTPOLE = "ContinuousPositionOnlyCartPole-v1"
# id -> (entry point, time limit, reward threshold)
_REGISTERED = {
    POSITION_ONLY_CARTPOLE: ("envs.cartpole:PositionOnlyCartPoleEnv", 500, 475.0),
    CONTINUOUS_CARTPOLE: ("envs.cartpole:ContinuousPositionOnlyCartPoleEnv", 500, 475.0),
    POSITION_ONLY_PENDULUM: ("envs.pendulum:PositionOnlyPendulumEnv", 200, -200.0),
}
for _id, (_entry, _limit, _threshold) in _REGISTERED.items():
    if _id not in gym.registry:
        gym.register(
            id=_id, entry_point=_entry, max_episode_steps=_limit, reward_threshold=_threshold
        )
for _variant in NAMED_VARIANTS:
    register_variant(_variant)

# name -> module: imported on first use (torch takes a second to import).
_LAZY = {
    "BatchedEnv": "envs.batched",
    "EnvError": "envs.batched",
    "GymnasiumBatchedEnv": "envs.batched",
    "StepResult": "envs.batched",
    "make_batched_env": "envs.batched",
    "PositionOnlyCartPoleEnv": "envs.cartpole",
    "PartialCartPoleEnv": "envs.partial_cartpole",
    "TensorPartialCartPole": "envs.partial_cartpole",
    "TensorCartPole": "envs.tensor_cartpole",
    "TensorPendulum": "envs.pendulum",
}
__all__ = [
    "CONTINUOUS_CARTPOLE",
    "NAMED_VARIANTS",
    "POSITION_ONLY_CARTPOLE",
    "POSITION_ONLY_PENDULUM",
    "BatchedEnv",
    "EnvError",
    "GymnasiumBatchedEnv",
    "PartialCartPoleEnv",
    "PositionOnlyCartPoleEnv",
    "StepResult",
    "TensorCartPole",
    "TensorPartialCartPole",
    "TensorPendulum",
    "make_batched_env",
    "register_variant",
]

if TYPE_CHECKING:
    from envs.batched import BatchedEnv, EnvError, GymnasiumBatchedEnv, StepResult, make_batched_env
    from envs.cartpole import PositionOnlyCartPoleEnv
    from envs.partial_cartpole import PartialCartPoleEnv, TensorPartialCartPole
    from envs.pendulum import TensorPendulum
    from envs.tensor_cartpole import TensorCartPole


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'envs' has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])

"""The worlds rlrnn trains in.

Importing this package registers ``PositionOnlyCartPole-v1`` and the named noisy and
flickering variants (:mod:`envs.variants`) with gymnasium; it imports gymnasium only (the tensor
envs and their torch load on first use), so ``import rlrnn``, which imports it, stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

import gymnasium as gym

from envs.variants import NAMED_VARIANTS
from envs.variants import register as register_variant

POSITION_ONLY_CARTPOLE = "PositionOnlyCartPole-v1"

if POSITION_ONLY_CARTPOLE not in gym.registry:
    gym.register(
        id=POSITION_ONLY_CARTPOLE,
        entry_point="envs.cartpole:PositionOnlyCartPoleEnv",
        max_episode_steps=500,
        reward_threshold=475.0,
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
}
__all__ = [
    "NAMED_VARIANTS",
    "POSITION_ONLY_CARTPOLE",
    "BatchedEnv",
    "EnvError",
    "GymnasiumBatchedEnv",
    "PartialCartPoleEnv",
    "PositionOnlyCartPoleEnv",
    "StepResult",
    "TensorCartPole",
    "TensorPartialCartPole",
    "make_batched_env",
    "register_variant",
]

if TYPE_CHECKING:
    from envs.batched import BatchedEnv, EnvError, GymnasiumBatchedEnv, StepResult, make_batched_env
    from envs.cartpole import PositionOnlyCartPoleEnv
    from envs.partial_cartpole import PartialCartPoleEnv, TensorPartialCartPole
    from envs.tensor_cartpole import TensorCartPole


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'envs' has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])

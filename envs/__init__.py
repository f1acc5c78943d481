"""The worlds rlrnn trains in.

Importing this package registers ``PositionOnlyCartPole-v1`` and the named noisy and
flickering variants (:mod:`envs.variants`) with gymnasium.
"""

import gymnasium as gym

from envs.batched import BatchedEnv, EnvError, GymnasiumBatchedEnv, StepResult, make_batched_env
from envs.cartpole import PositionOnlyCartPoleEnv
from envs.partial_cartpole import PartialCartPoleEnv, TensorPartialCartPole
from envs.tensor_cartpole import TensorCartPole
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
]

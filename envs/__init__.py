"""The worlds rlrnn trains in.

Importing this package registers ``PositionOnlyCartPole-v1`` with gymnasium.
"""

import gymnasium as gym

from envs.batched import BatchedEnv, EnvError, GymnasiumBatchedEnv, StepResult, make_batched_env
from envs.cartpole import PositionOnlyCartPoleEnv
from envs.tensor_cartpole import TensorCartPole

POSITION_ONLY_CARTPOLE = "PositionOnlyCartPole-v1"

if POSITION_ONLY_CARTPOLE not in gym.registry:
    gym.register(
        id=POSITION_ONLY_CARTPOLE,
        entry_point="envs.cartpole:PositionOnlyCartPoleEnv",
        max_episode_steps=500,
        reward_threshold=475.0,
    )

__all__ = [
    "POSITION_ONLY_CARTPOLE",
    "BatchedEnv",
    "EnvError",
    "GymnasiumBatchedEnv",
    "PositionOnlyCartPoleEnv",
    "StepResult",
    "TensorCartPole",
    "make_batched_env",
]

"""What every batched environment is: the :class:`BatchedEnv` protocol and its :class:`StepResult`.

A batched environment holds ``num_envs`` environments, takes a ``(N,)`` tensor of action indices
(``(N, num_actions)`` floats when ``continuous``: a Box, clipped to its bounds by the env) and
returns tensors on its device. Finished environments reset in the same step; ``final_obs`` is the
observation that ended the episode (equal to ``obs`` where the episode goes on). ``terminated``
(the task ended) and ``truncated`` (the time limit) are separate: only termination should cut
bootstrapping.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import torch
from torch import Tensor


class StepResult(NamedTuple):
    obs: Tensor  # (N, obs_dim) float32, already reset where the episode ended
    reward: Tensor  # (N,) float32
    terminated: Tensor  # (N,) bool
    truncated: Tensor  # (N,) bool
    final_obs: Tensor  # (N, obs_dim) float32, the last observation of each episode


class BatchedEnv(Protocol):
    num_envs: int
    obs_dim: int
    num_actions: int  # Discrete: the number of actions; continuous: the Box's dimension
    continuous: bool  # Box actions; such an env also has action_low and action_high
    device: torch.device
    max_episode_steps: int | None
    reward_threshold: float | None

    def reset(self, seed: int = 0) -> Tensor: ...

    def step(self, actions: Tensor) -> StepResult: ...

    def close(self) -> None:
        """Release what the environments hold (processes, windows); the env is not used after."""

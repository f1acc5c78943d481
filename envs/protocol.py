"""What every batched environment is: the :class:`BatchedEnv` protocol and its :class:`StepResult`.

A batched environment holds ``num_envs`` environments, takes a ``(N,)`` tensor of action indices
(``(N, num_actions)`` floats when ``continuous``: a Box, clipped to its bounds by the env) and
returns tensors on its device. Finished environments reset in the same step; ``final_obs`` is the
observation that ended the episode (equal to ``obs`` where the episode goes on). ``terminated``
(the task ended) and ``truncated`` (the time limit) are separate: only termination should cut
bootstrapping.

A tensor env also names the velocities its state holds (:class:`HiddenVelocity`): what the probe
reads and the rendered overlay shows beside the agent's estimate.
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


class HiddenVelocity(NamedTuple):
    """One velocity a tensor env keeps in its ``state`` (hidden from a position-only agent).

    ``index`` is its column in the tensor env's ``(N, S)`` state and in its gymnasium twin's
    ``unwrapped.state`` (the same layout: the tensor envs are ports of gymnasium's).
    """

    key: str  # in reports (JSON): "cart_velocity"
    label: str  # in figures and tables: "cart velocity"
    short: str  # in the rendered overlay's narrow column: "cart"
    unit: str  # "m/s"
    index: int


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

"""The pendulum swing-up from positions alone: gymnasium's ``Pendulum-v1`` with the angular
velocity hidden, as a gymnasium env and as a batch of tensors on any torch device.

``PositionOnlyPendulum-v1`` observes ``[cos θ, sin θ]``; the agent must rebuild θ̇ from how the
angle moves, as on the cart-pole. Dynamics, rewards (``-(θ² + 0.1 θ̇² + 0.001 u²)``), the torque
bound (±2), the speed bound (±8) and the 200-step time limit are ``Pendulum-v1``'s; episodes never
terminate, only truncate. Its reward threshold, -200, is the usual bar for a swing-up that
balances (rl-baselines3-zoo's).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from gymnasium import spaces
from gymnasium.envs.classic_control.pendulum import PendulumEnv
from torch import Tensor

from envs.protocol import HiddenVelocity, StepResult
from envs.tensor_cartpole import EpisodeKeeping, hashed_uniform

GRAVITY = 10.0
MASS = 1.0
LENGTH = 1.0
DT = 0.05
MAX_TORQUE = 2.0
MAX_SPEED = 8.0
RESET_ANGLE, RESET_SPEED = math.pi, 1.0  # uniform in [-pi, pi] x [-1, 1], as gymnasium
REWARD_THRESHOLD = -200.0


class PositionOnlyPendulumEnv(PendulumEnv):
    """``Pendulum-v1`` observing ``[cos θ, sin θ]`` only."""

    def __init__(self, render_mode: str | None = None, g: float = GRAVITY) -> None:
        super().__init__(render_mode=render_mode, g=g)
        self.observation_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)

    def _get_obs(self) -> np.ndarray:
        return super()._get_obs()[:2]


class TensorPendulum(EpisodeKeeping):
    """``num_envs`` pendulums stepped together as tensors on ``device``.

    Args:
        num_envs: number of environments in the batch.
        device: torch device of every tensor the environment holds and returns.
        position_only: observe ``[cos θ, sin θ]`` (True) or ``[cos θ, sin θ, θ̇]`` (False).
        max_episode_steps: time limit after which an episode is truncated.

    Actions are ``(N, 1)`` torques, clipped to ±2 here (the policy's sample is not). Environment
    ``i`` is seeded with ``seed + i`` and draws its start state from a hash of (its seed, its
    episode number), as :class:`envs.tensor_cartpole.TensorCartPole` does.
    """

    continuous = True
    # The state is (θ, θ̇); a position-only agent sees cos θ and sin θ.
    HIDDEN_VELOCITIES = (
        HiddenVelocity("angular_velocity", "angular velocity", "pendulum", "rad/s", 1),
    )

    def __init__(
        self,
        num_envs: int,
        device: str | torch.device = "cpu",
        position_only: bool = True,
        max_episode_steps: int = 200,
    ) -> None:
        self.num_envs = num_envs
        self.device = torch.device(device)
        self.max_episode_steps = max_episode_steps
        self.reward_threshold: float | None = REWARD_THRESHOLD if position_only else None
        self.num_actions = 1
        self.action_low, self.action_high = -MAX_TORQUE, MAX_TORQUE
        self.obs_dim = 2 if position_only else 3
        self.state = torch.zeros(num_envs, 2, device=self.device)  # (θ, θ̇)
        self._keep_episodes()
        self._bounds = torch.tensor([RESET_ANGLE, RESET_SPEED], device=self.device)

    def observe(self, state: Tensor) -> Tensor:
        theta = state[:, 0]
        seen = [theta.cos(), theta.sin()] + ([] if self.obs_dim == 2 else [state[:, 1]])
        return torch.stack(seen, dim=1)

    def _start_states(self) -> Tensor:
        unit = hashed_uniform(self._seeds, self._episodes, 2, -1.0, 1.0)  # (N, 2)
        return unit * self._bounds

    def reset(self, seed: int = 0) -> Tensor:
        """Start every environment afresh; environment ``i`` is seeded with ``seed + i``."""
        self._restart(seed)
        self.state = self._start_states()
        return self.observe(self.state)

    def close(self) -> None:
        """Nothing to release: the environments are tensors."""

    def step(self, actions: Tensor) -> StepResult:
        """Apply each torque ``actions[:, 0]`` (clipped to ±2) for one time step of 0.05 s."""
        theta, theta_dot = self.state.unbind(1)
        u = actions.reshape(self.num_envs, -1)[:, 0].to(self.state.dtype)
        u = u.clamp(-MAX_TORQUE, MAX_TORQUE)
        upright = torch.remainder(theta + math.pi, 2 * math.pi) - math.pi
        costs = upright.square() + 0.1 * theta_dot.square() + 0.001 * u.square()
        accel = 3 * GRAVITY / (2 * LENGTH) * theta.sin() + 3.0 / (MASS * LENGTH**2) * u
        new_theta_dot = (theta_dot + accel * DT).clamp(-MAX_SPEED, MAX_SPEED)
        state = torch.stack((theta + new_theta_dot * DT, new_theta_dot), dim=1)
        self.elapsed += 1
        terminated = torch.zeros(self.num_envs, dtype=torch.bool, device=self.device)
        truncated = self.elapsed >= self.max_episode_steps
        final_obs = self.observe(state)
        self._episodes += truncated
        self.elapsed = torch.where(truncated, 0, self.elapsed)
        self.state = torch.where(truncated[:, None], self._start_states(), state)
        return StepResult(self.observe(self.state), -costs, terminated, truncated, final_obs)

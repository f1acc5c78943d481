"""Gymnasium's cart-pole with the velocities hidden: the agent sees ``[x, theta]`` only; and its
continuous-force twin, pushed with any force in ``[-1, 1] x 10 N``."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.envs.classic_control.cartpole import CartPoleEnv

# Indices of cart position and pole angle in the full state [x, x_dot, theta, theta_dot].
POSITION_INDICES = (0, 2)


class PositionOnlyCartPoleEnv(CartPoleEnv):
    """CartPole-v1 dynamics and rewards; the observation drops both velocities.

    A single observation cannot tell which way the pole is swinging: a policy needs memory
    (or a stack of past frames) to recover the momentum.
    """

    def __init__(self, render_mode: str | None = None, **kwargs: Any) -> None:
        super().__init__(render_mode=render_mode, **kwargs)
        # Honest bounds: the state leaves the episode at |x| > 2.4 and |theta| > 12 degrees,
        # and the last observation can overshoot by one step; CartPoleEnv uses twice the thresholds.
        high = np.array([self.x_threshold * 2, self.theta_threshold_radians * 2], dtype=np.float32)
        self.observation_space = spaces.Box(-high, high, dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        obs, info = super().reset(seed=seed, options=options)
        return obs[list(POSITION_INDICES)], info

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        return obs[list(POSITION_INDICES)], reward, terminated, truncated, info


class ContinuousPositionOnlyCartPoleEnv(PositionOnlyCartPoleEnv):
    """:class:`PositionOnlyCartPoleEnv` pushed by a force: the action is one number, clipped to
    ``[-1, 1]`` and scaled by the cart-pole's 10 N (``+1`` and ``-1`` are CartPole-v1's two
    actions); dynamics, termination, rewards and the 500-step limit are CartPole-v1's."""

    def __init__(self, render_mode: str | None = None, **kwargs: Any) -> None:
        super().__init__(render_mode=render_mode, **kwargs)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        self.full_force = self.force_mag

    def step(self, action):
        push = float(np.clip(np.asarray(action, dtype=np.float64).reshape(-1)[0], -1.0, 1.0))
        # CartPoleEnv pushes right with force_mag for action 1: set that force, then push right.
        self.force_mag = push * self.full_force
        self.action_space, box = spaces.Discrete(2), self.action_space
        try:
            return super().step(1)
        finally:
            self.action_space, self.force_mag = box, self.full_force

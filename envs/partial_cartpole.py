"""Noisy and flickering position-only cart-poles, as a gymnasium env and as a tensor batch.

The corruption of each observation is a pure function of (env seed, episode number, step in the
episode), hashed like the tensor cart-pole's start states: the gymnasium env and the tensor env
draw the same noise and the same flicker for the same seed, whatever the batch size or device.
Step ``t`` of an episode is the observation after ``t`` actions (``t = 0`` at reset).

- noise: ``obs + sigma * z`` with ``z`` standard normal (Box-Muller on two hashed uniforms),
  clipped to the observation box;
- flicker: the whole observation replaced by zeros where a third hashed uniform is ``< p``;
- last action (optional): a third observation, the action just taken as -1 or +1 (0 after a
  reset), neither noisy nor flickering: the agent knows what it did.

The ids, their parameters and their registration are in :mod:`envs.variants`.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor

from envs.cartpole import PositionOnlyCartPoleEnv
from envs.protocol import StepResult
from envs.tensor_cartpole import _MASK32, TensorCartPole, _hash32
from envs.variants import check_params

# Keeps the observation stream apart from the start-state stream of the same seed.
_STREAM_SALT = 0x5EED0B5


def observation_uniforms(seeds: Tensor, episodes: Tensor, steps: Tensor, n: int) -> Tensor:
    """``(N, n)`` uniforms in ``(0, 1)``, a pure function of each row's (seed, episode, step)."""
    lanes = torch.arange(n, device=seeds.device)
    key = _hash32(_hash32((seeds ^ _STREAM_SALT) & _MASK32) ^ (episodes & _MASK32))  # (N,)
    counters = (steps[:, None] * n + lanes[None, :]) & _MASK32  # (N, n), distinct per (step, lane)
    bits = _hash32(key[:, None] ^ counters) >> 8  # (N, n), 24 random bits
    return (bits.float() + 0.5) * (1.0 / (1 << 24))


def corrupt(
    obs: Tensor,
    seeds: Tensor,
    episodes: Tensor,
    steps: Tensor,
    sigma: float,
    flicker: float,
    high: Tensor,
) -> Tensor:
    """Noisy and/or flickering ``(N, 2)`` observations in the box ``[-high, high]``."""
    u = observation_uniforms(seeds, episodes, steps, 3)  # (N, 3)
    if sigma > 0:
        radius = (-2.0 * u[:, 0].log()).sqrt()
        angle = (2 * math.pi) * u[:, 1]
        z = torch.stack((radius * angle.cos(), radius * angle.sin()), dim=1)  # (N, 2)
        obs = torch.minimum(torch.maximum(obs + sigma * z, -high), high)
    if flicker > 0:
        obs = torch.where(u[:, 2:3] < flicker, torch.zeros_like(obs), obs)
    return obs


def push_direction(actions: Tensor) -> Tensor:
    """Actions 0 (left) and 1 (right) as the ``(N, 1)`` observation -1 and +1."""
    return (actions.float() * 2 - 1)[:, None]


class PartialCartPoleEnv(PositionOnlyCartPoleEnv):
    """``PositionOnlyCartPole-v1`` whose observations are noisy (``sigma``) and/or flicker
    (probability ``flicker`` of an all-zero observation), and with ``last_action`` also show
    the action just taken (-1 left, +1 right, 0 after a reset).

    ``reset(seed=s)`` seeds the observation stream with ``s`` (episode 0); a reset without a seed
    starts the next episode of the same stream (a stream never seeded draws its seed from the
    env's generator).
    """

    def __init__(
        self,
        render_mode: str | None = None,
        sigma: float = 0.0,
        flicker: float = 0.0,
        last_action: bool = False,
    ) -> None:
        check_params(sigma, flicker)
        super().__init__(render_mode=render_mode)
        self.sigma, self.flicker, self.last_action = float(sigma), float(flicker), last_action
        self._high = torch.as_tensor(self.observation_space.high)
        if last_action:
            high = np.append(self.observation_space.high, np.float32(1.0))
            self.observation_space = spaces.Box(-high, high, dtype=np.float32)
        self._stream: int | None = None
        self._episode = 0
        self._t = 0

    def _observe(self, obs: np.ndarray, push: float) -> np.ndarray:
        seen = self._corrupt(obs)
        return np.append(seen, np.float32(push)) if self.last_action else seen

    def _corrupt(self, obs: np.ndarray) -> np.ndarray:
        def one(value: int) -> Tensor:
            return torch.tensor([value], dtype=torch.long)

        seen = corrupt(
            torch.as_tensor(obs)[None],  # (2,) -> (1, 2)
            one(self._stream or 0),
            one(self._episode),
            one(self._t),
            self.sigma,
            self.flicker,
            self._high,
        )
        return seen[0].numpy()

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        obs, info = super().reset(seed=seed, options=options)
        if seed is not None:
            self._stream, self._episode = int(seed), 0
        elif self._stream is None:
            self._stream, self._episode = int(self.np_random.integers(2**32)), 0
        else:
            self._episode += 1
        self._t = 0
        return self._observe(obs, 0.0), info

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        self._t += 1
        return self._observe(obs, 2.0 * int(action) - 1), reward, terminated, truncated, info


class TensorPartialCartPole(TensorCartPole):
    """:class:`TensorCartPole` (position only) with :class:`PartialCartPoleEnv`'s observations.

    Args:
        num_envs: number of environments in the batch.
        device: torch device of every tensor the environment holds and returns.
        sigma: standard deviation of the Gaussian noise on ``[x, theta]`` (0: none).
        flicker: probability that an observation is all zeros.
        last_action: append the action just taken (-1, +1; 0 after a reset) to the observation.
        max_episode_steps: time limit after which an episode is truncated.
        dtype: floating type of the physical state.
    """

    def __init__(
        self,
        num_envs: int,
        device: str | torch.device = "cpu",
        sigma: float = 0.0,
        flicker: float = 0.0,
        last_action: bool = False,
        max_episode_steps: int = 500,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        check_params(sigma, flicker)
        super().__init__(num_envs, device, True, max_episode_steps, dtype)
        self.sigma, self.flicker, self.last_action = float(sigma), float(flicker), last_action
        self.obs_dim += int(last_action)
        high = PositionOnlyCartPoleEnv().observation_space.high
        self._high = torch.as_tensor(high, device=self.device)

    def reset(self, seed: int = 0) -> Tensor:
        obs = super().reset(seed)
        obs = corrupt(
            obs, self._seeds, self._episodes, self.elapsed, self.sigma, self.flicker, self._high
        )
        return torch.cat((obs, torch.zeros_like(obs[:, :1])), 1) if self.last_action else obs

    # No state of its own to save: the stream is a function of seeds, episodes and elapsed.
    def step(self, actions: Tensor) -> StepResult:
        steps = self.elapsed + 1  # the step index of the observation this step produces
        result = super().step(actions)
        ended = (result.terminated | result.truncated).long()
        # Both observations in one call: on a CPU each tensor operation's overhead is the cost.
        seen = corrupt(
            torch.cat((result.final_obs, result.obs)),  # 2 x (N, 2) -> (2N, 2)
            self._seeds.repeat(2),
            torch.cat((self._episodes - ended, self._episodes)),
            torch.cat((steps, self.elapsed)),
            self.sigma,
            self.flicker,
            self._high,
        )
        final_obs, obs = seen.split(self.num_envs)  # (2N, 2) -> 2 x (N, 2)
        if self.last_action:  # the push just made; none yet in an episode that starts anew
            push = push_direction(actions)
            final_obs = torch.cat((final_obs, push), 1)
            obs = torch.cat((obs, push * (1 - ended[:, None])), 1)
        return result._replace(obs=obs, final_obs=final_obs)

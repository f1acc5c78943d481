"""A batch of cart-poles written as tensor operations, so it runs on any torch device.

The dynamics, termination, rewards and 500-step truncation are gymnasium's ``CartPole-v1``
(Euler integration). Finished environments reset in the same ``step`` call; the observation
that ended the episode comes back as ``final_obs``.

Each environment ``i`` is seeded with ``seed + i`` and draws its start state from a counter-based
hash of (its seed, its episode number): episodes are the same whatever the batch size or device.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from envs.protocol import HiddenVelocity, StepResult

GRAVITY = 9.8
MASS_CART = 1.0
MASS_POLE = 0.1
TOTAL_MASS = MASS_CART + MASS_POLE
HALF_POLE_LENGTH = 0.5
POLE_MASS_LENGTH = MASS_POLE * HALF_POLE_LENGTH
FORCE_MAG = 10.0
TAU = 0.02
THETA_THRESHOLD = 12 * 2 * math.pi / 360
X_THRESHOLD = 2.4
RESET_BOUND = 0.05

# Start states are hashed for this many upcoming episodes per environment at a time: an env
# finishes at most one episode per step, so a table refilled every TABLE_STEPS steps never runs out.
TABLE_STEPS = 16

_MASK32 = 0xFFFFFFFF


def _hash32(x: Tensor) -> Tensor:
    """PCG-RXS-M-XS hash of uint32 values held in int64 (products stay below 2**62)."""
    state = (x * 747796405 + 2891336453) & _MASK32
    word = (((state >> ((state >> 28) + 4)) ^ state) * 277803737) & _MASK32
    return (word >> 22) ^ word


def hashed_uniform(seeds: Tensor, counters: Tensor, n: int, low: float, high: float) -> Tensor:
    """``(N, n)`` uniforms in ``[low, high)``, a pure function of each row's seed and counter."""
    lanes = torch.arange(n, device=seeds.device)
    key = _hash32(_hash32(seeds & _MASK32) ^ (counters & _MASK32))  # (N,)
    bits = _hash32(key[:, None] ^ lanes[None, :]) >> 8  # (N, n), 24 random bits
    return low + (high - low) * bits.float() * (1.0 / (1 << 24))


class EpisodeKeeping:
    """What every tensor env keeps beside its physical ``state``: each environment's seed, the
    number of its current episode and the steps taken in it (its start states hash the first
    two), reset together and saved together for resuming a run bit for bit."""

    num_envs: int
    device: torch.device
    state: Tensor

    def _keep_episodes(self) -> None:
        self.elapsed = torch.zeros(self.num_envs, dtype=torch.long, device=self.device)
        self._seeds = torch.arange(self.num_envs, device=self.device)
        self._episodes = torch.zeros(self.num_envs, dtype=torch.long, device=self.device)

    def _restart(self, seed: int) -> None:
        """Environment ``i`` seeded with ``seed + i``, at the start of its first episode."""
        self._seeds = seed + torch.arange(self.num_envs, device=self.device)
        self._episodes.zero_()
        self.elapsed.zero_()

    def state_dict(self) -> dict[str, Any]:
        """Everything that decides the coming steps, for resuming a run bit for bit."""
        return {
            "state": self.state,
            "elapsed": self.elapsed,
            "seeds": self._seeds,
            "episodes": self._episodes,
        }

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        if saved["state"].shape != self.state.shape:
            raise ValueError(
                f"saved env state is for {saved['state'].shape[0]} envs, not {self.num_envs}"
            )
        self.state = saved["state"].to(dtype=self.state.dtype, device=self.device)
        self.elapsed = saved["elapsed"].to(self.device)
        self._seeds = saved["seeds"].to(self.device)
        self._episodes = saved["episodes"].to(self.device)


class TensorCartPole(EpisodeKeeping):
    """``num_envs`` cart-poles stepped together as tensors on ``device``.

    Args:
        num_envs: number of environments in the batch.
        device: torch device of every tensor the environment holds and returns.
        position_only: observe ``[x, theta]`` (True) or the full state (False).
        max_episode_steps: time limit after which an episode is truncated.
        dtype: floating type of the physical state.
        continuous: push with a force: actions ``(N, 1)`` clipped to ``[-1, 1]`` times 10 N
            (``+1``/``-1``: the Discrete actions 1/0), not an index.
    """

    # The state is (x, x_dot, theta, theta_dot); a position-only agent sees x and theta.
    HIDDEN_VELOCITIES = (
        HiddenVelocity("cart_velocity", "cart velocity", "cart", "m/s", 1),
        HiddenVelocity("pole_angular_velocity", "pole angular velocity", "pole", "rad/s", 3),
    )

    def __init__(
        self,
        num_envs: int,
        device: str | torch.device = "cpu",
        position_only: bool = True,
        max_episode_steps: int = 500,
        dtype: torch.dtype = torch.float32,
        continuous: bool = False,
    ) -> None:
        self.num_envs = num_envs
        self.continuous = continuous
        self.action_low, self.action_high = -1.0, 1.0
        self.device = torch.device(device)
        self.max_episode_steps = max_episode_steps
        self.reward_threshold: float | None = 475.0 if max_episode_steps == 500 else None
        self.num_actions = 1 if continuous else 2
        observed = [0, 2] if position_only else [0, 1, 2, 3]
        self._observed = torch.tensor(observed, device=self.device)
        self.obs_dim = len(observed)
        self.dtype = dtype
        self.state = torch.zeros(num_envs, 4, device=self.device, dtype=dtype)
        self._keep_episodes()
        self._rows = torch.arange(num_envs, device=self.device)
        self._lanes = torch.arange(TABLE_STEPS + 1, device=self.device)

    def observe(self, state: Tensor) -> Tensor:
        """Observation of a ``(N, 4)`` state as float32 ``(N, obs_dim)``."""
        return state.index_select(1, self._observed).float()

    def _refill_start_table(self) -> None:
        """Hash the start states of each env's next ``TABLE_STEPS + 1`` episodes."""
        episodes = self._episodes[:, None] + self._lanes  # (N, K)
        seeds = self._seeds[:, None].expand_as(episodes)
        table = hashed_uniform(seeds.flatten(), episodes.flatten(), 4, -RESET_BOUND, RESET_BOUND)
        self._table = table.view(self.num_envs, -1, 4).to(self.dtype)  # (N*K, 4) -> (N, K, 4)
        self._table_base = self._episodes.clone()
        self._steps_since_refill = 0

    def _start_states(self) -> Tensor:
        """The start state of each env's current episode, ``(N, 4)``."""
        return self._table[self._rows, self._episodes - self._table_base]

    def _hashed_start_states(self) -> Tensor:
        """:meth:`_start_states` computed afresh, without the table, ``(N, 4)``."""
        start = hashed_uniform(self._seeds, self._episodes, 4, -RESET_BOUND, RESET_BOUND)
        return start.to(self.dtype)

    def reset(self, seed: int = 0) -> Tensor:
        """Start every environment afresh; environment ``i`` is seeded with ``seed + i``."""
        self._restart(seed)
        self._refill_start_table()
        self.state = self._start_states()
        return self.observe(self.state)

    def state_dict(self) -> dict[str, Any]:
        """The episode keeping's, and the table of upcoming start states."""
        table = {"table": self._table, "table_base": self._table_base}
        return super().state_dict() | table | {"steps_since_refill": self._steps_since_refill}

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        super().load_state_dict(saved)
        self._table = saved["table"].to(dtype=self.dtype, device=self.device)
        self._table_base = saved["table_base"].to(self.device)
        self._steps_since_refill = int(saved["steps_since_refill"])

    def close(self) -> None:
        """Nothing to release: the environments are tensors."""

    def step(self, actions: Tensor) -> StepResult:
        """Push each cart left (action 0) or right (action 1), or with a force (``continuous``),
        for one time step of 0.02 s."""
        x, x_dot, theta, theta_dot = self.state.unbind(1)
        if self.continuous:
            force = actions.reshape(self.num_envs, -1)[:, 0].to(self.dtype).clamp(-1, 1) * FORCE_MAG
        else:
            force = (actions.to(self.dtype) * 2 - 1) * FORCE_MAG
        cos, sin = theta.cos(), theta.sin()
        temp = (force + POLE_MASS_LENGTH * theta_dot.square() * sin) / TOTAL_MASS
        theta_acc = (GRAVITY * sin - cos * temp) / (
            HALF_POLE_LENGTH * (4.0 / 3.0 - MASS_POLE * cos.square() / TOTAL_MASS)
        )
        x_acc = temp - POLE_MASS_LENGTH * theta_acc * cos / TOTAL_MASS
        state = torch.stack(
            (
                x + TAU * x_dot,
                x_dot + TAU * x_acc,
                theta + TAU * theta_dot,
                theta_dot + TAU * theta_acc,
            ),
            dim=1,
        )
        self.elapsed += 1
        terminated = (state[:, 0].abs() > X_THRESHOLD) | (state[:, 2].abs() > THETA_THRESHOLD)
        truncated = self.elapsed >= self.max_episode_steps
        final_obs = self.observe(state)

        # Same-step auto-reset, computed for every env and selected, so nothing syncs with the host.
        # Under torch.compile the start states are hashed at every step (the hash fuses into the
        # step's kernels, where a table refilled on a Python counter would recompile the step
        # for every count); the values are the table's, a pure function of seed and episode.
        compiling = torch.compiler.is_compiling()
        if not compiling:
            if self._steps_since_refill >= TABLE_STEPS:
                self._refill_start_table()
            self._steps_since_refill += 1
        done = terminated | truncated
        self._episodes += done
        self.elapsed = torch.where(done, 0, self.elapsed)
        if compiling:
            starts = self._hashed_start_states()
            self._steps_since_refill = TABLE_STEPS  # the table fell behind: refill before using it
        else:
            starts = self._start_states()
        self.state = torch.where(done[:, None], starts, state)
        reward = torch.ones(self.num_envs, device=self.device)
        return StepResult(self.observe(self.state), reward, terminated, truncated, final_obs)

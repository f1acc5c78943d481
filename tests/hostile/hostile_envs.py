"""Envs that misbehave, for the bad-input tests: ``--env hostile_envs:NanObs-v0`` etc."""

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class NanObs(gym.Env):
    """Observations turn NaN after ``after`` steps of an episode."""

    def __init__(self, after: int = 3, reward: float = 1.0, nan_obs: bool = True) -> None:
        self.observation_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.action_space = spaces.Discrete(2)
        self.after, self.reward, self.nan_obs, self.t = after, reward, nan_obs, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(2, np.float32), {}

    def step(self, action):
        self.t += 1
        obs = np.full(2, np.nan if self.nan_obs and self.t > self.after else 0.1, np.float32)
        return obs, self.reward, self.t >= 20, False, {}


class EmptyObs(NanObs):
    def __init__(self) -> None:
        super().__init__()
        self.observation_space = spaces.Box(-1.0, 1.0, (0,), np.float32)


gym.register("NanObs-v0", entry_point=NanObs, max_episode_steps=50)
gym.register(
    "InfReward-v0",
    entry_point=NanObs,
    kwargs={"reward": float("inf"), "nan_obs": False},
    max_episode_steps=50,
)
gym.register("EmptyObs-v0", entry_point=EmptyObs, max_episode_steps=50)


class OtherActions(NanObs):
    """Actions rlrnn cannot act in: ``space`` (infinite Box bounds, MultiBinary, Tuple, Dict)."""

    def __init__(self, space: spaces.Space) -> None:
        super().__init__()
        self.action_space = space


for _name, _space in {
    "InfiniteBoxActions-v0": spaces.Box(-np.inf, np.inf, (1,), np.float32),
    "MultiBinaryActions-v0": spaces.MultiBinary(2),
    "TupleActions-v0": spaces.Tuple((spaces.Discrete(2), spaces.Discrete(2))),
    "DictActions-v0": spaces.Dict({"push": spaces.Discrete(2)}),
}.items():
    gym.register(_name, entry_point=OtherActions, kwargs={"space": _space}, max_episode_steps=50)

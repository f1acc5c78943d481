"""Envs with observation spaces beyond Box, for the encoding tests: ``--env spaces_envs:...``."""

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class MultiDiscreteObs(gym.Env):
    """Observes a MultiDiscrete ``[cue, noise]``; reward 1 when the action equals the cue."""

    def __init__(self) -> None:
        self.observation_space = spaces.MultiDiscrete([2, 3], start=[0, 1])
        self.action_space = spaces.Discrete(2)
        self.t = 0

    def _obs(self) -> np.ndarray:
        self.cue = int(self.np_random.integers(2))
        return np.array([self.cue, 1 + self.np_random.integers(3)], dtype=np.int64)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        reward = float(int(action) == self.cue)
        self.t += 1
        return self._obs(), reward, self.t >= 10, False, {}


class DictObs(MultiDiscreteObs):
    def __init__(self) -> None:
        super().__init__()
        self.observation_space = spaces.Dict({"cue": spaces.Discrete(2)})


gym.register("MultiDiscreteObs-v0", entry_point=MultiDiscreteObs, max_episode_steps=50)
gym.register("DictObs-v0", entry_point=DictObs, max_episode_steps=50)

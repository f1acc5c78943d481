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


class HugeDiscreteObs(MultiDiscreteObs):
    """Observes a Discrete(10**9): its one-hot is a billion numbers."""

    def __init__(self) -> None:
        super().__init__()
        self.observation_space = spaces.Discrete(10**9)

    def _obs(self) -> int:
        self.cue = 0
        return 0


class OutOfSpaceObs(MultiDiscreteObs):
    """Declares Discrete(3) observations and, from its second step on, returns 7."""

    def __init__(self) -> None:
        super().__init__()
        self.observation_space = spaces.Discrete(3)

    def _obs(self) -> int:
        self.cue = 0
        return 7 if self.t >= 2 else 0


gym.register("HugeDiscreteObs-v0", entry_point=HugeDiscreteObs, max_episode_steps=50)
gym.register("OutOfSpaceObs-v0", entry_point=OutOfSpaceObs, max_episode_steps=50)

"""Evaluation: play whole episodes with a policy on a batched env, one episode per environment."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from envs import make_batched_env


class Policy(Protocol):
    """What the evaluator needs of a policy: rlrnn's agents and the SB3 adapter both have it."""

    def initial_state(self, batch_size: int, device: torch.device | str) -> Any: ...

    def act(
        self, obs: torch.Tensor, state: Any, episode_starts: torch.Tensor, deterministic: bool
    ) -> tuple[torch.Tensor, Any]: ...


@dataclass(frozen=True)
class EvalResult:
    returns: np.ndarray  # (episodes,)
    lengths: np.ndarray  # (episodes,)

    @property
    def mean(self) -> float:
        return float(self.returns.mean())

    @property
    def std(self) -> float:
        return float(self.returns.std())

    def to_dict(self) -> dict[str, float | int]:
        return {
            "mean_return": self.mean,
            "std_return": self.std,
            "min_return": float(self.returns.min()),
            "max_return": float(self.returns.max()),
            "mean_length": float(self.lengths.mean()),
            "episodes": len(self.returns),
        }


@torch.no_grad()
def evaluate(
    agent: Policy,
    env_id: str,
    episodes: int,
    seed: int = 10_000,
    deterministic: bool = True,
    device: torch.device | str = "cpu",
    obs_noise: float = 0.0,
    max_episode_steps: int | None = None,
    check_every: int = 32,
    max_steps: int = 100_000,
) -> EvalResult:
    """Run ``episodes`` episodes in parallel, one per environment, and collect their returns.

    Evaluation seeds default far from training seeds so the start states are unseen ones.
    Robustness checks: ``obs_noise`` adds Gaussian noise of that standard deviation to what the
    policy observes (seeded by ``seed``); ``max_episode_steps`` replaces the env's time limit.
    """
    env = make_batched_env(env_id, episodes, device, max_episode_steps)
    noise = torch.Generator(device=device).manual_seed(seed)

    def observe(obs: torch.Tensor) -> torch.Tensor:
        if obs_noise == 0:
            return obs
        return obs + obs_noise * torch.randn(obs.shape, generator=noise, device=obs.device)

    obs = env.reset(seed)
    starts = torch.ones(episodes, device=device)
    state = agent.initial_state(episodes, device)
    returns = torch.zeros(episodes, device=device)
    lengths = torch.zeros(episodes, device=device)
    running = torch.ones(episodes, dtype=torch.bool, device=device)
    step = 0
    while True:
        actions, state = agent.act(observe(obs), state, starts, deterministic)
        result = env.step(actions)
        returns += result.reward * running
        lengths += running
        running &= ~(result.terminated | result.truncated)
        obs, starts = result.obs, (result.terminated | result.truncated).float()
        step += 1
        if step >= max_steps or (step % check_every == 0 and not running.any()):  # rare syncs
            break
    close = getattr(env, "close", None)
    if close is not None:
        close()
    return EvalResult(returns.cpu().numpy(), lengths.cpu().numpy())

"""Evaluation: play whole episodes with a policy on a batched env, one episode per environment
(:func:`rlrnn.core.player.play`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from envs import make_batched_env
from rlrnn.core.player import FirstEpisodes, Policy, Step, play


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
        return obs + obs_noise * torch.randn(obs.shape, generator=noise, device=obs.device)

    returns = torch.zeros(episodes, device=device)
    lengths = torch.zeros(episodes, device=device)
    first = FirstEpisodes(episodes, device, check_every)

    def count(step: Step) -> bool:
        returns.add_(step.result.reward * first.running)
        lengths.add_(first.running)
        return first.going_on(step)

    try:
        play(agent, env, count, seed, deterministic, max_steps, observe if obs_noise else None)
    finally:
        env.close()
    return EvalResult(returns.cpu().numpy(), lengths.cpu().numpy())

"""Evaluation: whole episodes played with a policy on a batched env, one episode per environment
(:func:`rlrnn.learning.acting.step_policy`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from envs import make_batched_env
from rlrnn.errors import UsageError
from rlrnn.learning.acting import FirstEpisodes, Policy, Step, step_policy
from rlrnn.learning.fields import check_argument, check_device, check_seed
from rlrnn.learning.memory import check_policy_memory


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
    Every argument is checked first, as the command line checks its options (a UsageError, or
    an :class:`envs.EnvError` for an env rlrnn cannot use).
    """
    device = _check_arguments(agent, env_id, episodes, seed, deterministic, device, obs_noise)
    for name, value in (("check_every", check_every), ("max_steps", max_steps)):
        _check_count(value, name)
    if max_episode_steps is not None:
        _check_count(max_episode_steps, "max_episode_steps")
    check_policy_memory(agent, env_id, episodes, device, "episodes")
    env = make_batched_env(env_id, episodes, device, max_episode_steps)
    try:
        _check_fit(agent, env_id, env.obs_dim, env.num_actions)
    except UsageError:
        env.close()
        raise
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
        step_policy(
            agent, env, count, seed, deterministic, max_steps, observe if obs_noise else None
        )
    finally:
        env.close()
    return EvalResult(returns.cpu().numpy(), lengths.cpu().numpy())


def _check_count(value: int, name: str) -> None:
    check_argument(value, int, name)
    if value < 1:
        raise UsageError(f"{name} must be >= 1, got {value}")


def _check_arguments(
    agent: Policy,
    env_id: str,
    episodes: int,
    seed: int,
    deterministic: bool,
    device: torch.device | str,
    obs_noise: float,
) -> torch.device:
    """:func:`evaluate`'s arguments, checked before anything is made; returns the device."""
    if not all(callable(getattr(agent, name, None)) for name in ("initial_state", "act")):
        raise UsageError(
            f"evaluate() takes a policy (from rlrnn.load_agent), got {type(agent).__name__}"
        )
    check_argument(env_id, str, "env_id")
    _check_count(episodes, "episodes")
    check_seed(seed)
    check_argument(deterministic, bool, "deterministic")
    check_argument(obs_noise, float, "obs_noise")  # finite
    if obs_noise < 0:
        raise UsageError(f"obs_noise must be >= 0, got {obs_noise}")
    return check_device(device)


def _check_fit(agent: Policy, env_id: str, obs_dim: int, num_actions: int) -> None:
    """Refuse an env whose observations or actions differ in size from the policy's."""
    for name, here in (("obs_dim", obs_dim), ("num_actions", num_actions)):
        wanted = getattr(agent, name, None)
        if wanted is not None and int(wanted) != here:
            what = name.replace("_", " ").replace("dim", "size")
            raise UsageError(
                f"the policy has {what} {int(wanted)}, env {env_id!r} has {here}: evaluate it on"
                " the env it was trained on"
            )

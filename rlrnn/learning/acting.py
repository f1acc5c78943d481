"""The one act loop: a policy stepped through a batched env, each step handed to a callback.

Evaluation, the probe, gradient flow and rendering all act this way; the trainer's rollout fills
its storage in a loop of its own (the hot loop) with the same step semantics:

- ``episode_starts[t] = 1`` means ``obs[t]`` is the first observation of an episode, and the
  policy zeroes its state *before* consuming it (:func:`episode_starts_after` gives them);
- the env resets a finished episode in the same step, so ``result.obs`` is already the next
  episode's first observation and ``result.final_obs`` the one that ended it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import torch
from torch import Tensor

from envs import BatchedEnv, StepResult


class Policy(Protocol):
    """What the player needs of a policy: rlrnn's agents and the SB3 adapter both have it."""

    def initial_state(self, batch_size: int, device: torch.device | str) -> Any: ...

    def act(
        self, obs: Tensor, state: Any, episode_starts: Tensor, deterministic: bool
    ) -> tuple[Tensor, Any]: ...


class Step(NamedTuple):
    """One step of :func:`step_policy`."""

    t: int  # steps played before this one
    obs: Tensor  # (B, D) what the policy saw
    episode_starts: Tensor  # (B,) float, 1 where obs begins an episode
    actions: Tensor  # (B,)
    state: Any  # the policy's state after seeing obs
    result: StepResult  # the env's answer to the actions


class FirstEpisodes:
    """Which environments are still in their first episode: ``running``, ``(B,)`` bool on the
    device. ``going_on(step)`` folds in a step and says whether any is left, asking the device
    only every ``check_every`` steps (each answer is a host sync)."""

    def __init__(self, num_envs: int, device: torch.device | str, check_every: int) -> None:
        self.running = torch.ones(num_envs, dtype=torch.bool, device=device)
        self.check_every = check_every

    def going_on(self, step: Step) -> bool:
        self.running.logical_and_(~(step.result.terminated | step.result.truncated))
        return (step.t + 1) % self.check_every != 0 or bool(self.running.any())


def episode_starts_after(result: StepResult) -> Tensor:
    """``(B,)`` float: 1 where ``result.obs`` begins an episode (the last one ended either way)."""
    return (result.terminated | result.truncated).float()


def step_policy(
    policy: Policy,
    env: BatchedEnv,
    on_step: Callable[[Step], bool],
    seed: int = 0,
    deterministic: bool = True,
    max_steps: int | None = None,
    observe: Callable[[Tensor], Tensor] | None = None,
) -> int:
    """Reset ``env`` with ``seed`` and step ``policy`` through it until ``on_step`` returns False
    or ``max_steps`` steps are played; returns the steps played. ``observe`` changes what the
    policy sees (e.g. adds noise). The caller owns ``env`` (and closes it)."""
    device = env.device
    obs = env.reset(seed)
    starts = torch.ones(env.num_envs, device=device)
    state = policy.initial_state(env.num_envs, device)
    t = 0
    while max_steps is None or t < max_steps:
        seen = obs if observe is None else observe(obs)
        actions, state = policy.act(seen, state, starts, deterministic)
        result = env.step(actions)
        going_on = on_step(Step(t, seen, starts, actions, state, result))
        t += 1
        if not going_on:
            break
        obs, starts = result.obs, episode_starts_after(result)
    return t

"""Generalised advantage estimation with termination and truncation kept apart.

Termination ends the return: nothing follows a fallen pole. Truncation (a time limit) does not:
the return goes on past the cut, so the value of the final observation, seen with the recurrent
state that saw it, is added to the last reward (``bootstrap_truncated``). After that both kinds of
episode end stop the recursion, since the next observation belongs to a new episode.
"""

from __future__ import annotations

import torch
from torch import Tensor


def bootstrap_truncated(
    rewards: Tensor, truncated: Tensor, final_values: Tensor, gamma: float
) -> Tensor:
    """``rewards + gamma * V(final_obs)`` where an episode was cut by the time limit only.

    Args:
        rewards: ``(T, B)`` rewards.
        truncated: ``(T, B)`` bool, truncated and not terminated.
        final_values: ``(T, B)`` values of the final observations.
    """
    return rewards + gamma * final_values * truncated.to(rewards.dtype)


def compute_gae(
    rewards: Tensor,
    values: Tensor,
    dones: Tensor,
    last_value: Tensor,
    gamma: float,
    gae_lambda: float,
) -> tuple[Tensor, Tensor]:
    """Advantages and returns ``(T, B)``.

    Args:
        rewards: ``(T, B)`` rewards, truncation already bootstrapped.
        values: ``(T, B)`` values of the observations the actions were taken in.
        dones: ``(T, B)`` 1 where the episode ended (either way) at step ``t``.
        last_value: ``(B,)`` value of the observation after the last step.
    """
    not_done = 1.0 - dones.to(rewards.dtype)
    next_values = torch.cat([values[1:], last_value[None]])  # (T, B): V(s_{t+1})
    deltas = rewards + gamma * next_values * not_done - values
    advantages = torch.empty_like(rewards)
    running = torch.zeros_like(last_value)
    for t in reversed(range(rewards.shape[0])):
        running = deltas[t] + gamma * gae_lambda * not_done[t] * running
        advantages[t] = running
    return advantages, advantages + values

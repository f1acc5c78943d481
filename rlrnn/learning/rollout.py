"""A rollout: what the learner collects, how it is stored, and the acting step that fills it.

``RolloutStorage`` is the rollout's step-by-step storage, allocated once and written in place:
its tensors keep their addresses from one rollout to the next, as a CUDA graph capture of the
loop needs. ``act_step`` (one acting step of the rollout) is a function of its inputs only, so
:mod:`rlrnn.learning.ppo` calls it eagerly and :mod:`rlrnn.learning.compiled` swaps in its
``torch.compile``d version (with :func:`rlrnn.learning.loss.ppo_loss`).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from agents import ActorCritic, RecurrentState, RunningNorm


class Rollout(NamedTuple):
    obs: Tensor  # (T, B, D)
    episode_starts: Tensor  # (T, B) float, 1 where obs[t] starts an episode
    actions: Tensor  # (T, B) long, or (T, B, A) float for Box actions
    logprobs: Tensor  # (T, B)
    values: Tensor  # (T, B)
    advantages: Tensor  # (T, B)
    returns: Tensor  # (T, B)
    initial_state: RecurrentState  # (L, B, H): the state before obs[0]
    # With ``bptt_len`` K: the state before each chunk's first step obs[c*K], chunk-major
    # (c*B + b is env b's chunk c), detached. None: one chunk, the whole rollout.
    chunk_states: RecurrentState | None = None  # (L, T/K*B, H)

    def sequences(self) -> Rollout:
        """The sequences the update replays: the rollout itself, or with ``chunk_states`` each
        env's T steps cut into T/K chunks of K steps, ``(K, T/K*B)``, chunk-major as
        ``chunk_states`` is, each replayed from its chunk's state (the episode starts inside
        a chunk reset the state there, as in the whole rollout). Copies, once per update."""
        if self.chunk_states is None:
            return self
        T, B = self.obs.shape[:2]
        chunks = self.chunk_states.h.shape[1] // B
        K = T // chunks

        def cut(x: Tensor) -> Tensor:  # (T, B, ...) -> (C, K, B, ...) -> (K, C*B, ...)
            rest = x.shape[2:]
            return x.reshape(chunks, K, B, *rest).transpose(0, 1).reshape(K, chunks * B, *rest)

        fields = (self.obs, self.episode_starts, self.actions, self.logprobs, self.values)
        fields += (self.advantages, self.returns)
        return Rollout(*map(cut, fields), initial_state=self.chunk_states)


class RolloutStorage(NamedTuple):
    """What the rollout loop writes at each step ``t``: allocated once per trainer."""

    obs: Tensor  # (T, B, D)
    final_obs: Tensor  # (T, B, D) the observation each step ended on (before a reset)
    episode_starts: Tensor  # (T, B) float
    logits: Tensor  # (T, B, A): logits, or a Gaussian's mean for Box actions (and gSDE's features)
    actions: Tensor  # (T, B) long, or (T, B, A) float for Box actions
    values: Tensor  # (T, B)
    rewards: Tensor  # (T, B)
    terminated: Tensor  # (T, B) bool
    truncated: Tensor  # (T, B) bool
    state_h: Tensor  # (T, L, B, H) the state that saw obs[t]
    state_c: Tensor  # (T, L, B, H)
    episode_return: Tensor  # (T, B) running return of each env's episode after step t
    episode_length: Tensor  # (T, B)

    @classmethod
    def allocate(
        cls,
        steps: int,
        num_envs: int,
        obs_dim: int,
        num_actions: int,
        head_outputs: int,
        state: RecurrentState,
        device: torch.device,
        continuous: bool = False,
    ) -> RolloutStorage:
        """Buffers for ``steps`` steps of ``num_envs`` envs; ``head_outputs``: what the action
        head reads per step (``num_actions`` logits or means, and gSDE's features after them)."""

        def buffer(*shape: int, dtype: torch.dtype = torch.float32) -> Tensor:
            return torch.empty(steps, *shape, dtype=dtype, device=device)

        B = num_envs
        return cls(
            obs=buffer(B, obs_dim),
            final_obs=buffer(B, obs_dim),
            episode_starts=buffer(B),
            logits=buffer(B, head_outputs),
            actions=buffer(B, num_actions) if continuous else buffer(B, dtype=torch.long),
            values=buffer(B),
            rewards=buffer(B),
            terminated=buffer(B, dtype=torch.bool),
            truncated=buffer(B, dtype=torch.bool),
            state_h=buffer(*state.h.shape),  # (L, B, H); a frame stack's c is empty
            state_c=buffer(*state.c.shape),
            episode_return=buffer(B),
            episode_length=buffer(B),
        )


def act_step(
    agent: ActorCritic, obs: Tensor, state: RecurrentState, starts: Tensor
) -> tuple[Tensor, Tensor, RecurrentState, Tensor]:
    """One acting step of the rollout: logits ``(B, A)``, values ``(B,)``, the new state and
    the sampled actions, ``(B,)`` or ``(B, A)`` (compiled with ``loss_fn`` when a run's
    ``compile`` is on)."""
    logits, value, state = agent(obs[None], state, starts[None])  # (B, D) -> (1, B, D)
    return logits[0], value[0], state, agent.action_head.sample(logits[0])


class EpisodeStats(NamedTuple):
    """Sums over the episodes that finished during one rollout (device tensors)."""

    count: Tensor
    return_sum: Tensor
    length_sum: Tensor


class RunningReturnScale(nn.Module):
    """Scales rewards by the running std of the discounted return (as VecNormalize does)."""

    def __init__(self, num_envs: int, gamma: float, device: torch.device):
        super().__init__()
        self.gamma = gamma
        self.register_buffer("returns", torch.zeros(num_envs, device=device))
        self.stats = RunningNorm(1).to(device)

    @torch.no_grad()
    def forward(self, rewards: Tensor, dones: Tensor) -> Tensor:
        """Update the statistics with a ``(T, B)`` rollout and return the scaled rewards."""
        discounted = torch.empty_like(rewards)
        for t in range(rewards.shape[0]):
            self.returns.mul_(self.gamma).add_(rewards[t])
            discounted[t] = self.returns
            self.returns.mul_(1.0 - dones[t])
        self.stats.update(discounted)
        return rewards * self.stats.inv_std

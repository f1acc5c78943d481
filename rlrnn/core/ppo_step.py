"""The pieces of PPO's hot loop, apart from the trainer that calls them.

``RolloutStorage`` is the rollout's step-by-step storage, allocated once and written in place:
its tensors keep their addresses from one rollout to the next, as a CUDA graph capture of the
loop needs. ``act_step`` (one acting step of the rollout) and ``minibatch_loss`` (the clipped
loss of one minibatch of whole env sequences) are functions of their inputs only, so
:mod:`rlrnn.core.ppo` calls them eagerly and :mod:`rlrnn.core.compiled` swaps in their
``torch.compile``d versions.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from agents import ActorCritic, RecurrentState, sample_categorical
from rlrnn.core.config import PPOConfig


class Rollout(NamedTuple):
    obs: Tensor  # (T, B, D)
    episode_starts: Tensor  # (T, B) float, 1 where obs[t] starts an episode
    actions: Tensor  # (T, B) long
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
    logits: Tensor  # (T, B, A)
    actions: Tensor  # (T, B) long
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
        state: RecurrentState,
        device: torch.device,
    ) -> RolloutStorage:
        def buffer(*shape: int, dtype: torch.dtype = torch.float32) -> Tensor:
            return torch.empty(steps, *shape, dtype=dtype, device=device)

        B = num_envs
        return cls(
            obs=buffer(B, obs_dim),
            final_obs=buffer(B, obs_dim),
            episode_starts=buffer(B),
            logits=buffer(B, num_actions),
            actions=buffer(B, dtype=torch.long),
            values=buffer(B),
            rewards=buffer(B),
            terminated=buffer(B, dtype=torch.bool),
            truncated=buffer(B, dtype=torch.bool),
            state_h=buffer(*state.h.shape),  # (L, B, H); a frame stack's c is empty
            state_c=buffer(*state.c.shape),
            episode_return=buffer(B),
            episode_length=buffer(B),
        )


def minibatch_loss(
    agent: ActorCritic, rollout: Rollout, envs: Tensor, clip: float, cfg: PPOConfig
) -> tuple[Tensor, dict[str, Tensor]]:
    """PPO's clipped loss on the whole sequences ``envs`` (environments, or chunks of them with
    ``bptt_len``: ``rollout`` is then :meth:`Rollout.sequences`), and its statistics.

    A pure function of its inputs (``torch.compile`` traces it whole under ``--compile``)."""
    logits, values, _ = agent(
        rollout.obs[:, envs],
        rollout.initial_state.select(envs),
        rollout.episode_starts[:, envs],
    )  # replay whole sequences: (T, b, A), (T, b)
    logp_all = logits.log_softmax(-1)
    actions = rollout.actions[:, envs]
    new_logp = logp_all.gather(-1, actions[..., None]).squeeze(-1)
    entropy = -(logp_all.exp() * logp_all).sum(-1).mean()
    log_ratio = new_logp - rollout.logprobs[:, envs]
    ratio = log_ratio.exp()

    advantages = rollout.advantages[:, envs]
    if cfg.norm_adv:
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    pg_loss = torch.max(-advantages * ratio, -advantages * ratio.clamp(1 - clip, 1 + clip)).mean()
    value_loss = 0.5 * (values - rollout.returns[:, envs]).square().mean()
    loss = pg_loss - cfg.ent_coef * entropy + cfg.vf_coef * value_loss
    ratio, log_ratio = ratio.detach(), log_ratio.detach()
    return loss, {
        "policy_loss": pg_loss.detach(),
        "value_loss": value_loss.detach(),
        "entropy": entropy.detach(),
        "approx_kl": ((ratio - 1) - log_ratio).mean(),
        "clipfrac": ((ratio - 1).abs() > clip).float().mean(),
    }


def act_step(
    agent: ActorCritic, obs: Tensor, state: RecurrentState, starts: Tensor
) -> tuple[Tensor, Tensor, RecurrentState, Tensor]:
    """One acting step of the rollout: logits ``(B, A)``, values ``(B,)``, the new state and
    the sampled actions ``(B,)`` (compiled with ``loss_fn`` under ``--compile``)."""
    logits, value, state = agent(obs[None], state, starts[None])  # (B, D) -> (1, B, D)
    return logits[0], value[0], state, sample_categorical(logits[0])


def explained_variance(values: Tensor, returns: Tensor) -> Tensor:
    """1 - Var(returns - values) / Var(returns): 1 is a perfect critic, 0 a constant one."""
    var = returns.var()
    return torch.where(var > 0, 1 - (returns - values).var() / var, torch.zeros_like(var))

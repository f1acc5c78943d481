"""PPO's clipped loss on one minibatch of whole env sequences, and the critic's fit.

:func:`ppo_loss` is a function of its inputs only, so :mod:`rlrnn.learning.ppo` calls it eagerly
and :mod:`rlrnn.learning.compiled` swaps in its ``torch.compile``d version.
"""

from __future__ import annotations

import torch
from torch import Tensor

from agents import ActorCritic
from rlrnn.learning.config import PPOConfig
from rlrnn.learning.rollout import Rollout


def ppo_loss(
    agent: ActorCritic,
    rollout: Rollout,
    envs: Tensor,
    clip: float,
    cfg: PPOConfig,
    bounds: tuple[Tensor, Tensor] | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """PPO's clipped loss on the whole sequences ``envs`` (environments, or chunks of them with
    ``bptt_len``: ``rollout`` is then :meth:`Rollout.sequences`), and its statistics.

    ``bounds``: a Box's centre and half-range ``(A,)``, with ``cfg.bound_coef``: a mean past
    them adds ``bound_coef`` times its squared overshoot in half-ranges (summed over the
    action's dimensions), as rl_games' bounds loss. Samples from a mean out there are all
    clipped to the same action, so nothing else would ever bring it back.

    A pure function of its inputs (``torch.compile`` traces it whole when a run's ``compile`` is
    on)."""
    logits, values, _ = agent(
        rollout.obs[:, envs],
        rollout.initial_state.select(envs),
        rollout.episode_starts[:, envs],
    )  # replay whole sequences: (T, b, A), (T, b)
    new_logp, entropy = agent.action_head.log_prob_and_entropy(logits, rollout.actions[:, envs])
    entropy = entropy.mean()
    log_ratio = new_logp - rollout.logprobs[:, envs]
    ratio = log_ratio.exp()

    advantages = rollout.advantages[:, envs]
    if cfg.norm_adv:
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    pg_loss = torch.max(-advantages * ratio, -advantages * ratio.clamp(1 - clip, 1 + clip)).mean()
    value_loss = 0.5 * (values - rollout.returns[:, envs]).square().mean()
    loss = pg_loss - cfg.ent_coef * entropy + cfg.vf_coef * value_loss
    ratio, log_ratio = ratio.detach(), log_ratio.detach()
    stats = {
        "policy_loss": pg_loss.detach(),
        "value_loss": value_loss.detach(),
        "entropy": entropy.detach(),
        "approx_kl": ((ratio - 1) - log_ratio).mean(),
        "clipfrac": ((ratio - 1).abs() > clip).float().mean(),
    }
    if bounds is not None and cfg.bound_coef:
        centre, half_range = bounds
        overshoot = ((agent.action_head.mode(logits) - centre) / half_range).abs() - 1
        bound_loss = overshoot.clamp(min=0).square().sum(-1).mean()
        loss = loss + cfg.bound_coef * bound_loss
        stats["bound_loss"] = bound_loss.detach()
    return loss, stats


def explained_variance(values: Tensor, returns: Tensor) -> Tensor:
    """1 - Var(returns - values) / Var(returns): 1 is a perfect critic, 0 a constant one."""
    var = returns.var()
    return torch.where(var > 0, 1 - (returns - values).var() / var, torch.zeros_like(var))

"""What a policy head's outputs mean: a distribution over actions, sampled, scored and read.

- :class:`Categorical` (a Discrete action space): the head's outputs are logits; a sample is an
  index ``(B,)``.
- :class:`DiagGaussian` (a Box action space): the head's outputs are the mean of a diagonal
  Gaussian whose log-std is one learned number per action dimension, independent of the state
  (as CleanRL's and SB3's continuous PPO); a sample is a float vector ``(B, A)``, its
  log-probability that of the unclipped sample: the env clips it to its bounds.

Both are functions of the head's outputs and their own parameters only, so the acting step and
the loss stay pure (``torch.compile`` traces them whole).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


class Categorical(nn.Module):
    """Softmax over ``(…, A)`` logits."""

    continuous = False

    def sample(self, logits: Tensor) -> Tensor:
        """Sample from softmax(logits) by the Gumbel-max trick: three fused ops, no host sync."""
        gumbel = -torch.empty_like(logits).exponential_().log()
        return (logits + gumbel).argmax(-1)

    def mode(self, logits: Tensor) -> Tensor:
        return logits.argmax(-1)

    def log_prob_and_entropy(self, logits: Tensor, actions: Tensor) -> tuple[Tensor, Tensor]:
        """The log-probability of ``actions`` ``(…)`` and the entropy, both ``(…)``."""
        logp_all = logits.log_softmax(-1)
        logp = logp_all.gather(-1, actions[..., None]).squeeze(-1)
        return logp, -(logp_all.exp() * logp_all).sum(-1)


class DiagGaussian(nn.Module):
    """A diagonal Gaussian over ``action_dim`` numbers with a learned, state-independent
    log-std (starting at ``log_std``: std 1 by default)."""

    continuous = True

    def __init__(self, action_dim: int, log_std: float = 0.0) -> None:
        super().__init__()
        self.log_std = nn.Parameter(torch.full((action_dim,), float(log_std)))

    def sample(self, mean: Tensor) -> Tensor:
        return mean + self.log_std.exp() * torch.randn_like(mean)

    def mode(self, mean: Tensor) -> Tensor:
        return mean

    def log_prob_and_entropy(self, mean: Tensor, actions: Tensor) -> tuple[Tensor, Tensor]:
        """The log-density of ``actions`` ``(…, A)`` (summed over A) and the entropy, ``(…)``."""
        z = (actions - mean) * (-self.log_std).exp()
        logp = (-0.5 * z.square() - self.log_std - HALF_LOG_2PI).sum(-1)
        entropy = (0.5 + HALF_LOG_2PI + self.log_std).sum().expand(mean.shape[:-1])
        return logp, entropy


def sample_categorical(logits: Tensor) -> Tensor:
    """:meth:`Categorical.sample` as a function (the tests and the export graph use it)."""
    return Categorical().sample(logits)

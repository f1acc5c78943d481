"""What a policy head's outputs mean: a distribution over actions, sampled, scored and read.

- :class:`Categorical` (a Discrete action space): the head's outputs are logits; a sample is an
  index ``(B,)``.
- :class:`DiagGaussian` (a Box action space): the head's outputs are the mean of a diagonal
  Gaussian whose log-std is one learned number per action dimension, independent of the state
  (as CleanRL's and SB3's continuous PPO); a sample is a float vector ``(B, A)``, its
  log-probability that of the unclipped sample: the env clips it to its bounds.
- :class:`StateDependentNoise` (a Box action space, gSDE): the head's outputs are the mean and the
  policy's last features; the noise is a linear map of those features, drawn again every few
  steps (:meth:`reset_noise`), so exploration is smooth in time and scaled by the state.

All are functions of the head's outputs and their own parameters only, so the acting step and
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

    def reset_noise(self, batch: int) -> None:
        """Exploration with no memory between steps: nothing to draw ahead."""

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

    def reset_noise(self, batch: int) -> None:
        """Exploration with no memory between steps: nothing to draw ahead."""

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


class StateDependentNoise(nn.Module):
    """Generalized state-dependent exploration (gSDE; Raffin et al. 2022, as SB3's ``use_sde``).

    The head's outputs ``(…, A + F)`` are the mean and the policy's last ``F`` features ``z``
    (detached: the noise does not train them). An action is ``mean + z @ E``, with ``E`` an
    ``(F, A)`` matrix per environment drawn from ``N(0, σ²)`` by :meth:`reset_noise` every few
    steps, so the same state gets the same push until then; its log-density is that of
    ``N(mean, z² @ σ²)``, the action's distribution over draws of ``E``. ``σ = exp(log_std)``,
    learned, one per feature and action.
    """

    continuous = True

    def __init__(self, action_dim: int, features: int, log_std: float = 0.0) -> None:
        super().__init__()
        self.action_dim = action_dim
        self.log_std = nn.Parameter(torch.full((features, action_dim), float(log_std)))
        self.register_buffer("noise", torch.zeros(0, features, action_dim), persistent=False)

    def reset_noise(self, batch: int) -> None:
        """Draw each of ``batch`` environments a new exploration matrix."""
        std = self.log_std.detach().exp()
        if self.noise.shape[0] != batch:
            self.noise = torch.empty(batch, *std.shape, device=std.device)
        torch.normal(0.0, std.expand_as(self.noise), out=self.noise)

    def _split(self, outputs: Tensor) -> tuple[Tensor, Tensor]:
        return outputs[..., : self.action_dim], outputs[..., self.action_dim :]

    def sample(self, outputs: Tensor) -> Tensor:
        """One step's actions ``(B, A)`` from outputs ``(B, A + F)``."""
        mean, features = self._split(outputs)
        if self.noise.shape[0] != mean.shape[0]:
            self.reset_noise(mean.shape[0])
        return mean + torch.bmm(features[:, None], self.noise)[:, 0]

    def mode(self, outputs: Tensor) -> Tensor:
        return self._split(outputs)[0]

    def log_prob_and_entropy(self, outputs: Tensor, actions: Tensor) -> tuple[Tensor, Tensor]:
        mean, features = self._split(outputs)
        variance = features.square() @ (2 * self.log_std).exp() + 1e-6
        log_std = 0.5 * variance.log()
        z = (actions - mean) * (-log_std).exp()
        logp = (-0.5 * z.square() - log_std - HALF_LOG_2PI).sum(-1)
        return logp, (0.5 + HALF_LOG_2PI + log_std).sum(-1)


def sample_categorical(logits: Tensor) -> Tensor:
    """:meth:`Categorical.sample` as a function (the tests and the export graph use it)."""
    return Categorical().sample(logits)

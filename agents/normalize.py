"""Running observation normalisation kept inside the policy, so a saved agent carries it."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class RunningNorm(nn.Module):
    """Normalises inputs by a running mean and variance (Chan et al.'s parallel update).

    Args:
        size: feature dimension.
        clip: normalised values are clipped to ``[-clip, clip]``.
        enabled: when False the module is the identity and ``update`` does nothing.
    """

    def __init__(self, size: int, clip: float = 10.0, eps: float = 1e-8, enabled: bool = True):
        super().__init__()
        self.clip, self.eps, self.enabled = clip, eps, enabled
        self.register_buffer("mean", torch.zeros(size))
        self.register_buffer("var", torch.ones(size))
        self.register_buffer("count", torch.tensor(1e-4))
        # 1/sqrt(var + eps), refreshed by ``update``: forward runs once per acting step.
        self.register_buffer("inv_std", torch.ones(size))

    def forward(self, x: Tensor) -> Tensor:
        if not self.enabled:
            return x
        return ((x - self.mean) * self.inv_std).clamp(-self.clip, self.clip)

    @torch.no_grad()
    def update(self, x: Tensor, active: Tensor | None = None) -> None:
        """Fold a batch ``(..., size)`` into the running statistics, without leaving the device.

        ``active``: a 0-dim bool tensor; when False the batch counts for nothing (the statistics
        stay as they are) and the host never has to look at it.
        """
        if not self.enabled:
            return
        x = x.reshape(-1, self.mean.numel())  # (..., D) -> (N, D)
        batch_var, batch_mean = torch.var_mean(x, dim=0, correction=0)
        n = x.shape[0] if active is None else x.shape[0] * active.to(x.dtype)
        total = self.count + n
        delta = batch_mean - self.mean
        self.mean += delta * n / total
        self.var.copy_(
            (self.var * self.count + batch_var * n + delta**2 * self.count * n / total) / total
        )
        self.count.copy_(total)
        torch.rsqrt(self.var + self.eps, out=self.inv_std)

"""Recurrent cores computed in parallel over time: minGRU and minLSTM (Feng et al. 2024,
"Were RNNs All We Needed?").

An RNN is sequential because its gates read ``h_{t-1}``. Here they read only the input::

    minGRU:   z_t = sigmoid(W_z x_t + b_z),  h~_t = W_h x_t + b_h
              h_t = (1 - z_t) * h_{t-1} + z_t * h~_t
    minLSTM:  f_t = sigmoid(W_f x_t + b_f),  i_t = sigmoid(W_i x_t + b_i),  h~_t = W_h x_t + b_h
              h_t = f_t / (f_t + i_t) * h_{t-1} + i_t / (f_t + i_t) * h~_t

so each is the linear recurrence ``h_t = a_t * h_{t-1} + b_t`` with ``a_t`` and ``b_t`` known for
the whole sequence at once. Pairs ``(a, b)`` compose associatively, ``(a1, b1)`` then ``(a2, b2)``
is ``(a2 * a1, a2 * b1 + b2)``, so a prefix scan computes every ``h_t`` without stepping
through time one step at a time: here a blocked scan of about ``2 sqrt(T)`` steps over
whole blocks (:func:`prefix_scan`, :func:`linear_scan`), not ``T`` steps.

Episode starts (the package convention, :mod:`agents.cores`: the state is zeroed *before*
``x_t`` is consumed) enter the scan as ``a_t = 0``: the carry is cut and ``h_t = b_t``. The scan
works on ``a`` and ``b`` themselves, never on ``log a`` and never dividing by a product of ``a``,
so a zero anywhere is exact and the products of numbers in [0, 1] cannot overflow. The candidate
``h~`` is the paper's plain linear one (its ``g`` keeps ``h~`` positive only for a log-space
scan, which this is not). ``h_t`` is a convex combination of the ``h~`` since the last reset and
of the initial state, so it stays as bounded as the inputs.

Layers are stacked plainly: layer ``l + 1`` reads layer ``l``'s ``h`` sequence, nothing between
(the gates are the nonlinearity). The state is ``h`` of shape ``(num_layers, B, H)`` and an
empty ``c``. With ``T == 1`` (acting) the scan is one step: one fused update.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from agents.cores import Core, RecurrentState, input_projection


def prefix_scan(a: Tensor, b: Tensor, h0: Tensor) -> Tensor:
    """All ``h_t`` of ``h_t = a_t * h_{t-1} + b_t`` from ``h_{-1} = h0``, for ``a``, ``b`` of
    shape ``(T, ...)`` and ``h0`` of shape ``(...)``: a blocked (two-level) scan.

    The sequence is cut into ``C`` blocks of ``L ~ sqrt(T)`` steps. Each block is scanned from a
    zero state, all blocks side by side (``L`` steps over tensors of ``C`` blocks), keeping the
    product of its ``a`` so far; then the state entering each block is carried across the
    blocks (``C`` steps over one block's end each); then every step adds what that state
    contributes, ``h = local + decay * carry``: about ``2 sqrt(T)`` sequential steps and O(T)
    work, where a step-by-step recurrence takes ``T`` steps and a Hillis-Steele scan
    ``log2 T`` rounds of O(T) work each (slower on a CPU, whose parallel width is a few lanes;
    docs/parallel-time.md). Exact with ``a_t = 0``: no logs, no division.
    """
    T = a.shape[0]
    L = max(1, math.isqrt(T))
    C = -(-T // L)  # blocks; the last one padded with steps that keep the state (a=1, b=0)
    if C * L > T:
        a = torch.cat([a, a.new_ones((C * L - T, *a.shape[1:]))])
        b = torch.cat([b, b.new_zeros((C * L - T, *b.shape[1:]))])
    a_steps = a.view(C, L, *a.shape[1:]).unbind(1)  # L x (C, ...): step l of every block
    b_steps = b.view(C, L, *b.shape[1:]).unbind(1)
    local, decay = [], []
    h, d = torch.zeros_like(b_steps[0]), torch.ones_like(a_steps[0])
    for a_l, b_l in zip(a_steps, b_steps, strict=True):
        h = torch.addcmul(b_l, a_l, h)  # the block's scan from a zero state
        d = d * a_l  # the product of the block's a so far: what an entering state is worth
        local.append(h)
        decay.append(d)
    carry, carries = h0, []
    for h_end, d_end in zip(h.unbind(0), d.unbind(0), strict=True):
        carries.append(carry)  # the state entering this block
        carry = torch.addcmul(h_end, d_end, carry)
    out = torch.addcmul(torch.stack(local, 1), torch.stack(decay, 1), torch.stack(carries)[:, None])
    return out.view(C * L, *out.shape[2:])[:T]  # (C, L, ...) -> (T, ...)


class _LinearScan(torch.autograd.Function):
    """:func:`prefix_scan` with its backward written out: the gradient of a linear recurrence
    is the same recurrence run backwards in time, ``g_t = dL/dh_t + a_{t+1} * g_{t+1}``, so it
    is a second scan; then ``dL/db_t = g_t``, ``dL/da_t = g_t * h_{t-1}``, ``dL/dh0 = a_0 g_0``.
    Only ``a``, ``h0`` and the outputs are kept for it, not the scan's intermediate blocks."""

    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor, h0: Tensor) -> Tensor:
        h = prefix_scan(a, b, h0)
        ctx.save_for_backward(a, h0, h)
        return h

    @staticmethod
    def backward(ctx, grad_h: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        a, h0, h = ctx.saved_tensors
        a_next = torch.cat([a[1:], torch.zeros_like(a[:1])])  # (T, ...): a_{t+1}, 0 at the end
        g = prefix_scan(a_next.flip(0), grad_h.flip(0), torch.zeros_like(h0)).flip(0)
        grad_a = g * torch.cat([h0[None], h[:-1]]) if ctx.needs_input_grad[0] else None
        grad_h0 = a[0] * g[0] if ctx.needs_input_grad[2] else None
        return grad_a, g, grad_h0


def linear_scan(a: Tensor, b: Tensor, h0: Tensor) -> Tensor:
    """:func:`prefix_scan` (``a``, ``b`` of one shape ``(T, ...)``, ``h0`` of ``(...)``),
    differentiated by a reverse scan when a gradient is wanted; plain tensor operations
    otherwise (acting, and the traced step of an export)."""
    if torch.is_grad_enabled() and (a.requires_grad or b.requires_grad or h0.requires_grad):
        return _LinearScan.apply(a, b, h0)
    return prefix_scan(a, b, h0)


class _ScanCore(Core):
    """Stacked layers, each ``h_t = a_t * h_{t-1} + b_t`` with ``a``, ``b`` from the input alone.

    A subclass gives the number of projected blocks and :meth:`coefficients`.
    """

    blocks = 2  # width of a layer's input projection, in units of hidden_size

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1) -> None:
        super().__init__(input_size, hidden_size, num_layers)
        H = hidden_size
        sizes = [input_size] + [H] * (num_layers - 1)
        self.weights = nn.ParameterList(
            nn.Parameter(torch.empty(self.blocks * H, d)) for d in sizes
        )
        self.biases = nn.ParameterList(nn.Parameter(torch.empty(self.blocks * H)) for _ in sizes)
        for w, b in zip(self.weights, self.biases, strict=True):
            bound = 1.0 / math.sqrt(w.shape[1])  # nn.Linear's initialisation
            nn.init.uniform_(w, -bound, bound)
            nn.init.uniform_(b, -bound, bound)

    def coefficients(self, projected: Tensor) -> tuple[Tensor, Tensor]:
        """``(a, b)`` of the recurrence from the projected input ``(..., blocks * H)``."""
        raise NotImplementedError

    def layer_coefficients(self, layer: int, x: Tensor, keep: Tensor) -> tuple[Tensor, Tensor]:
        """``(a, b)``, each ``(T, B, H)``, of ``layer`` for its input ``x`` ``(T, B, D)``; ``keep``
        ``(T, B, 1)`` is 0 at an episode start, where it cuts the carry (``a_t = 0``)."""
        projected = input_projection(x, self.weights[layer], self.biases[layer])  # (T, B, kH)
        a, b = self.coefficients(projected)
        return a * keep, b

    def forward(
        self, x: Tensor, state: RecurrentState, episode_starts: Tensor
    ) -> tuple[Tensor, RecurrentState]:
        keep = (1.0 - episode_starts.to(x.dtype)).unsqueeze(-1)  # (T, B) -> (T, B, 1)
        hs = []
        for layer in range(self.num_layers):
            a, b = self.layer_coefficients(layer, x, keep)
            x = linear_scan(a, b, state.h[layer])  # (T, B, H), the next layer's input
            hs.append(x[-1])
        return x, RecurrentState(torch.stack(hs), state.c)


class MinGRU(_ScanCore):
    """minGRU: ``h_t = (1 - z_t) * h_{t-1} + z_t * h~_t``, ``z`` and ``h~`` from ``x_t`` only."""

    def coefficients(self, projected):
        z_pre, candidate = projected.chunk(2, dim=-1)  # (..., 2H) -> 2 x (..., H)
        z = torch.sigmoid(z_pre)
        return 1.0 - z, z * candidate


class MinLSTM(_ScanCore):
    """minLSTM: ``h_t = f'_t * h_{t-1} + i'_t * h~_t``, ``f' = f / (f + i)``, ``i' = 1 - f'``;
    ``f``, ``i``, ``h~`` from ``x_t`` only. ``f'`` is computed as ``sigmoid(log f - log i)``, the
    same ratio without a division."""

    blocks = 3

    def coefficients(self, projected):
        f_pre, i_pre, candidate = projected.chunk(3, dim=-1)  # (..., 3H) -> 3 x (..., H)
        # f / (f + i) = 1 / (1 + i / f) and log(i / f) = log sigmoid(i_pre) - log sigmoid(f_pre).
        log_ratio = nn.functional.logsigmoid(i_pre) - nn.functional.logsigmoid(f_pre)
        forget = torch.sigmoid(-log_ratio)  # f'
        return forget, (1.0 - forget) * candidate  # i' = 1 - f'


def step_by_step(
    core: _ScanCore, x: Tensor, state: RecurrentState, episode_starts: Tensor
) -> tuple[Tensor, RecurrentState]:
    """The reference: ``core``'s recurrence one step at a time, as a sequential RNN computes it
    (zero the state at an episode start, then ``h = a * h + b``). Tests hold the scan to it."""
    keep = (1.0 - episode_starts.to(x.dtype)).unsqueeze(-1)  # (T, B) -> (T, B, 1)
    hs = []
    for layer in range(core.num_layers):
        projected = input_projection(x, core.weights[layer], core.biases[layer])  # (T, B, kH)
        h, outputs = state.h[layer], []
        for projected_t, keep_t in zip(projected.unbind(0), keep.unbind(0), strict=True):
            a, b = core.coefficients(projected_t)  # unbind: no full-size gradient per step
            h = a * (h * keep_t) + b
            outputs.append(h)
        x = torch.stack(outputs)
        hs.append(h)
    return x, RecurrentState(torch.stack(hs), state.c)

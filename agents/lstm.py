"""The LSTM of the lecture, with backpropagation through time written out by hand.

Forward, one fused weight ``W = [W_h | W_x]`` of shape ``(4H, H + D)`` acts on ``[h_{t-1}; x_t]``::

    [i, f, o, g] = [sigmoid, sigmoid, sigmoid, tanh](W [h_{t-1}; x_t] + b)
    C_t = f * C_{t-1} + i * g
    h_t = o * tanh(C_t)

Backward walks the sequence in reverse, carrying ``dh`` and ``dC`` (BPTT). Along the cell state
the gradient is only multiplied element-wise by ``f``, never by a matrix: the lecture's reason the
LSTM does not vanish. The weight gradients are summed over time in two matmuls at the end.

Why by hand: on a CPU a small LSTM is bound by per-operation overhead; at rlrnn's default sizes
this is 1.3x faster than autograd over the same equations (``benchmarks/lstm_backends.py``).
Tests check it against ``torch.nn.LSTM`` and against autograd's numerical gradient.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.autograd.function import FunctionCtx, once_differentiable

from agents.cores import Core, RecurrentState, _LayerLoopCore, input_projection


class _LSTMLayer(torch.autograd.Function):
    """One LSTM layer over a whole sequence, with the episode-start mask ``keep``."""

    @staticmethod
    def forward(
        ctx: FunctionCtx,
        x: Tensor,
        h0: Tensor,
        c0: Tensor,
        keep: Tensor,
        weight: Tensor,
        bias: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor]:
        T, B, _ = x.shape
        H = h0.shape[1]
        w_h, w_x = weight[:, :H], weight[:, H:]
        x_proj = input_projection(x, w_x, bias)  # (T, B, 4H)
        gates = torch.empty(T, B, 4 * H, dtype=x.dtype, device=x.device)  # activated i, f, o, g
        cells = torch.empty(T, B, H, dtype=x.dtype, device=x.device)  # C_t
        tanh_cells = torch.empty_like(cells)
        hs = torch.empty_like(cells)  # h_t, the layer's output
        w_h_t = w_h.t()
        h, c = h0, c0
        # Per-step views made once (unbind) rather than indexed in the loop: fewer dispatches.
        steps = zip(
            x_proj.unbind(0), keep.unbind(0), gates.unbind(0), cells.unbind(0),
            tanh_cells.unbind(0), hs.unbind(0), strict=True,
        )  # fmt: skip
        for x_t, keep_t, act, c_out, tanh_out, h_out in steps:
            h, c = h * keep_t, c * keep_t  # zero the state before an episode's first input
            pre = torch.addmm(x_t, h, w_h_t)  # (B, 4H)
            torch.sigmoid(pre[:, : 3 * H], out=act[:, : 3 * H])
            torch.tanh(pre[:, 3 * H :], out=act[:, 3 * H :])
            i, f, o, g = act.split(H, dim=1)
            c = torch.mul(f, c, out=c_out).addcmul_(i, g)  # C_t = f*C_{t-1} + i*g
            h = torch.mul(o, torch.tanh(c, out=tanh_out), out=h_out)  # h_t = o*tanh(C_t)
        ctx.save_for_backward(x, h0, c0, keep, weight, gates, cells, tanh_cells, hs)
        return hs, h, c

    @staticmethod
    @once_differentiable
    def backward(
        ctx: FunctionCtx, grad_out: Tensor, grad_h: Tensor, grad_c: Tensor
    ) -> tuple[Tensor | None, ...]:
        x, h0, c0, keep, weight, gates, cells, tanh_cells, hs = ctx.saved_tensors
        T, B, D = x.shape
        H = h0.shape[1]
        w_h, w_x = weight[:, :H], weight[:, H:]
        # The (masked) states each step started from, for all steps at once.
        h_prev = torch.cat([h0[None], hs[:-1]]) * keep  # (T, B, H)
        c_prev = torch.cat([c0[None], cells[:-1]]) * keep
        i, f, o, g = gates.split(H, dim=2)
        # d(pre-activation) = [dC*g, dC*C_{t-1}, dh*tanh(C_t), dC*i] * activation slope
        slope = torch.cat([i * (1 - i), f * (1 - f), o * (1 - o), 1 - g * g], dim=2)
        coef = torch.cat([g, c_prev, tanh_cells, i], dim=2) * slope  # (T, B, 4H)
        dc_from_h = o * (1 - tanh_cells * tanh_cells)  # dC_t/dh_t
        f_keep = f * keep  # dC_{t-1}/dC_t, zero across an episode start
        d_pre = torch.empty_like(gates)
        dh_next, dc_next = grad_h, grad_c
        steps = zip(
            grad_out.unbind(0), dc_from_h.unbind(0), coef.unbind(0), d_pre.unbind(0),
            keep.unbind(0), f_keep.unbind(0), strict=True,
        )  # fmt: skip
        for grad_out_t, dc_from_h_t, coef_t, d_pre_t, keep_t, f_keep_t in reversed(list(steps)):
            dh = grad_out_t + dh_next
            dc = torch.addcmul(dc_next, dh, dc_from_h_t)
            torch.mul(torch.cat([dc, dc, dh, dc], dim=1), coef_t, out=d_pre_t)
            dh_next = torch.mm(d_pre_t, w_h).mul_(keep_t)
            dc_next = dc * f_keep_t
        d_pre_flat = d_pre.view(T * B, 4 * H)  # (T, B, 4H) -> (T*B, 4H)
        grad_weight = torch.cat(
            [d_pre_flat.t() @ h_prev.view(T * B, H), d_pre_flat.t() @ x.reshape(T * B, D)], dim=1
        )
        grad_x = (d_pre_flat @ w_x).view(T, B, D) if ctx.needs_input_grad[0] else None
        return grad_x, dh_next, dc_next, None, grad_weight, d_pre_flat.sum(0)


def lstm_sequence(
    x: Tensor, h: Tensor, c: Tensor, keep: Tensor, weight: Tensor, bias: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """:class:`_LSTMLayer`'s function in plain differentiable ops, for ``torch.compile``: the
    compiler traces it whole (the hand-written layer's ``out=`` writes into strided views would
    break its graph) and derives and fuses the backward itself."""
    H = h.shape[1]
    x_proj = input_projection(x, weight[:, H:], bias)  # (T, B, 4H)
    w_h_t = weight[:, :H].t()
    outputs = []
    for t in range(x.shape[0]):
        h, c = h * keep[t], c * keep[t]
        pre = torch.addmm(x_proj[t], h, w_h_t)  # (B, 4H)
        i, f, o = pre[:, : 3 * H].sigmoid().chunk(3, dim=1)
        c = f * c + i * pre[:, 3 * H :].tanh()
        h = o * c.tanh()
        outputs.append(h)
    return torch.stack(outputs), h, c


class LSTM(_LayerLoopCore):
    """The lecture's LSTM, stackable; computed by :class:`_LSTMLayer` one layer at a time."""

    cell_width_factor = 1

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1) -> None:
        super().__init__(input_size, hidden_size, num_layers)
        H = hidden_size
        self.weights = nn.ParameterList(
            nn.Parameter(torch.empty(4 * H, H + (input_size if k == 0 else H)))
            for k in range(num_layers)
        )
        self.biases = nn.ParameterList(nn.Parameter(torch.zeros(4 * H)) for _ in range(num_layers))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.hidden_size)  # torch.nn.LSTM's initialisation
        for w, b in zip(self.weights, self.biases, strict=True):
            nn.init.uniform_(w, -bound, bound)
            nn.init.uniform_(b, -bound, bound)

    @torch.no_grad()
    def set_forget_bias(self, value: float) -> None:
        """Set every layer's forget-gate bias (gates are stacked i, f, o, g): a bias ``b`` opens
        the gate to about ``sigmoid(b)``, the factor the cell state keeps per step."""
        H = self.hidden_size
        for bias in self.biases:
            bias[H : 2 * H] = value

    def _layer(self, layer, x, h, c, keep):
        weight, bias = self.weights[layer], self.biases[layer]
        if torch.compiler.is_compiling():
            return lstm_sequence(x, h, c, keep, weight, bias)
        if torch.is_grad_enabled() or x.shape[0] != 1:
            return _LSTMLayer.apply(x, h, c, keep, weight, bias)
        # Acting: one step, nothing to save for backward, the lecture's equations verbatim.
        h, c = h * keep[0], c * keep[0]
        pre = torch.addmm(bias, torch.cat([h, x[0]], dim=1), weight.t())  # W [h_{t-1}; x_t] + b
        H = self.hidden_size
        i, f, o = pre[:, : 3 * H].sigmoid().chunk(3, dim=1)
        g = pre[:, 3 * H :].tanh()
        c = torch.addcmul(f * c, i, g)
        h = o * c.tanh()
        return h[None], h, c


class TorchLSTM(Core):
    """The same function as :class:`LSTM`, computed by ``torch.nn.LSTM`` (cuDNN on a GPU).

    ``nn.LSTM`` cannot reset its state mid-sequence, so the sequence is cut at every step where
    some environment starts an episode and each stretch runs as one fused call. Finding those
    steps means reading ``episode_starts`` on the host: free on a CPU, where the host holds the
    data, but a sync on a GPU; there the sequence is cut at every step instead (at thousands of
    environments nearly every step has an episode start anyway), and nothing waits.
    """

    cell_width_factor = 1
    cut_on_host = True  # on a CPU: cut only where an episode starts (False: at every step)

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1) -> None:
        super().__init__(input_size, hidden_size, num_layers)
        self.lstm = nn.LSTM(input_size, hidden_size, num_layers)

    def forward(self, x, state, episode_starts):
        keep = (1.0 - episode_starts.to(x.dtype)).unsqueeze(-1)  # (T, B) -> (T, B, 1)
        T = x.shape[0]
        on_host = self.cut_on_host and x.device.type == "cpu"
        if T > 1 and on_host and not torch.compiler.is_compiling():  # the compiler cannot read it
            cuts = (episode_starts[1:].any(dim=1).nonzero().flatten() + 1).tolist()
        else:
            cuts = list(range(1, T))
        h, c = state
        outputs = []
        for start, stop in zip([0, *cuts], [*cuts, T], strict=True):
            h, c = h * keep[start], c * keep[start]
            out, (h, c) = self.lstm(x[start:stop], (h, c))
            outputs.append(out)
        return torch.cat(outputs), RecurrentState(h, c)

    def load_from(self, custom: LSTM) -> None:
        """Take the weights of a custom :class:`LSTM`."""
        copy_to_nn_lstm(custom, self.lstm)


@torch.no_grad()
def copy_to_nn_lstm(custom: LSTM, lstm: nn.LSTM) -> None:
    """Copy a custom :class:`LSTM`'s weights into ``lstm`` so both compute the same function.

    Ours: one W over [h; x] with gates i, f, o, g and one bias. nn.LSTM: W_ih and W_hh with gates
    i, f, g, o and two biases (the second set to zero).
    """
    H = custom.hidden_size
    order = torch.cat(
        [torch.arange(0, 2 * H), torch.arange(3 * H, 4 * H), torch.arange(2 * H, 3 * H)]
    )
    for k in range(custom.num_layers):
        w, b = custom.weights[k][order], custom.biases[k][order]
        getattr(lstm, f"weight_hh_l{k}").copy_(w[:, :H])
        getattr(lstm, f"weight_ih_l{k}").copy_(w[:, H:])
        getattr(lstm, f"bias_ih_l{k}").copy_(b)
        getattr(lstm, f"bias_hh_l{k}").zero_()

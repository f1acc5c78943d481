"""Recurrent cores behind one interface: a GRU, a vanilla RNN, a frame-stacking feedforward core
and a feedforward core with an empty state here, the LSTMs in :mod:`agents.lstm`.

Conventions, here once for the whole package:

* A core maps ``x`` of shape ``(T, B, D)`` and a :class:`RecurrentState` to outputs ``(T, B, H)``
  and the state after the last step. One code path serves acting (``T == 1``) and training
  (a whole rollout), so a step-by-step run equals the whole-sequence run.
* ``episode_starts[t] == 1`` means ``x[t]`` is the first observation of an episode: the state is
  zeroed *before* ``x[t]`` is consumed.
* States are shaped ``(num_layers, B, H)``, the ``torch.nn.LSTM`` layout. Cores without a cell
  state hold a ``c`` of width 0; the feedforward core holds a state with 0 layers.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn


class RecurrentState(NamedTuple):
    h: Tensor  # (num_layers, B, H) hidden state
    c: Tensor  # (num_layers, B, H) LSTM cell state; (num_layers, B, 0) for cores without one

    def select(self, index: Tensor) -> RecurrentState:
        """The state of the environments ``index`` (a batch subset)."""
        return RecurrentState(self.h[:, index], self.c[:, index])


class Core(nn.Module):
    """Base of every core: sizes, a zero initial state and the episode-start mask."""

    cell_width_factor = 0  # width of ``c`` in units of hidden_size (1 for an LSTM)

    def __init__(self, input_size: int, hidden_size: int, num_layers: int) -> None:
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers

    @property
    def output_size(self) -> int:
        return self.hidden_size

    @property
    def state_layers(self) -> int:
        """Layers of recurrent state this core keeps (0 for a feedforward core)."""
        return self.num_layers

    @property
    def is_recurrent(self) -> bool:
        """Whether the core keeps a state between steps (a frame stack keeps its past frames)."""
        return self.state_layers > 0

    def initial_state(self, batch_size: int, device: torch.device | str = "cpu") -> RecurrentState:
        h = torch.zeros(self.num_layers, batch_size, self.hidden_size, device=device)
        c = torch.zeros(
            self.num_layers, batch_size, self.hidden_size * self.cell_width_factor, device=device
        )
        return RecurrentState(h, c)

    def forward(
        self, x: Tensor, state: RecurrentState, episode_starts: Tensor
    ) -> tuple[Tensor, RecurrentState]:
        raise NotImplementedError


class _LayerLoopCore(Core):
    """Runs layer after layer over the whole sequence.

    Each layer projects its whole input sequence in one matmul and loops in Python only over
    the recurrent part: the per-step cost is what limits small recurrent nets on a CPU.
    """

    def _layer(
        self, layer: int, x: Tensor, h: Tensor, c: Tensor, keep: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        raise NotImplementedError

    def forward(
        self, x: Tensor, state: RecurrentState, episode_starts: Tensor
    ) -> tuple[Tensor, RecurrentState]:
        keep = (1.0 - episode_starts.to(x.dtype)).unsqueeze(-1)  # (T, B) -> (T, B, 1)
        hs, cs = [], []
        for layer in range(self.num_layers):
            x, h, c = self._layer(layer, x, state.h[layer], state.c[layer], keep)
            hs.append(h)
            cs.append(c)
        return x, RecurrentState(torch.stack(hs), torch.stack(cs))


def input_projection(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """``x @ weight.T + bias`` for a whole ``(T, B, D)`` sequence in one matmul."""
    T, B, D = x.shape
    return torch.addmm(bias, x.reshape(T * B, D), weight.t()).view(T, B, -1)  # (T*B, D)->(T, B, G)


class GRU(_LayerLoopCore):
    """Gated recurrent unit (``torch.nn.GRU``'s equations and gate order r, z, n)::

    r = sigmoid(W_xr x + b_xr + W_hr h + b_hr)
    z = sigmoid(W_xz x + b_xz + W_hz h + b_hz)
    n = tanh(W_xn x + b_xn + r * (W_hn h + b_hn))
    h = (1 - z) * n + z * h
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1) -> None:
        super().__init__(input_size, hidden_size, num_layers)
        H = hidden_size
        sizes = [input_size] + [H] * (num_layers - 1)
        self.weights_x = nn.ParameterList(nn.Parameter(torch.empty(3 * H, d)) for d in sizes)
        self.weights_h = nn.ParameterList(nn.Parameter(torch.empty(3 * H, H)) for _ in sizes)
        self.biases_x = nn.ParameterList(nn.Parameter(torch.empty(3 * H)) for _ in sizes)
        self.biases_h = nn.ParameterList(nn.Parameter(torch.empty(3 * H)) for _ in sizes)
        bound = 1.0 / math.sqrt(H)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def _layer(self, layer, x, h, c, keep):
        H = self.hidden_size
        x_proj = input_projection(x, self.weights_x[layer], self.biases_x[layer])  # (T, B, 3H)
        w_h_t, b_h = self.weights_h[layer].t(), self.biases_h[layer]
        outputs = []
        # unbind, not x_proj[t]: each index's backward would fill a whole (T, B, 3H) gradient
        for x_t, keep_t in zip(x_proj.unbind(0), keep.unbind(0), strict=True):
            h = h * keep_t
            h_proj = torch.addmm(b_h, h, w_h_t)  # (B, 3H)
            r, z = (x_t[:, : 2 * H] + h_proj[:, : 2 * H]).sigmoid().chunk(2, dim=1)
            n = torch.addcmul(x_t[:, 2 * H :], r, h_proj[:, 2 * H :]).tanh()
            h = torch.lerp(n, h, z)  # (1 - z) * n + z * h
            outputs.append(h)
        return torch.stack(outputs), h, c


class RNN(_LayerLoopCore):
    """The vanilla (Elman) RNN of the lecture: ``h_t = tanh(W_xh x_t + W_hh h_{t-1} + b)``."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1) -> None:
        super().__init__(input_size, hidden_size, num_layers)
        H = hidden_size
        sizes = [input_size] + [H] * (num_layers - 1)
        self.weights_x = nn.ParameterList(nn.Parameter(torch.empty(H, d)) for d in sizes)
        self.weights_h = nn.ParameterList(nn.Parameter(torch.empty(H, H)) for _ in sizes)
        self.biases = nn.ParameterList(nn.Parameter(torch.empty(H)) for _ in sizes)
        bound = 1.0 / math.sqrt(H)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def _layer(self, layer, x, h, c, keep):
        x_proj = input_projection(x, self.weights_x[layer], self.biases[layer])  # (T, B, H)
        w_h_t = self.weights_h[layer].t()
        outputs = []
        for x_t, keep_t in zip(x_proj.unbind(0), keep.unbind(0), strict=True):  # as in GRU
            h = torch.addmm(x_t, h * keep_t, w_h_t).tanh()
            outputs.append(h)
        return torch.stack(outputs), h, c


def feedforward(input_size: int, hidden_size: int, num_layers: int) -> nn.Sequential:
    """``num_layers`` tanh layers of width ``hidden_size``."""
    layers: list[nn.Module] = []
    for k in range(num_layers):
        layers += [nn.Linear(input_size if k == 0 else hidden_size, hidden_size), nn.Tanh()]
    return nn.Sequential(*layers)


class FrameStackCore(Core):
    """A feedforward core over the last ``frame_stack`` observations (the standard POMDP baseline).

    The state holds the previous ``frame_stack - 1`` observations, oldest first, flattened into
    ``h`` of shape ``(1, B, (frame_stack - 1) * D)``; frames from before an episode start are
    zeros, as in a frame-stacking wrapper that pads with zeros at reset.
    """

    def __init__(
        self, input_size: int, hidden_size: int = 64, num_layers: int = 1, frame_stack: int = 4
    ) -> None:
        super().__init__(input_size, hidden_size, num_layers)
        self.frame_stack = frame_stack  # >= 1, checked by make_core
        self.net = feedforward(input_size * frame_stack, hidden_size, num_layers)

    @property
    def state_layers(self) -> int:
        return 1

    def initial_state(self, batch_size, device="cpu"):
        width = (self.frame_stack - 1) * self.input_size
        return RecurrentState(
            torch.zeros(1, batch_size, width, device=device),
            torch.zeros(1, batch_size, 0, device=device),
        )

    def forward(self, x, state, episode_starts):
        T, B, D = x.shape
        k = self.frame_stack
        past = state.h[0].view(B, k - 1, D).transpose(0, 1)  # (B, (k-1)*D) -> (k-1, B, D)
        frames = torch.cat([past, x])  # (k-1+T, B, D), oldest first
        # Frames belong to the episode counted by the starts seen so far; a frame is visible at
        # step t only when it belongs to the same episode as x[t].
        episode = torch.cat([x.new_zeros(k - 1, B), episode_starts.to(x.dtype).cumsum(0)])
        current = episode[k - 1 :]  # (T, B)
        window = [
            frames[j : j + T] * (episode[j : j + T] == current).unsqueeze(-1).to(x.dtype)
            for j in range(k)
        ]  # k tensors (T, B, D), oldest first
        features = self.net(torch.cat(window, dim=-1))  # (T, B, k*D) -> (T, B, H)
        kept = frames[T:] * (episode[T:] == current[-1]).unsqueeze(-1).to(x.dtype)  # (k-1, B, D)
        h = kept.transpose(0, 1).reshape(1, B, (k - 1) * D)  # (k-1, B, D) -> (1, B, (k-1)*D)
        return features, RecurrentState(h, state.c)


class MLPCore(Core):
    """A feedforward core: sees only the current observation and keeps a 0-layer state."""

    def __init__(self, input_size: int, hidden_size: int = 64, num_layers: int = 1) -> None:
        super().__init__(input_size, hidden_size, num_layers)
        self.net = feedforward(input_size, hidden_size, num_layers)

    @property
    def state_layers(self) -> int:
        return 0

    def initial_state(self, batch_size, device="cpu"):
        empty = torch.zeros(0, batch_size, 0, device=device)
        return RecurrentState(empty, empty)

    def forward(self, x, state, episode_starts):
        return self.net(x), state

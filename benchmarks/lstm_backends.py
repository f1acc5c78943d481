"""Forward + backward time of one LSTM layer over a rollout-sized sequence, three ways.

* ``custom``: rlrnn's LSTM, BPTT written by hand (``agents/lstm.py``);
* ``autograd``: the same gate equations step by step, differentiated by autograd;
* ``torch``: ``torch.nn.LSTM``, cut at the steps where some environment starts an episode.

    python benchmarks/lstm_backends.py
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from agents import LSTM, RecurrentState, TorchLSTM


def autograd_lstm(core: LSTM, x, state: RecurrentState, starts):
    """The lecture's equations in plain torch ops: what autograd sees without a custom backward."""
    H = core.hidden_size
    weight, bias = core.weights[0], core.biases[0]
    keep = (1.0 - starts).unsqueeze(-1)
    h, c = state.h[0], state.c[0]
    outputs = []
    for t in range(x.shape[0]):
        h, c = h * keep[t], c * keep[t]
        pre = torch.addmm(bias, torch.cat([h, x[t]], dim=1), weight.t())
        i, f, o = pre[:, : 3 * H].sigmoid().chunk(3, dim=1)
        c = f * c + i * pre[:, 3 * H :].tanh()
        h = o * c.tanh()
        outputs.append(h)
    return torch.stack(outputs)


def time_it(fn, repeats: int) -> float:
    for _ in range(3):
        fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1e3


def compare(
    custom: LSTM, fused: TorchLSTM, steps: int, envs: int, reset_prob: float, repeats: int
) -> list[float]:
    """Milliseconds of forward + backward for the three implementations on one batch."""
    x = torch.randn(steps, envs, 2)
    starts = (torch.rand(steps, envs) < reset_prob).float()
    state = custom.initial_state(envs)
    forwards = (
        lambda: custom(x, state, starts)[0],
        lambda: autograd_lstm(custom, x, state, starts),
        lambda: fused(x, state, starts)[0],
    )
    return [time_it(lambda f=f: f().square().sum().backward(), repeats) for f in forwards]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--envs", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--reset-prob", type=float, default=0.05)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    custom = LSTM(2, args.hidden)
    fused = TorchLSTM(2, args.hidden)
    fused.load_from(custom)
    print(f"T={args.steps}, hidden={args.hidden}, P(episode start)={args.reset_prob}, 1 thread")
    print("| envs | custom (hand BPTT) ms | autograd ms | torch.nn.LSTM ms |")
    print("|---|---|---|---|")
    for B in args.envs:
        times = compare(custom, fused, args.steps, B, args.reset_prob, args.repeats)
        print(f"| {B} | " + " | ".join(f"{t:.2f}" for t in times) + " |", flush=True)


if __name__ == "__main__":
    main()

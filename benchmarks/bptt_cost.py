"""What backpropagation through time costs: one update's forward + backward against sequence length.

A recurrence whose step reads the previous step's state (the hand-written LSTM, the GRU,
``torch.nn.LSTM``) runs T steps one after another; a core whose gates read the input only
(``mingru``) computes the whole sequence with a prefix scan in O(log T) rounds of tensor
operations. For each core, width and sequence length T this times one forward and backward pass
over a ``(T, batch, obs)`` sequence with episode starts inside it (the median of ``--repeats``
after a warm-up), on the CPU (and the GPU with ``--device cuda``), and writes a result file
and a figure:

    python benchmarks/bptt_cost.py --out benchmarks/results/bptt_cost_cpu.json \\
        --figure docs/bptt_cost.png
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from provenance import provenance  # benchmarks/, beside this script

from agents.cores import Core
from agents.registry import AGENTS, make_core
from rlrnn.files import save_figure

LENGTHS = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
# label -> (agent name, backend): the hand-written LSTM and torch.nn.LSTM share the agent name.
CORES = {
    "lstm": ("lstm", "custom"),
    "nn.LSTM": ("lstm", "torch"),
    "gru": ("gru", "custom"),
    "mingru": ("mingru", "custom"),
}


def time_update(core: Core, length: int, batch: int, obs_dim: int, repeats: int) -> float:
    """Median seconds of one forward + backward pass over a ``length``-step sequence."""
    device = next(core.parameters()).device
    generator = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(length, batch, obs_dim, generator=generator).to(device)
    starts = (torch.rand(length, batch, generator=generator) < 1 / 200).float().to(device)
    starts[0] = 1.0  # every sequence begins an episode, and others begin inside it

    def once() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        began = time.perf_counter()
        features, _ = core(x, core.initial_state(batch, device), starts)
        features.square().mean().backward()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - began

    once()  # warm-up: allocations, kernels picked
    return statistics.median(once() for _ in range(repeats))


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    widths = sorted({r["width"] for r in rows})
    fig, axes = plt.subplots(1, len(widths), figsize=(5.5 * len(widths), 4.2), squeeze=False)
    for ax, width in zip(axes[0], widths, strict=True):
        for label in dict.fromkeys(r["core"] for r in rows):
            points = [r for r in rows if r["core"] == label and r["width"] == width]
            ax.plot(
                [r["length"] for r in points],
                [r["seconds"] * 1e3 for r in points],
                marker="o",
                label=label,
            )
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length T (steps)")
        ax.set_ylabel("forward + backward, ms")
        ax.set_title(f"width {width}, batch {rows[0]['batch']}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle("The cost of backpropagation through time: step by step against a prefix scan")
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cores", nargs="+", default=list(CORES), choices=list(CORES))
    parser.add_argument("--lengths", type=int, nargs="+", default=list(LENGTHS))
    parser.add_argument("--widths", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--obs-dim", type=int, default=2, help="2: the position-only cart-pole")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads on the CPU")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, help="result file (JSON)")
    parser.add_argument("--figure", type=Path, help="figure (PNG)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    source = provenance()
    rows = []
    for width in args.widths:
        for label in args.cores:
            agent, backend = CORES[label]
            if agent not in AGENTS:
                print(f"{label}: no such agent in this rlrnn, left out")
                continue
            torch.manual_seed(0)
            core = make_core(agent, args.obs_dim, width, backend=backend).to(args.device)
            for length in args.lengths:
                seconds = time_update(core, length, args.batch, args.obs_dim, args.repeats)
                rows.append(
                    {"core": label, "width": width, "length": length, "batch": args.batch,
                     "seconds": seconds}
                )  # fmt: skip
                print(
                    f"{label:8} width {width:4} T {length:5}: {seconds * 1e3:9.2f} ms", flush=True
                )
    result = {**source, "device": args.device, "threads": args.threads, "rows": rows}
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    if args.figure:
        plot(rows, args.figure)


if __name__ == "__main__":
    main()

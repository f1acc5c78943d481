"""What moves when a solved policy collapses: one long run per variant, its training signals.

Trains each variant (train.py flags on top of the lstm defaults) for ``--total-timesteps`` with
evaluations every 4,096 env steps, reads the TensorBoard scalars back and draws one column per
variant: evaluation return, approx_kl and clipfrac, entropy, value loss and explained variance,
the raw advantage scale and the return scale, gradient norm and learning rate, and the
observation normaliser's spread. Evaluations after the first solve that fall below the
threshold are shaded.

    python benchmarks/collapse.py --seed 3 --variant "before=--learning-rate 0.004" \\
        --variant "after=" --out docs/collapse.png
"""

from __future__ import annotations

import argparse
import json
import shlex
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from rlrnn.cli import main as rlrnn_main

PANELS = (  # (title, [(tag, label)], log scale)
    ("evaluation return", [("eval/mean_return", "eval mean (20 episodes)")], False),
    ("policy step", [("losses/approx_kl", "approx_kl"), ("losses/clipfrac", "clipfrac")], True),
    ("entropy", [("losses/entropy", "entropy")], False),
    (
        "critic",
        [("losses/value_loss", "value loss"), ("losses/explained_variance", "explained var.")],
        True,
    ),
    (
        "scales",
        [
            ("diagnostics/advantage_std", "advantage std (raw)"),
            ("diagnostics/return_std", "return std (reward scale)"),
        ],
        True,
    ),
    (
        "optimiser",
        [("losses/grad_norm", "grad norm"), ("charts/learning_rate", "learning rate")],
        True,
    ),
    (
        "observation normaliser",
        [("diagnostics/obs_std_0", "std of x"), ("diagnostics/obs_std_1", "std of theta")],
        True,
    ),
)


def scalars(tb_dir: Path) -> dict[str, tuple[list[int], list[float]]]:
    events = EventAccumulator(str(tb_dir), size_guidance={"scalars": 0})
    events.Reload()
    out = {}
    for tag in events.Tags()["scalars"]:
        points = events.Scalars(tag)
        out[tag] = ([p.step for p in points], [p.value for p in points])
    return out


def train_variant(flags: str, seed: int, total: int, run_dir: Path) -> dict:
    argv = ["train", "--run-dir", str(run_dir), "--quiet", "--seed", str(seed)]
    argv += ["--total-timesteps", str(total), "--eval-interval", "4096"]
    code = rlrnn_main([*argv, *shlex.split(flags)])
    if code:
        raise SystemExit(f"training failed with exit code {code}")
    return json.loads((run_dir / "summary.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=FLAGS")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--total-timesteps", type=int, default=300_000)
    parser.add_argument("--out", type=Path, default=Path("collapse.png"))
    args = parser.parse_args()
    variants = [v.partition("=")[::2] for v in args.variant] or [("defaults", "")]

    fig, axes = plt.subplots(
        len(PANELS), len(variants), figsize=(6 * len(variants), 2.0 * len(PANELS)), sharex=True
    )
    axes = axes.reshape(len(PANELS), len(variants))
    for col, (name, flags) in enumerate(variants):
        with tempfile.TemporaryDirectory() as tmp:
            summary = train_variant(flags, args.seed, args.total_timesteps, Path(tmp) / "run")
            data = scalars(Path(tmp) / "run" / "tb")
        threshold = summary["reward_threshold"]
        steps, means = data["eval/mean_return"]
        first = next((i for i, m in enumerate(means) if m >= threshold), None)
        after = [] if first is None else list(zip(steps[first:], means[first:], strict=True))
        dips = [step for step, mean in after if mean < threshold]
        for row, (title, series, log) in enumerate(PANELS):
            ax = axes[row, col]
            for tag, label in series:
                if tag in data:
                    ax.plot(*data[tag], label=label, lw=1)
            for step in dips:
                ax.axvspan(step - 4096, step, color="tab:red", alpha=0.15, lw=0)
            if log:
                ax.set_yscale("log")
            if row == 0:
                ax.axhline(threshold, color="grey", ls="--", lw=0.8)
                ax.set_title(f"{name}: {flags or 'the defaults'} (seed {args.seed})", fontsize=9)
            ax.set_ylabel(title, fontsize=8)
            ax.legend(fontsize=7, loc="best")
            ax.tick_params(labelsize=7)
        axes[-1, col].set_xlabel("env steps")
        print(f"{name}: evaluations {[round(m) for m in means]}")
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

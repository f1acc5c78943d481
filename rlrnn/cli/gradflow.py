"""``rlrnn gradflow``: how far back does the gradient reach? Norms through the recurrence of
trained and fresh cores, and short runs with and without clipping
(:mod:`rlrnn.tools.gradflow.gradflow`,
its figure and report in :mod:`rlrnn.tools.gradflow.report`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from agents.registry import AGENTS
from rlrnn.cli.options import HelpFormatter, finite_float, seed_int
from rlrnn.errors import UsageError
from rlrnn.learning.config import DEVICES
from rlrnn.runs.folder import RunFolder


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "gradflow",
        help="how far back does the gradient reach? norms through the recurrence",
        description="The norm of the gradient of a loss at the last step of real rollouts"
        " with respect to the recurrent state k steps earlier, for trained runs' cores and fresh"
        " ones; plus short runs with and without gradient clipping.",
        formatter_class=HelpFormatter,
    )
    p.add_argument(
        "runs", nargs="*", type=Path, default=[], metavar="RUN", help="trained runs to measure"
    )
    p.add_argument(
        "--checkpoint", choices=tuple(RunFolder.CHECKPOINTS), default="best", help="for run dirs"
    )
    p.add_argument(
        "--cores",
        nargs="*",
        metavar="CORE",
        help="fresh cores; None: rnn gru mingru lstm if no RUN",
    )
    p.add_argument("--hidden-size", type=int, default=32, help="width of the fresh cores")
    p.add_argument("--num-layers", type=int, default=1, help="layers of the fresh cores")
    p.add_argument(
        "--forget-bias",
        nargs="+",
        type=finite_float,
        default=[],
        metavar="B",
        help="also a fresh lstm with its forget-gate bias set to B (gate open about sigmoid(B))",
    )
    p.add_argument("--steps", type=int, default=64, help="rollout length T")
    p.add_argument("--batch", type=int, default=64, help="rollouts averaged over")
    p.add_argument(
        "--seed", type=seed_int, default=0, help="seed of the rollouts and fresh weights"
    )
    p.add_argument(
        "--env",
        dest="env_id",
        help="env id (default: the runs' own, else PositionOnlyCartPole-v1; also: trust a"
        " module:EnvId a checkpoint names)",
    )
    clip = p.add_argument_group("gradient clipping runs")
    clip.add_argument(
        "--clip-steps", type=int, default=32_768, help="env steps per run (0 skips the runs)"
    )
    clip.add_argument("--clip-agent", default="rnn", help="agent trained in the runs")
    clip.add_argument(
        "--clip-norms",
        nargs="+",
        type=finite_float,
        default=[0.0, 0.5],
        help="max_grad_norm values",
    )
    clip.add_argument("--clip-seeds", nargs="+", type=seed_int, default=[0, 1, 2], help="seeds")
    p.add_argument("--out", type=Path, default=Path("gradflow.png"), help="figure (.png)")
    p.add_argument("--device", choices=DEVICES, default="cpu", help="torch device")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from rlrnn.learning.fields import resolve_device
    from rlrnn.tools.gradflow.report import describe_report, gradflow_runs  # matplotlib: when run

    for name, value in (
        ("steps", args.steps),
        ("batch", args.batch),
        ("hidden size", args.hidden_size),
    ):
        if value < 1:
            raise UsageError(f"{name} must be >= 1, got {value}")
    if args.num_layers < 1:
        raise UsageError(f"num layers must be >= 1, got {args.num_layers}")
    if args.clip_steps < 0:
        raise UsageError(
            f"clip steps must be >= 0 (0 skips the clipping runs), got {args.clip_steps}"
        )
    if args.clip_steps and (not args.clip_seeds or not args.clip_norms):
        raise UsageError("the clipping runs need at least one seed and one max grad norm")
    if any(c < 0 for c in args.clip_norms):
        raise UsageError(f"max grad norms must be >= 0, got {list(args.clip_norms)}")
    if args.clip_steps and args.clip_agent not in AGENTS:
        raise UsageError(
            f"the clipping runs train rlrnn agents ({', '.join(AGENTS)}), not {args.clip_agent!r}"
        )
    report = gradflow_runs(
        args.runs,
        checkpoint=args.checkpoint,
        cores=args.cores,
        hidden_size=args.hidden_size,
        num_layers=args.num_layers,
        forget_biases=args.forget_bias,
        steps=args.steps,
        batch=args.batch,
        seed=args.seed,
        env_id=args.env_id,
        clip_steps=args.clip_steps,
        clip_seeds=args.clip_seeds,
        clip_norms=args.clip_norms,
        clip_agent=args.clip_agent,
        out=args.out,
        device=resolve_device(args.device),
    )
    print(json.dumps(report) if args.json else describe_report(report))
    return 0

"""``rlrnn probe``: what does the agent remember? A linear probe for the hidden velocities
(:mod:`rlrnn.tools.probe.probe`, its figure and report in :mod:`rlrnn.tools.probe.report`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rlrnn.cli.options import HelpFormatter, finite_float, seed_int
from rlrnn.errors import UsageError
from rlrnn.learning.config import DEVICES
from rlrnn.runs.folder import RunFolder


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "probe",
        help="what does the agent remember? a linear probe for the hidden velocities",
        description="Roll a trained agent out, fit a ridge-regression probe from its hidden state"
        " to the env's hidden velocities (the cart-pole's two, the pendulum's angular velocity),"
        " report R² on held-out episodes and plot predicted against true.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("run", type=Path, help="a run directory or a checkpoint file (.pt)")
    p.add_argument(
        "--checkpoint", choices=tuple(RunFolder.CHECKPOINTS), default="best", help="for run dirs"
    )
    p.add_argument("--episodes", type=int, default=40, help="episodes to fit and test on")
    p.add_argument("--seed", type=seed_int, default=20_000, help="seed of the first episode")
    p.add_argument("--test-fraction", type=finite_float, default=0.25, help="episodes held out")
    p.add_argument(
        "--alpha", type=finite_float, help="ridge penalty; None: picked on held-out episodes"
    )
    p.add_argument(
        "--env",
        dest="env_id",
        help="probe on this env id instead of the run's own (a cart-pole or pendulum of the same"
        " sizes; also: trust a module:EnvId the checkpoint names)",
    )
    p.add_argument("--stochastic", action="store_true", help="sample actions instead of argmax")
    p.add_argument(
        "--untrained", action="store_true", help="also probe the same net with untrained weights"
    )
    p.add_argument(
        "--compare", nargs="+", type=Path, default=[], metavar="RUN", help="also probe these runs"
    )
    p.add_argument(
        "--out", type=Path, help=f"figure (.png); None: {RunFolder.PROBE} beside the checkpoint"
    )
    p.add_argument("--device", choices=DEVICES, default="cpu", help="torch device")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from rlrnn.learning.fields import resolve_device
    from rlrnn.tools.probe.report import describe_report, probe_runs  # matplotlib: when run

    if args.episodes < 3:
        raise UsageError(
            f"--episodes must be >= 3 (episodes to fit and to test), got {args.episodes}"
        )
    if not 0 < args.test_fraction < 1:
        raise UsageError(f"test fraction must be in (0, 1), got {args.test_fraction}")
    if args.alpha is not None and args.alpha < 0:
        raise UsageError(f"ridge alpha must be >= 0, got {args.alpha}")
    report = probe_runs(
        args.run,
        checkpoint=args.checkpoint,
        episodes=args.episodes,
        seed=args.seed,
        test_fraction=args.test_fraction,
        alpha=args.alpha,
        deterministic=not args.stochastic,
        untrained=args.untrained,
        compare=args.compare,
        out=args.out,
        device=resolve_device(args.device),
        env_id=args.env_id,
    )
    print(json.dumps(report) if args.json else describe_report(report))
    return 0

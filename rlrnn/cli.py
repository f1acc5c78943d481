"""The ``rlrnn`` command: ``rlrnn train`` and ``rlrnn evaluate``.

A user mistake (bad id, value, path or file) ends in one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from envs.batched import EnvError
from rlrnn.errors import UsageError

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error message."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _add_train(sub: argparse._SubParsersAction) -> None:
    from rlrnn.config import add_config_arguments

    p = sub.add_parser(
        "train",
        help="train an agent",
        description="Train an agent with recurrent PPO; writes runs/<run-name>/.",
    )
    out = p.add_argument_group("output")
    out.add_argument("--run-dir", type=Path, help="run directory (default: <runs-root>/<run-name>)")
    out.add_argument("--run-name", help="run name (default: <agent>-<env>-s<seed>-<time>)")
    out.add_argument(
        "--runs-root", type=Path, default=Path("runs"), help="parent of run dirs (default: runs)"
    )
    out.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    add_config_arguments(p)
    p.set_defaults(handler=_train)


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="evaluate a trained agent",
        description="Play episodes with a trained agent and report its returns.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("run", type=Path, help="a run directory or a checkpoint file (.pt)")
    p.add_argument(
        "--checkpoint",
        choices=("best", "final"),
        default="best",
        help="for a run directory: best (highest periodic evaluation) or final (last weights)",
    )
    p.add_argument("--episodes", type=int, default=100, help="episodes to play")
    p.add_argument("--seed", type=int, default=10_000, help="seed of the evaluation episodes")
    p.add_argument("--stochastic", action="store_true", help="sample actions instead of argmax")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu", help="torch device")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(handler=_evaluate)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="rlrnn", description="Recurrent-policy reinforcement learning.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_train(sub)
    _add_evaluate(sub)
    return parser


def _train(args: argparse.Namespace) -> int:
    from envs.batched import check_env_id
    from rlrnn.config import config_from_args
    from rlrnn.plots import plot_learning_curve
    from rlrnn.training import prepare_run_dir, resolve_device, train

    config = config_from_args(args)
    check_env_id(config.env_id)
    resolve_device(config.device)  # fail before creating anything
    name = args.run_name or (
        f"{config.agent.agent}-{config.env_id.replace('/', '_').replace(':', '_')}"
        f"-s{config.seed}-{time.strftime('%Y%m%d-%H%M%S')}"
    )
    run_dir = prepare_run_dir(args.run_dir or args.runs_root / name)
    summary = train(config, run_dir, show_progress=not args.quiet)
    plot_learning_curve(summary, run_dir / "learning_curve.png")
    if not args.quiet:
        print(_describe(summary, run_dir))
    return 0


def _describe(s: dict, run_dir: Path) -> str:
    lines = [
        f"Trained {s['agent']} on {s['env_id']}: {s['env_steps']:,} env steps in "
        f"{s['train_seconds']:.1f} s of training"
        f" ({s['steps_per_second']:,.0f} steps/s on {s['device']}).",
    ]
    if s["solved_at_steps"] is not None:
        lines.append(
            f"Solved (evaluation mean >= {s['reward_threshold']:g}) after {s['solved_at_steps']:,}"
            f" env steps, {s['solved_at_seconds']:.1f} s."
        )
    elif s["reward_threshold"] is not None:
        lines.append(f"Not solved: no evaluation reached a mean of {s['reward_threshold']:g}.")
    lines += [
        f"Final evaluation: {s['final_eval_mean']:.1f} +/- {s['final_eval_std']:.1f}"
        f" (best {s['best_eval_mean']:.1f}).",
        f"Saved to {run_dir}/ (learning_curve.png, summary.json, tb/ for TensorBoard).",
        f"Evaluate it: python evaluate.py {run_dir} --episodes 100  (best.pt; --checkpoint final)",
    ]
    return "\n".join(lines)


def _evaluate(args: argparse.Namespace) -> int:
    from rlrnn.checkpoint import load_checkpoint
    from rlrnn.evaluation import evaluate
    from rlrnn.training import resolve_device

    if args.episodes < 1:
        raise UsageError(f"--episodes must be >= 1, got {args.episodes}")
    path = args.run
    if path.is_dir():
        path = path / f"{args.checkpoint}.pt"
    device = resolve_device(args.device)
    agent, config, _ = load_checkpoint(path, device)
    result = evaluate(
        agent, config.env_id, args.episodes, args.seed, not args.stochastic, device=device
    )
    report = {"checkpoint": str(path), "env_id": config.env_id, "agent": config.agent.agent}
    report.update(result.to_dict())
    if args.json:
        print(json.dumps(report))
    else:
        print(
            f"{report['agent']} on {report['env_id']} ({path}):\n"
            f"  return {report['mean_return']:.1f} +/- {report['std_return']:.1f}"
            f"  (min {report['min_return']:.0f}, max {report['max_return']:.0f},"
            f" mean length {report['mean_length']:.1f}) over {report['episodes']} episodes"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except (UsageError, EnvError) as e:
        print(f"rlrnn {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"rlrnn {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

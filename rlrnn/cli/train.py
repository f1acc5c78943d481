"""``rlrnn train`` (and ``python train.py``): train an agent into a run folder, or resume one."""

from __future__ import annotations

import argparse
from pathlib import Path

from rlrnn.cli.options import (
    HelpFormatter,
    add_config_arguments,
    config_from_args,
    load_config_file,
)
from rlrnn.errors import TrainingInterrupted, UsageError, WriteFailed
from rlrnn.files import shell_path
from rlrnn.runs.folder import RunFolder


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train an agent",
        description="Train an agent with recurrent PPO; writes runs/<run-name>/.",
        epilog="The defaults shown are the lstm agent's; every agent starts from its own tuned"
        " defaults (see: rlrnn agents), which the options given here override.",
        formatter_class=HelpFormatter,
    )
    out = p.add_argument_group("output")
    out.add_argument("--run-dir", type=Path, help="run directory (default: <runs-root>/<run-name>)")
    out.add_argument("--run-name", help="run name (default: <agent>-<env>-s<seed>-<time>)")
    out.add_argument("--runs-root", type=Path, default=Path("runs"), help="parent of run dirs")
    out.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    out.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help=f"start from this config (a run's {RunFolder.CONFIG}, or rlrnn tune's best.json)"
        " instead of the agent's defaults; the options given here override it",
    )
    out.add_argument(
        "--resume",
        type=Path,
        metavar="RUN",
        help=f"continue the run in folder RUN from its {RunFolder.CHECKPOINTS['last']} (written"
        " every --checkpoint-interval steps and on Ctrl-C / SIGTERM)",
    )
    add_config_arguments(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    # The work's modules (TensorBoard, the trainer) load when the command runs, not for --help.
    from rlrnn.learning.hyperparams import default_config
    from rlrnn.runs.start import run_name, saved_config
    from rlrnn.runs.training import train

    env_given = getattr(args, "env_id", None) is not None  # the user's choice: trusted
    if args.resume is not None:
        if args.run_dir or args.run_name:
            raise UsageError("--resume continues the run in RUN; leave out --run-dir/--run-name")
        if args.config:
            raise UsageError("--resume keeps the run's own config; leave out --config")
        config = config_from_args(args, saved_config(args.resume, trust_env=env_given))
        run_dir = args.resume
    else:
        if args.config:  # an env id from a file is not imported unless the user names it
            base = load_config_file(args.config, trust_env=env_given)
        else:
            agent = getattr(args, "agent.agent", "lstm")
            base = default_config(agent, getattr(args, "env_id", None))
        config = config_from_args(args, base)
        run_dir = args.run_dir or args.runs_root / (args.run_name or run_name(config))
    resume = f"python train.py --resume {shell_path(run_dir)}"
    resuming, show_progress = args.resume is not None, not args.quiet
    try:  # the library checks everything (rlrnn.runs.start) before it writes anything
        summary = train(config, run_dir, show_progress=show_progress, resume=resuming)
    except WriteFailed as e:
        kept = RunFolder(run_dir).last.is_file()
        then = f"; free some space, then resume: {resume}" if kept else ""
        raise WriteFailed(f"{e}; {run_dir} keeps the files written before{then}") from None
    except TrainingInterrupted as e:
        raise TrainingInterrupted(f"{e}. Resume: {resume}", e.signal_number, e.run_dir) from None
    if not args.quiet:
        print(describe(summary, run_dir))
    return 0


def describe(s: dict, run_dir: Path) -> str:
    """What ``rlrnn train`` prints at its end."""
    f = RunFolder
    lines = [
        f"Trained {s['agent']} on {s['env_id']}: {s['env_steps']:,} env steps in "
        f"{s['train_seconds']:.1f} s of training"
        f" ({s['steps_per_second']:,.0f} steps/s on {s['device']})"
        + (f", plus {s['compile_seconds']:.1f} s compiling." if s.get("compile_seconds") else "."),
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
        f"Saved to {run_dir}/ ({f.CURVE}, {f.SUMMARY}, {f.TENSORBOARD}/ for TensorBoard).",
        f"Evaluate it: python evaluate.py {shell_path(run_dir)} --episodes 100"
        f"  ({f.CHECKPOINTS['best']}; --checkpoint final)",
    ]
    return "\n".join(lines)

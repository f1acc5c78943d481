"""The ``rlrnn`` command: ``rlrnn train`` and ``rlrnn evaluate``.

A user mistake (bad id, value, path or file) ends in one line on stderr and exit code 2; a
write the system refuses (a full disk) in one line and exit code 74; SIGINT / SIGTERM in one line
and exit code 130 / 143; a run that diverged in one line and exit code 1.
"""

from __future__ import annotations

import argparse
import errno
import json
import shlex
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from rlrnn.errors import Interrupted, TrainingDiverged, UsageError, WriteFailed

if TYPE_CHECKING:  # the commands import their modules when they run
    from rlrnn.claims import Claims
    from rlrnn.compare import RunSpec

EXIT_USAGE = 2
EXIT_DIVERGED = 1
EXIT_WRITE_FAILED = 74  # sysexits' EX_IOERR
# OSErrors that mean a write was refused (the disk, not rlrnn): one line, not a traceback.
WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG, errno.EIO)


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error message."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


class _Defaults(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default unless it is None (its help then says what happens)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        return action.help if action.default is None else super()._get_help_string(action)


def _add_train(sub: argparse._SubParsersAction) -> None:
    from rlrnn.config import add_config_arguments

    p = sub.add_parser(
        "train",
        help="train an agent",
        description="Train an agent with recurrent PPO; writes runs/<run-name>/.",
        epilog="The defaults shown are the lstm agent's; every agent starts from its own tuned"
        " defaults (see: rlrnn agents), which the options given here override.",
    )
    out = p.add_argument_group("output")
    out.add_argument("--run-dir", type=Path, help="run directory (default: <runs-root>/<run-name>)")
    out.add_argument("--run-name", help="run name (default: <agent>-<env>-s<seed>-<time>)")
    out.add_argument(
        "--runs-root", type=Path, default=Path("runs"), help="parent of run dirs (default: runs)"
    )
    out.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    out.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="start from this config (a run's config.json, or rlrnn tune's best.json) instead of"
        " the agent's defaults; the options given here override it",
    )
    out.add_argument(
        "--resume",
        type=Path,
        metavar="RUN",
        help="continue the run in folder RUN from its last.pt (written every"
        " --checkpoint-interval steps and on Ctrl-C / SIGTERM)",
    )
    add_config_arguments(p)
    p.set_defaults(handler=_train)


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    from rlrnn.config import finite_float, seed_int

    p = sub.add_parser(
        "evaluate",
        help="evaluate a trained agent",
        description="Play episodes with a trained agent and report its returns.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("run", type=Path, help="a run directory or a checkpoint file (.pt)")
    p.add_argument(
        "--checkpoint",
        choices=("best", "final", "last"),
        default="best",
        help="for a run directory: best (highest periodic evaluation), final (weights at the end)"
        " or last (the latest resume checkpoint, also of a stopped run)",
    )
    p.add_argument(
        "--env",
        dest="env_id",
        help="play on this env id instead of the run's own (also: trust a module:EnvId the"
        " checkpoint names)",
    )
    p.add_argument("--episodes", type=int, default=100, help="episodes to play")
    p.add_argument("--seed", type=seed_int, default=10_000, help="seed of the evaluation episodes")
    p.add_argument("--stochastic", action="store_true", help="sample actions instead of argmax")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu", help="torch device")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    robust = p.add_argument_group("robustness", "play under conditions the agent did not train in")
    robust.add_argument(
        "--obs-noise", type=finite_float, default=0.0, metavar="SIGMA",
        help="standard deviation of Gaussian noise added to every observation",
    )  # fmt: skip
    robust.add_argument(
        "--max-episode-steps", type=int, metavar="N", help="episode time limit instead of the env's"
    )
    show = p.add_argument_group(
        "watching", "frames show the hidden velocities, true and as the agent's state holds them"
    )
    show.add_argument("--render", choices=("human",), help="play episodes in a window in real time")
    show.add_argument("--video", type=Path, metavar="OUT.mp4", help="record episodes to an MP4")
    show.add_argument("--gif", type=Path, metavar="OUT.gif", help="record episodes to a GIF")
    show.add_argument("--render-episodes", type=int, default=1, help="episodes to show or record")
    show.add_argument("--render-max-steps", type=int, help="cut each shown episode after N steps")
    show.add_argument(
        "--fps",
        type=finite_float,
        help="frames per second; None: the env's own (50 for the cart-pole)",
    )
    p.set_defaults(handler=_evaluate)


def _add_compare(sub: argparse._SubParsersAction) -> None:
    from rlrnn.compare import DEFAULT_AGENTS
    from rlrnn.config import AGENT_NAMES, seed_int

    p = sub.add_parser(
        "compare",
        help="compare agents over seeds: learning curves, a results table",
        description="Train agents over seeds on one env (or re-use finished runs), evaluate"
        " each run's final and best weights on the same fresh episodes, and write a report"
        " folder: learning_curves.png, results.csv, results.md, report.json, configs/.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--agents",
        nargs="+",
        metavar="AGENT",
        help=f"agents to train, from: {' '.join(AGENT_NAMES)}"
        f" (default: {' '.join(DEFAULT_AGENTS)}, or none when --runs is given)",
    )
    p.add_argument("--full", action="store_true", help="all agents, 5 seeds")
    p.add_argument("--seeds", type=int, help="number of seeds per agent (default: 3; --full: 5)")
    p.add_argument("--first-seed", type=seed_int, default=0, help="seeds are first-seed, +1, ...")
    p.add_argument("--env", dest="env_id", default="PositionOnlyCartPole-v1", help="env id")
    p.add_argument("--runs", nargs="+", type=Path, default=[], help="finished run folders to add")
    p.add_argument("--out", type=Path, default=Path("reports/compare"), help="report folder")
    p.add_argument("--workers", type=int, help="parallel runs (default: one per CPU core)")
    p.add_argument("--episodes", type=int, default=100, help="evaluation episodes per checkpoint")
    p.add_argument("--total-timesteps", type=int, help="env steps per run (default: per agent)")
    p.add_argument("--eval-interval", type=int, help="env steps between periodic evaluations")
    p.add_argument("--frame-stack", type=int, help="k of the framestack agent (default: 4)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu", help="device")
    p.add_argument(
        "--storage", metavar="URL",
        help="split the comparison between machines that share --out: each claims agent x seed"
        " cells from this study storage (postgresql://user@host/db, sqlite:///file.db,"
        " journal:PATH), runs each once, and all write the report once every cell is done",
    )  # fmt: skip
    p.add_argument("--study", help="study name in --storage (default: one per comparison)")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.set_defaults(handler=_compare)


def _add_tune(sub: argparse._SubParsersAction) -> None:
    from rlrnn.config import AGENT_NAMES
    from rlrnn.tune_setup import OBJECTIVES

    p = sub.add_parser(
        "tune",
        help="tune an agent's hyperparameters: an Optuna study, on one machine or many",
        description="Run trials of an agent with hyperparameters drawn from its search space"
        " (rlrnn/hyperparams.py), the first trial its defaults; prune runs that fall behind at"
        " the periodic evaluations; write trials.csv, trials.md, history.png, importance.png"
        " and best.json (train it: python train.py --config best.json). The study lives in a"
        " storage: a journal file in --out by default, or --storage URL, which other processes"
        " and machines join by running the same command.",
        formatter_class=_Defaults,
    )
    p.add_argument("--agent", default="lstm", choices=AGENT_NAMES, help="agent to tune")
    p.add_argument("--env", dest="env_id", default="PositionOnlyCartPole-v1", help="env id")
    score = p.add_argument_group("score")
    score.add_argument(
        "--objective",
        choices=tuple(OBJECTIVES),
        default="seconds",
        help="; ".join(f"{k}: {v[1]} ({v[0]})" for k, v in OBJECTIVES.items()),
    )
    score.add_argument(
        "--unsolved-penalty", type=float, default=2.0, metavar="X",
        help="seconds/steps: a run that never solves scores X times its whole run (seconds: X"
        " times the longest run of the study so far)",
    )  # fmt: skip
    score.add_argument(
        "--stays-solved-weight", type=float, default=0.0, metavar="W",
        help="worsen the score by W x (1 - stays_solved) of itself (the fraction of evaluations"
        " after the first solve that stay solved)",
    )  # fmt: skip
    score.add_argument(
        "--min-stays-solved", type=float, default=0.0, metavar="F",
        help="a constraint: runs whose stays_solved is below F are infeasible (0: none)",
    )  # fmt: skip
    runs = p.add_argument_group("each trial")
    runs.add_argument("--total-timesteps", type=int, help="env steps (default: the agent's)")
    runs.add_argument("--eval-interval", type=int, default=2048, help="env steps between evals")
    runs.add_argument("--eval-episodes", type=int, default=20, help="episodes per evaluation")
    runs.add_argument("--seed", type=int, default=0, help="seed of every trial's run")
    runs.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu", help="device")
    study = p.add_argument_group("study")
    study.add_argument("--trials", type=int, default=20, help="trials each worker process runs")
    study.add_argument(
        "--max-trials", type=int, metavar="N",
        help="stop once the study holds N trials, failed ones not counted, all processes and"
        " machines together (default: --trials x --workers; the same command resumes to it)",
    )  # fmt: skip
    study.add_argument("--workers", type=int, default=1, help="worker processes on this machine")
    study.add_argument("--pruner", choices=("median", "none"), default="median", help="pruner")
    study.add_argument("--sampler", choices=("tpe", "random"), default="tpe", help="sampler")
    study.add_argument(
        "--sampler-seed", type=int, help="seed of the sampler (+ the worker index); None: random"
    )
    study.add_argument(
        "--storage", metavar="URL",
        help="shared study storage: postgresql://user@host/db, mysql://..., sqlite:///file.db,"
        " or journal:PATH (a file on a shared filesystem); default: journal <out>/study.log",
    )  # fmt: skip
    study.add_argument("--study", help="study name (default: <agent>-<env>)")
    p.add_argument("--out", type=Path, help="report folder (default: reports/tune/<study>)")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.set_defaults(handler=_tune)


def _add_agents(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "agents",
        help="list the agents and their tuned defaults",
        description="The agents --agent accepts, and what each one's tuned defaults change"
        " (rlrnn/hyperparams.py); options on the command line override them.",
    )
    p.set_defaults(handler=_agents)


def _add_probe(sub: argparse._SubParsersAction) -> None:
    from rlrnn.config import finite_float, seed_int

    p = sub.add_parser(
        "probe",
        help="what does the agent remember? a linear probe for the hidden velocities",
        description="Roll a trained agent out, fit a ridge-regression probe from its hidden state"
        " to the cart-pole's hidden velocities, report R² on held-out episodes and plot"
        " predicted against true.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("run", type=Path, help="a run directory or a checkpoint file (.pt)")
    p.add_argument(
        "--checkpoint", choices=("best", "final", "last"), default="best", help="for run dirs"
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
        help="probe on this cart-pole id instead of the run's own (also: trust a module:EnvId"
        " the checkpoint names)",
    )
    p.add_argument("--stochastic", action="store_true", help="sample actions instead of argmax")
    p.add_argument(
        "--untrained", action="store_true", help="also probe the same net with untrained weights"
    )
    p.add_argument(
        "--compare", nargs="+", type=Path, default=[], metavar="RUN", help="also probe these runs"
    )
    p.add_argument("--out", type=Path, help="figure (.png); None: probe.png beside the checkpoint")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu", help="torch device")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(handler=_probe)


def _add_gradflow(sub: argparse._SubParsersAction) -> None:
    from rlrnn.config import finite_float, seed_int

    p = sub.add_parser(
        "gradflow",
        help="how far back does the gradient reach? norms through the recurrence",
        description="The norm of the gradient of a loss at the last step of real rollouts"
        " with respect to the recurrent state k steps earlier, for trained runs' cores and fresh"
        " ones; plus short runs with and without gradient clipping.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "runs", nargs="*", type=Path, default=[], metavar="RUN", help="trained runs to measure"
    )
    p.add_argument(
        "--checkpoint", choices=("best", "final", "last"), default="best", help="for run dirs"
    )
    p.add_argument(
        "--cores", nargs="*", metavar="CORE", help="fresh cores; None: rnn gru lstm if no RUN"
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
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu", help="torch device")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(handler=_gradflow)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="rlrnn", description="Recurrent-policy reinforcement learning.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_train(sub)
    _add_evaluate(sub)
    _add_compare(sub)
    _add_tune(sub)
    _add_agents(sub)
    _add_probe(sub)
    _add_gradflow(sub)
    return parser


def _train(args: argparse.Namespace) -> int:
    from envs.batched import check_env_id
    from rlrnn.checkpoint import env_id_from_file
    from rlrnn.config import config_from_args, load_config_file
    from rlrnn.files import make_writable_dir
    from rlrnn.hyperparams import default_config
    from rlrnn.memory import check_training_memory
    from rlrnn.rundir import prepare_run_dir
    from rlrnn.training import LAST, check_resume, resolve_device, saved_run, train

    if args.resume is not None:
        if args.run_dir or args.run_name:
            raise UsageError("--resume continues the run in RUN; leave out --run-dir/--run-name")
        if args.config:
            raise UsageError("--resume keeps the run's own config; leave out --config")
        saved, status = saved_run(args.resume)
        if getattr(args, "env_id", None) is None:  # else the user named it: trusted
            env_id_from_file(saved.env_id, args.resume / LAST)
        config = config_from_args(args, saved)
        check_resume(args.resume, saved, status, config)
    else:
        if args.config:
            base = load_config_file(args.config)
            if getattr(args, "env_id", None) is None:  # an env id from a file: not imported
                env_id_from_file(base.env_id, args.config)
        else:
            base = default_config(getattr(args, "agent.agent", "lstm"))
        config = config_from_args(args, base)
    check_env_id(config.env_id)
    check_training_memory(config, resolve_device(config.device))  # before creating anything
    if args.resume is not None:
        run_dir = make_writable_dir(args.resume, "run directory")
    else:
        name = args.run_name or (
            f"{config.agent.agent}-{config.env_id.replace('/', '_').replace(':', '_')}"
            f"-s{config.seed}-{time.strftime('%Y%m%d-%H%M%S')}"
        )
        run_dir = prepare_run_dir(args.run_dir or args.runs_root / name)
    try:
        summary = train(
            config, run_dir, show_progress=not args.quiet, resume=args.resume is not None
        )
        from rlrnn.plots import plot_learning_curve  # matplotlib: 1-2 s, so only now

        plot_learning_curve(summary, run_dir / "learning_curve.png")
    except WriteFailed as e:
        resume = f" python train.py --resume {shlex.quote(str(run_dir))}"
        then = f"; free some space, then resume:{resume}" if (run_dir / LAST).is_file() else ""
        raise WriteFailed(f"{e}; {run_dir} keeps the files written before{then}") from None
    if not args.quiet:
        print(_describe(summary, run_dir))
    return 0


def _describe(s: dict, run_dir: Path) -> str:
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
        f"Saved to {run_dir}/ (learning_curve.png, summary.json, tb/ for TensorBoard).",
        f"Evaluate it: python evaluate.py {shlex.quote(str(run_dir))} --episodes 100"
        "  (best.pt; --checkpoint final)",
    ]
    return "\n".join(lines)


def _evaluate(args: argparse.Namespace) -> int:
    from envs.batched import check_env_id
    from rlrnn.checkpoint import checkpoint_path, load_checkpoint
    from rlrnn.evaluation import evaluate
    from rlrnn.memory import check_acting_memory
    from rlrnn.rendering import RenderRequest
    from rlrnn.training import resolve_device

    if args.episodes < 1:
        raise UsageError(f"--episodes must be >= 1, got {args.episodes}")
    if not args.obs_noise >= 0:  # also refuses nan
        raise UsageError(f"--obs-noise must be >= 0, got {args.obs_noise}")
    if args.max_episode_steps is not None and args.max_episode_steps < 1:
        raise UsageError(f"--max-episode-steps must be >= 1, got {args.max_episode_steps}")
    render = RenderRequest.create(
        args.render == "human", args.video, args.gif, args.render_episodes,
        args.render_max_steps, args.fps,
    )  # fmt: skip
    path = checkpoint_path(args.run, args.checkpoint)
    device = resolve_device(args.device)
    if args.env_id is not None:
        check_env_id(args.env_id)  # the user's choice: its module may be imported
    agent, config, _ = load_checkpoint(path, device, env_id=args.env_id)
    trained_env_id = config.env_id
    env_id = args.env_id or config.env_id
    check_acting_memory(config, env_id, args.episodes, device, "--episodes")
    rendered = render and render.play(
        agent, env_id, config.agent.agent, args.seed, not args.stochastic, device
    )
    result = evaluate(
        agent,
        env_id,
        args.episodes,
        args.seed,
        not args.stochastic,
        device=device,
        obs_noise=args.obs_noise,
        max_episode_steps=args.max_episode_steps,
    )
    report = {
        "checkpoint": str(path),
        "env_id": env_id,
        "trained_env_id": trained_env_id,
        "agent": config.agent.agent,
        "deterministic": not args.stochastic,
        "seed": args.seed,
        "obs_noise": args.obs_noise,
        "max_episode_steps": args.max_episode_steps,
    }
    report.update(result.to_dict())
    if rendered:
        report["rendered"] = rendered.to_dict()
    if args.json:
        print(json.dumps(report))
    else:
        print(_evaluation_table(report))
        if rendered:
            print(rendered.describe())
    return 0


def _evaluation_table(r: dict) -> str:
    mode = "deterministic" if r["deterministic"] else "stochastic"
    changed = []
    if r["env_id"] != r["trained_env_id"]:
        changed.append(f"env {r['env_id']} (trained on {r['trained_env_id']})")
    if r["obs_noise"]:
        changed.append(f"Gaussian observation noise, sigma {r['obs_noise']:g}")
    if r["max_episode_steps"] is not None:
        changed.append(f"episode limit {r['max_episode_steps']} steps")
    return "\n".join(
        [
            f"{r['agent']} on {r['env_id']} ({r['checkpoint']}):"
            f" {r['episodes']} episodes, {mode} actions, seed {r['seed']}",
            f"changed: {'; '.join(changed)}" if changed else "changed: nothing (as trained)",
            f"  {'return mean +/- std':>22}  {'min':>7}  {'max':>7}  {'mean length':>11}",
            f"  {r['mean_return']:>13.1f} +/- {r['std_return']:<5.1f}  {r['min_return']:>7.0f}"
            f"  {r['max_return']:>7.0f}  {r['mean_length']:>11.1f}",
        ]
    )


def _compare(args: argparse.Namespace) -> int:
    from envs.batched import check_env_id
    from rlrnn import compare
    from rlrnn.claims import run_claimed
    from rlrnn.files import make_writable_dir
    from rlrnn.memory import check_acting_memory
    from rlrnn.training import resolve_device

    check_env_id(args.env_id)
    device = resolve_device(args.device)
    if args.full and args.agents:
        raise UsageError("--full compares all agents; leave out --agents or --full")
    agents = list(compare.FULL_AGENTS if args.full else args.agents or ())
    if not agents and not args.runs:
        agents = list(compare.DEFAULT_AGENTS)
    seeds = args.seeds if args.seeds is not None else (5 if args.full else 3)
    if seeds < 1:
        raise UsageError(f"--seeds must be >= 1, got {seeds}")
    for name in ("episodes", "total_timesteps", "workers", "frame_stack"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    overrides = {"device": args.device}
    if args.total_timesteps is not None:
        overrides["ppo.total_timesteps"] = args.total_timesteps
    if args.eval_interval is not None:
        overrides["eval_interval"] = args.eval_interval
    existing = [compare.existing_run(d, args.env_id) for d in args.runs]
    specs = (
        compare.plan_runs(
            agents,
            list(range(args.first_seed, args.first_seed + seeds)),
            args.env_id,
            args.out,
            overrides,
            args.frame_stack,
        )
        if agents
        else []
    )
    labels = [s.label for s in specs + existing]
    if len(set(labels)) != len(labels):
        raise UsageError("two runs of the same agent and seed; drop one of them")
    compare.check_out_dir(args.out)
    for spec in specs + existing:
        check_acting_memory(spec.config, args.env_id, args.episodes, device, "--episodes")
    claims = _claims(args, specs)
    if claims is None:  # a shared comparison prepares each run when it claims it
        compare.prepare_runs(specs)  # nothing is written before this point
    workers = args.workers or compare.default_workers(len(specs))
    command = shlex.join(["rlrnn", *args.argv])
    if claims is None:
        records = compare.run_all(
            specs, args.episodes, workers, show_progress=not args.quiet, resume_command=command
        )
    else:
        records = run_claimed(specs, args.episodes, workers, claims, not args.quiet, command)
    records += [compare.run_one(s, args.episodes, train_if_needed=False) for s in existing]
    out_dir = make_writable_dir(args.out, "report folder")
    rows = compare.write_report(out_dir, records, args.env_id, args.episodes, command)
    if not args.quiet:
        threshold = records[0]["summary"]["reward_threshold"]
        print(compare.results_markdown(rows, args.env_id, args.episodes, threshold))
        print(f"Report: {out_dir}/ (learning_curves.png, results.md, results.csv, configs/)")
    return 0


def _claims(args: argparse.Namespace, specs: list[RunSpec]) -> Claims | None:
    """The shared queue of ``specs`` in ``--storage`` (None without it)."""
    from rlrnn.claims import Claims

    if args.storage is None:
        if args.study is not None:
            raise UsageError("--study names a study in --storage; give --storage too")
        return None
    if not specs:
        raise UsageError("--storage splits the runs of --agents; there are none to run")
    cells = {}
    for spec in specs:
        config = spec.config.to_dict()
        del config["device"], config["torch_threads"]  # may differ between machines
        cells[spec.label] = config
    attrs = {"command": "compare", "env_id": args.env_id, "episodes": args.episodes}
    return Claims(args.storage, args.study, attrs | {"cells": cells}, list(cells))


def _tune(args: argparse.Namespace) -> int:
    from envs import make_batched_env
    from envs.batched import check_env_id
    from rlrnn import storage as st
    from rlrnn import tune
    from rlrnn.files import make_writable_dir
    from rlrnn.hyperparams import default_config, search_space, with_values
    from rlrnn.training import resolve_device
    from rlrnn.tune_report import describe, write_report
    from rlrnn.tune_setup import Setup, check_space
    from rlrnn.tune_workers import run_local

    for name in ("trials", "workers", "max_trials", "total_timesteps", "eval_interval"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if not args.unsolved_penalty >= 1:
        raise UsageError(f"--unsolved-penalty must be >= 1, got {args.unsolved_penalty}")
    if not args.stays_solved_weight >= 0:
        raise UsageError(f"--stays-solved-weight must be >= 0, got {args.stays_solved_weight}")
    if not 0 <= args.min_stays_solved <= 1:
        raise UsageError(f"--min-stays-solved must be in [0, 1], got {args.min_stays_solved}")
    check_env_id(args.env_id)
    resolve_device(args.device)
    threshold = make_batched_env(args.env_id, 1, "cpu").reward_threshold
    needs = args.objective in ("seconds", "steps") or args.stays_solved_weight
    if threshold is None and (needs or args.min_stays_solved):
        raise UsageError(
            f"{args.env_id} has no reward threshold, so nothing is 'solved' there;"
            " use --objective final or auc without the stays-solved options"
        )
    values = {"env_id": args.env_id, "seed": args.seed, "device": args.device}
    values |= {"eval_interval": args.eval_interval, "eval_episodes": args.eval_episodes}
    if args.total_timesteps is not None:
        values["ppo.total_timesteps"] = args.total_timesteps
    setup = Setup(
        base=with_values(default_config(args.agent), values),
        space=search_space(args.agent),
        objective=args.objective,
        threshold=threshold,
        unsolved_penalty=args.unsolved_penalty,
        stays_solved_weight=args.stays_solved_weight,
        min_stays_solved=args.min_stays_solved,
    )
    check_space(setup)
    name = args.study or f"{args.agent}-{args.env_id.replace('/', '_').replace(':', '_')}"
    out = args.out or Path("reports/tune") / name
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a folder")
    shown = st.describe(args.storage, out / "study.log")
    # Check the storage and the study before anything is written.
    if args.storage is not None or (out / "study.log").is_file():
        exists = st.check_study(st.open_storage(args.storage, out / "study.log"), name,
                                setup.attrs(), shown)  # fmt: skip
    else:
        exists = False
    make_writable_dir(out, "report folder")
    max_trials = args.max_trials or args.trials * args.workers
    job = tune.Job(
        setup, args.storage, name, out, args.trials, max_trials,
        args.pruner, args.sampler, args.sampler_seed,
    )  # fmt: skip
    if not exists:
        storage = st.open_storage(args.storage, job.journal)
        st.create_study(storage, name, setup.direction, setup.attrs(), shown, tune.fill(job))
    code, messages = run_local(job, args.workers, max_trials, show=not args.quiet)
    study = tune.load(job)
    notes = write_report(study, setup, out, shown)
    if not args.quiet:
        print(describe(study, setup, out, shown, notes))
    for message in messages:
        stop = "; the study is consistent: run the same command to go on" if code > 128 else ""
        print(f"rlrnn tune: {message}{stop}", file=sys.stderr)
    return code


def _agents(args: argparse.Namespace) -> int:
    from agents import AGENTS
    from rlrnn.config import SB3_AGENTS
    from rlrnn.hyperparams import describe

    descriptions = {name: text for name, (_, text) in AGENTS.items()} | SB3_AGENTS
    for name, text in descriptions.items():
        print(f"{name:18} {text}\n{'':18} defaults: {describe(name)}")
    return 0


def _probe(args: argparse.Namespace) -> int:
    from rlrnn import probe
    from rlrnn.training import resolve_device

    report = probe.probe_command(
        args.run, args.checkpoint, args.episodes, args.seed, args.test_fraction, args.alpha,
        args.stochastic, args.untrained, args.compare, args.out, resolve_device(args.device),
        args.env_id,
    )  # fmt: skip
    print(json.dumps(report) if args.json else probe.describe_report(report))
    return 0


def _gradflow(args: argparse.Namespace) -> int:
    from rlrnn import gradflow
    from rlrnn.training import resolve_device

    report = gradflow.gradflow_command(
        args.runs, args.checkpoint, args.cores, args.hidden_size, args.num_layers,
        args.forget_bias, args.steps, args.batch, args.seed, args.env_id, args.clip_steps,
        args.clip_seeds, args.clip_norms, args.clip_agent, args.out, resolve_device(args.device),
    )  # fmt: skip
    print(json.dumps(report) if args.json else gradflow.describe_report(report))
    return 0


def _quiet_thread_write_errors(hook: threading.ExceptHookArgs) -> None:
    """A background writer (TensorBoard's) that hits a full disk dies quietly: the main thread
    meets the same error at its next write and reports it in one line."""
    if isinstance(hook.exc_value, OSError) and hook.exc_value.errno in WRITE_ERRNOS:
        return
    threading.__excepthook__(hook)


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(sys.argv[1:] if argv is None else argv)
    except KeyboardInterrupt:  # a Ctrl-C while the command starts (imports, parsing)
        print("rlrnn: interrupted", file=sys.stderr)
        return 130


def _main(argv: list[str]) -> int:
    from envs.batched import EnvError  # here, not at the top: a Ctrl-C while importing is one line

    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = argv
    hook, threading.excepthook = threading.excepthook, _quiet_thread_write_errors
    try:
        return args.handler(args)
    except (UsageError, EnvError) as e:
        print(f"rlrnn {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except Interrupted as e:
        print(f"rlrnn {args.command}: {e}", file=sys.stderr)
        return e.exit_code
    except TrainingDiverged as e:
        print(f"rlrnn {args.command}: error: {e}", file=sys.stderr)
        return EXIT_DIVERGED
    except WriteFailed as e:
        print(f"rlrnn {args.command}: error: {e}", file=sys.stderr)
        return EXIT_WRITE_FAILED
    except OSError as e:
        if e.errno not in WRITE_ERRNOS:
            raise
        where = f" {e.filename}" if e.filename else ""
        print(f"rlrnn {args.command}: error: cannot write{where}: {e.strerror}", file=sys.stderr)
        return EXIT_WRITE_FAILED
    except KeyboardInterrupt:
        print(f"rlrnn {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        threading.excepthook = hook


if __name__ == "__main__":
    sys.exit(main())

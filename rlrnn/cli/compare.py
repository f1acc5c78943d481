"""``rlrnn compare``: agents x seeds on one env, trained side by side, judged the same way, and a
report folder (:mod:`rlrnn.tools.compare.compare`, :mod:`rlrnn.tools.compare.report`); ``--storage``
splits the cells between machines (:mod:`rlrnn.tools.compare.claims`)."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rlrnn.cli.options import HelpFormatter, seed_int
from rlrnn.errors import UsageError
from rlrnn.learning.config import AGENT_NAMES, DEVICES

if TYPE_CHECKING:
    from rlrnn.tools.compare.claims import Claims
    from rlrnn.tools.compare.compare import RunSpec

DEFAULT_AGENTS = ("mlp", "framestack", "lstm")
FULL_AGENTS = AGENT_NAMES


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="compare agents over seeds: learning curves, a results table",
        description="Train agents over seeds on one env (or re-use finished runs), evaluate"
        " each run's final and best weights on the same fresh episodes, and write a report"
        " folder: learning_curves.png, results.csv, results.md, report.json, configs/.",
        formatter_class=HelpFormatter,
    )
    p.add_argument(
        "--agents",
        nargs="+",
        metavar="AGENT",
        help=f"agents to train, from: {' '.join(AGENT_NAMES)}"
        f" (default: {' '.join(DEFAULT_AGENTS)}, or none when --runs is given)",
    )
    p.add_argument("--full", action="store_true", help="all agents, 5 seeds")
    p.add_argument(
        "--suite",
        choices=("memory", "continuous"),
        help="a suite of envs instead of --env: 'memory' trains mlp, framestack k=4 and k=8,"
        " gru, mingru and lstm on the noisy (sigma 0.1) and flickering (p 0.5) cart-poles, 300k"
        " steps, into <out>/<env>/ and a summary in <out>/ (--full: 5 seeds; sigma 0.2 and 0.3,"
        " and the last action seen at sigma 0.1, too); 'continuous' trains mlp, framestack k=4,"
        " gru, lstm and sb3-recurrentppo on the continuous-force cart-pole and the position-only"
        " pendulum, 200k steps",
    )
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
    p.add_argument("--device", choices=DEVICES, default="cpu", help="device")
    p.add_argument(
        "--storage",
        metavar="URL",
        help="split the comparison between machines that share --out: each claims agent x seed"
        " cells from this study storage (postgresql://user@host/db, sqlite:///file.db,"
        " journal:PATH), runs each once, and all write the report once every cell is done",
    )
    p.add_argument("--study", help="study name in --storage (default: one per comparison)")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    # The work's modules (the trainer, worker processes, matplotlib) load when the command runs.
    from envs.batched import check_env_id
    from rlrnn.files import make_writable_dir
    from rlrnn.learning.fields import resolve_device
    from rlrnn.learning.memory import check_acting_memory
    from rlrnn.tools.compare import compare
    from rlrnn.tools.compare.claims import run_claimed
    from rlrnn.tools.compare.report import results_markdown, write_report

    if args.suite is not None:
        return run_suite(args)
    check_env_id(args.env_id)
    device = resolve_device(args.device)
    if args.full and args.agents:
        raise UsageError("--full compares all agents; leave out --agents or --full")
    agents = list(FULL_AGENTS if args.full else args.agents or ())
    if not agents and not args.runs:
        agents = list(DEFAULT_AGENTS)
    seeds, overrides = _seeds_and_overrides(
        args, ("episodes", "total_timesteps", "workers", "frame_stack")
    )
    existing = [compare.existing_run(d, args.env_id) for d in args.runs]
    specs = []
    if agents:
        specs = compare.plan_runs(
            agents,
            list(range(args.first_seed, args.first_seed + seeds)),
            env_id=args.env_id,
            out_dir=args.out,
            overrides=overrides,
            frame_stack=args.frame_stack,
        )
    labels = [s.label for s in specs + existing]
    if len(set(labels)) != len(labels):
        raise UsageError("two runs of the same agent and seed; drop one of them")
    compare.check_out_dir(args.out)
    for spec in specs + existing:
        check_acting_memory(spec.config, args.env_id, args.episodes, device, "episodes")
    claims = _claims(args, specs)
    if claims is None:  # a shared comparison prepares each run when it claims it
        compare.prepare_runs(specs)  # nothing is written before this point
    workers = args.workers or compare.default_workers(len(specs))
    command = shlex.join(["rlrnn", *args.argv])
    progress = not args.quiet
    if claims is None:
        records = compare.run_all(
            specs, args.episodes, workers, show_progress=progress, resume_command=command
        )
    else:
        records = run_claimed(
            specs,
            args.episodes,
            workers,
            claims,
            show_progress=progress,
            resume_command=command,
        )
    records += [compare.run_one(s, args.episodes, train_if_needed=False) for s in existing]
    out_dir = make_writable_dir(args.out, "report folder")
    rows = write_report(out_dir, records, args.env_id, args.episodes, command)
    if progress:
        threshold = records[0]["summary"]["reward_threshold"]
        print(results_markdown(rows, args.env_id, args.episodes, threshold))
        print(f"Report: {out_dir}/ (learning_curves.png, results.md, results.csv, configs/)")
    return 0


def _seeds_and_overrides(
    args: argparse.Namespace, positive: tuple[str, ...]
) -> tuple[int, dict[str, Any]]:
    """The number of seeds (checked >= 1, like the options named in ``positive``) and the config
    overrides of the run options."""
    seeds = args.seeds if args.seeds is not None else (5 if args.full else 3)
    for name in ("seeds", *positive):
        value = seeds if name == "seeds" else getattr(args, name)
        if value is not None and value < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    overrides: dict[str, Any] = {"device": args.device}
    if args.total_timesteps is not None:
        overrides["ppo.total_timesteps"] = args.total_timesteps
    if args.eval_interval is not None:
        overrides["eval_interval"] = args.eval_interval
    return seeds, overrides


def run_suite(args: argparse.Namespace) -> int:
    """``--suite``: the suite's envs and agents, one report per env and a summary."""
    from rlrnn.tools.compare import suites

    given = {"--agents": args.agents, "--runs": args.runs, "--frame-stack": args.frame_stack}
    given |= {"--storage": args.storage, "--env": "--env" in args.argv}
    clash = [name for name, value in given.items() if value]
    if clash:
        raise UsageError(f"--suite chooses the envs and agents; leave out {clash[0]}")
    seeds, overrides = _seeds_and_overrides(
        args, ("episodes", "total_timesteps", "workers", "eval_interval")
    )
    out = args.out if "--out" in args.argv else Path("reports") / args.suite
    summary = suites.run_suite(
        args.suite,
        out,
        seeds=list(range(args.first_seed, args.first_seed + seeds)),
        full=args.full,
        overrides=overrides,
        episodes=args.episodes,
        workers=args.workers,
        show_progress=not args.quiet,
        command=shlex.join(["rlrnn", *args.argv]),
    )
    if not args.quiet:
        print(summary)
        print(f"Report: {out}/ (summary.md; one folder per env with its curves and table)")
    return 0


def _claims(args: argparse.Namespace, specs: list[RunSpec]) -> Claims | None:
    """The shared queue of ``specs`` in ``--storage`` (None without it)."""
    from rlrnn.tools.compare.claims import Claims

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

"""``rlrnn tune``: an Optuna study over one agent's hyperparameters on one env, on this machine's
worker processes and any other machine that joins its storage (:mod:`rlrnn.tools.tune.tune`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rlrnn.cli.options import HelpFormatter, finite_float, seed_int
from rlrnn.errors import UsageError
from rlrnn.learning.config import AGENT_NAMES, DEVICES
from rlrnn.tools.tune.setup import OBJECTIVES


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tune",
        help="tune an agent's hyperparameters: an Optuna study, on one machine or many",
        description="Run trials of an agent with hyperparameters drawn from its search space"
        " (rlrnn/learning/hyperparams.py), the first trial its defaults; prune runs that fall"
        " behind at"
        " the periodic evaluations; write trials.csv, trials.md, history.png, importance.png"
        " and best.json (train it: python train.py --config best.json), the best trial being"
        " always one that solved under the seconds and steps objectives. Seconds are CPU seconds"
        " of the trial's process up to the evaluation that solved it (evaluations included), so"
        " other load on the machine does not change them. The study lives in a storage: a"
        " journal file in --out by default, or --storage URL, which other processes and machines"
        " join by running the same command.",
        formatter_class=HelpFormatter,
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
        "--unsolved-penalty",
        type=finite_float,
        default=2.0,
        metavar="X",
        help="steps: a run that never solves scores X (> 1) times the most a solved run can"
        " score (the trial's budget of env steps, times 1 + W), so it ranks below every run that"
        " solves; seconds: it scores inf (CPU seconds have no such bound)",
    )
    score.add_argument(
        "--stays-solved-weight",
        type=finite_float,
        default=0.0,
        metavar="W",
        help="worsen the score by W x (1 - stays_solved) of itself (the fraction of evaluations"
        " after the first solve that stay solved)",
    )
    score.add_argument(
        "--min-stays-solved",
        type=finite_float,
        default=0.0,
        metavar="F",
        help="a constraint: runs whose stays_solved is below F are infeasible (0: none)",
    )
    runs = p.add_argument_group("each trial")
    runs.add_argument("--total-timesteps", type=int, help="env steps (default: the agent's)")
    runs.add_argument("--eval-interval", type=int, default=2048, help="env steps between evals")
    runs.add_argument("--eval-episodes", type=int, default=20, help="episodes per evaluation")
    runs.add_argument("--seed", type=int, default=0, help="seed of every trial's run")
    runs.add_argument("--device", choices=DEVICES, default="cpu", help="device")
    study = p.add_argument_group("study")
    study.add_argument("--trials", type=int, default=20, help="trials each worker process runs")
    study.add_argument(
        "--max-trials",
        type=int,
        metavar="N",
        help="stop once the study holds N trials, failed ones not counted, all processes and"
        " machines together (default: --trials x --workers; the same command resumes to it)",
    )
    study.add_argument("--workers", type=int, default=1, help="worker processes on this machine")
    study.add_argument("--pruner", choices=("median", "none"), default="median", help="pruner")
    study.add_argument("--sampler", choices=("tpe", "random"), default="tpe", help="sampler")
    study.add_argument(
        "--sampler-seed",
        type=seed_int,
        help="seed of the sampler (+ the worker index); None: random",
    )
    study.add_argument(
        "--storage",
        metavar="URL",
        help="shared study storage: postgresql://user@host/db, mysql://..., sqlite:///file.db,"
        " or a journal file on a shared filesystem, journal:PATH or a path ending in .log;"
        " default: journal <out>/study.log",
    )
    study.add_argument("--study", help="study name (default: <agent>-<env>)")
    p.add_argument("--out", type=Path, help="report folder (default: reports/tune/<study>)")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    # The work's modules (Optuna, the trainer) load when the command runs, not for --help.
    from envs import make_batched_env
    from envs.batched import check_env_id
    from rlrnn.files import check_can_create, check_no_link_below, make_writable_dir
    from rlrnn.learning.fields import resolve_device
    from rlrnn.learning.hyperparams import default_config, search_space, with_values
    from rlrnn.tools.common import storage as st
    from rlrnn.tools.tune import tune
    from rlrnn.tools.tune.report import describe, write_report
    from rlrnn.tools.tune.setup import Setup, check_space
    from rlrnn.tools.tune.workers import check_workers, run_local

    for name in ("trials", "workers", "max_trials", "total_timesteps", "eval_interval"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if not args.unsolved_penalty > 1:
        raise UsageError(f"--unsolved-penalty must be > 1, got {args.unsolved_penalty}")
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
        base=with_values(default_config(args.agent, args.env_id), values),
        space=search_space(args.agent, default_config(args.agent, args.env_id)),
        objective=args.objective,
        threshold=threshold,
        unsolved_penalty=args.unsolved_penalty,
        stays_solved_weight=args.stays_solved_weight,
        min_stays_solved=args.min_stays_solved,
    )
    check_space(setup)
    name = args.study or f"{args.agent}-{args.env_id.replace('/', '_').replace(':', '_')}"
    out = check_can_create(args.out or Path("reports/tune") / name, "report folder")
    # The report folder is the user's; what rlrnn writes inside it is never reached by a link.
    for inside in ("trials", "study.log" if args.storage is None else None):
        if inside is not None:
            check_no_link_below(out, out / inside, "report folder")
    max_trials = args.max_trials or args.trials * args.workers
    job = tune.Job(
        setup=setup,
        storage=args.storage,
        study=name,
        out_dir=out,
        trials=args.trials,
        max_trials=max_trials,
        pruner=args.pruner,
        sampler=args.sampler,
        sampler_seed=args.sampler_seed,
    )
    check_workers(job, args.workers)
    shown = st.describe(args.storage, job.journal)
    # Every check, the storage's and the study's too, before anything is written.
    if args.storage is not None or job.journal.is_file():
        storage = st.open_storage(args.storage, job.journal)
        exists = st.check_study(storage, name, setup.attrs(), shown)
    else:
        exists = False
    make_writable_dir(out, "report folder")
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

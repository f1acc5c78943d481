"""Does a solved policy stay solved? Agents x seeds x budgets, judged on the final weights.

For every run: the final weights' mean return over ``--episodes`` fresh episodes, the share of
periodic evaluations after the first solve that stay >= the threshold ("stays solved", pooled
over seeds) and the worst of them. Variants change the agents' tuned defaults with train.py's
own flags, so the same text trains the same thing from the command line:

    python benchmarks/stability.py                              # the defaults, 100k and 500k
    python benchmarks/stability.py --agents lstm --budgets 100000 \\
        --variant "lr2e-3=--learning-rate 0.002" --variant "beta=--adam-beta2 0.9"
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import shlex
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from provenance import provenance  # benchmarks/, beside this script

from rlrnn.cli.options import add_config_arguments, config_from_args
from rlrnn.learning.config import RunConfig
from rlrnn.learning.evaluation import evaluate
from rlrnn.learning.hyperparams import default_config
from rlrnn.runs.loading import load_checkpoint
from rlrnn.runs.training import train
from rlrnn.tools.common.seed_stats import bootstrap_interval, iqm
from rlrnn.tools.common.stability import Stability, pooled_stays_solved, stability
from rlrnn.tools.compare.workers import Stopped, run_tasks

AGENTS = ("lstm", "gru", "lstm2", "framestack", "rnn")


def variant_config(
    agent: str, flags: str, budget: int, seed: int, env_id: str | None = None
) -> RunConfig:
    """``agent``'s tuned defaults (on ``env_id``, the default env when None) with train.py
    ``flags`` on top, at ``budget`` env steps."""
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_config_arguments(parser)
    base = default_config(agent, env_id)
    base = dataclasses.replace(
        base, seed=seed, ppo=dataclasses.replace(base.ppo, total_timesteps=budget)
    )
    return config_from_args(parser.parse_args(shlex.split(flags)), base)


def run(config: RunConfig, episodes: int) -> dict[str, Any]:
    """Train ``config`` in a temporary folder; the summary plus the final weights' returns."""
    with tempfile.TemporaryDirectory() as tmp:
        summary = train(config, Path(tmp), show_progress=False)
        policy, _, _ = load_checkpoint(Path(tmp) / "final.pt")
        final = evaluate(policy, config.env_id, episodes).mean
    held = stability(summary["evaluations"], summary["reward_threshold"])
    return {
        "agent": config.agent.agent,
        "env_id": config.env_id,
        "seed": config.seed,
        "budget": config.ppo.total_timesteps,
        "final": final,
        "solved_at_steps": summary["solved_at_steps"],
        "solved_at_seconds": summary["solved_at_seconds"],
        "train_seconds": summary["train_seconds"],
        "stability": held._asdict(),
        "threshold": summary["reward_threshold"],
    }


def table_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (variant, agent, budget)."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault((r["variant"], r["agent"], r["budget"]), []).append(r)
    rows = []
    for (variant, agent, budget), runs in groups.items():
        runs.sort(key=lambda r: r["seed"])
        threshold = runs[0]["threshold"]
        held = [stability_of(r) for r in runs]
        worst_after = [h.worst_after_solve for h in held if h.worst_after_solve is not None]
        solved = [r["solved_at_seconds"] for r in runs if r["solved_at_seconds"] is not None]
        finals = [r["final"] for r in runs]

        def pooled(sample: list[Stability]) -> float:
            share = pooled_stays_solved(sample)
            return float("nan") if share is None else share

        rows.append(
            {
                "variant": variant,
                "agent": agent,
                "budget": budget,
                "threshold": threshold,
                "finals": [round(f, 1) for f in finals],
                "final_ok": sum(f >= threshold for f in finals),
                "seeds": len(runs),
                "worst_final": min(finals),
                "final_iqm": iqm(finals),
                "final_iqm_ci": bootstrap_interval(finals, iqm),
                "stays_solved": pooled_stays_solved(held),
                "stays_solved_ci": bootstrap_interval(held, pooled),
                "held": sum(h.held for h in held),
                "after_solve": sum(h.after_solve for h in held),
                "worst_after_solve": min(worst_after) if worst_after else None,
                "solved": len(solved),
                "median_seconds_to_solve": statistics.median(solved) if solved else None,
            }
        )
    return rows


def stability_of(record: dict[str, Any]) -> Stability:
    return Stability(**record["stability"])


def markdown(rows: list[dict[str, Any]], threshold: float) -> str:
    def num(value: float | None, fmt: str) -> str:
        return "–" if value is None else format(value, fmt)

    lines = [
        f"| variant | agent | budget | final ≥ {threshold:g} | worst seed final | stays solved"
        " | worst eval after solve | median s to solve | finals by seed |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['agent']} | {r['budget']:,} | {r['final_ok']}/{r['seeds']}"
            f" | {r['worst_final']:.1f} | {num(r['stays_solved'], '.0%')}"
            f" | {num(r['worst_after_solve'], '.0f')}"
            f" | {num(r['median_seconds_to_solve'], '.2f')} ({r['solved']}/{r['seeds']})"
            f" | {', '.join(f'{f:.0f}' for f in r['finals'])} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--agents", nargs="+", default=list(AGENTS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--budgets", type=int, nargs="+", default=[100_000, 500_000])
    parser.add_argument("--episodes", type=int, default=100, help="episodes judging final.pt")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=FLAGS",
        help="train.py flags on top of each agent's defaults (repeatable; default: none)",
    )
    parser.add_argument("--env", help="env id (default: the config's, the position-only cart-pole)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, help="write every run's record here (JSON)")
    args = parser.parse_args()
    source = provenance()  # the code as it was when the runs started
    variants = [v.partition("=")[::2] for v in args.variant] or [("default", "")]
    jobs = [
        (name, variant_config(agent, flags, budget, seed, args.env))
        for name, flags in variants
        for agent in args.agents
        for budget in args.budgets
        for seed in args.seeds
    ]
    records = []

    def done(index: int, result: dict[str, Any]) -> None:
        record = {"variant": jobs[index][0], **result}
        records.append(record)
        print(
            f"{record['variant']} {record['agent']} {record['budget']:,} s{record['seed']}:"
            f" final {record['final']:.1f}, solved at {record['solved_at_steps']}",
            flush=True,
        )

    # rlrnn's worker pool: a Ctrl-C or SIGTERM stops every worker too, none is left behind.
    configs = [config for _, config in jobs]
    try:
        run_tasks(functools.partial(run, episodes=args.episodes), configs, args.workers, done)
    except Stopped as e:
        print(f"stability: {e} after {len(records)} of {len(jobs)} runs", file=sys.stderr)
        raise SystemExit(128 + e.signal_number) from None
    rows = table_rows(records)
    print(markdown(rows, records[0]["threshold"]))
    if args.out:
        report = {**source, "rows": rows, "runs": records}
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()

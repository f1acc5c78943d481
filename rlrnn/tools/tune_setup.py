"""What a tuning study is for, and how a trial's run is scored.

Objectives (:func:`score`): ``seconds`` or ``steps`` to solve (minimised; a run that never solves
scores ``unsolved_penalty`` times a whole run, see :func:`score`), the ``final`` evaluation
return or the ``auc``, the area under the evaluation curve divided by its span (the mean return
over the run; both maximised). The "stays solved" fraction (:mod:`rlrnn.tools.stability`) enters the
score with a weight ``w`` (the score is worsened by ``w * (1 - stays_solved)`` of itself) or as a
constraint (runs below ``min_stays_solved`` are infeasible: TPE learns from it, and the best trial
is a feasible one).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from rlrnn.core.config import RunConfig
from rlrnn.core.hyperparams import (
    LogRange,
    SearchSpace,
    Variants,
    space_as_dict,
    value_of,
    with_values,
)
from rlrnn.errors import UsageError
from rlrnn.tools.stability import stability

# objective -> (direction, what it measures)
OBJECTIVES = {
    "seconds": ("minimize", "training seconds to solve"),
    "steps": ("minimize", "env steps to solve"),
    "final": ("maximize", "final evaluation return"),
    "auc": ("maximize", "mean evaluation return over the run (area under the curve / span)"),
}


@dataclass(frozen=True)
class Setup:
    """What a study is for: trials of ``base`` with values from ``space``, scored by
    ``objective``. Every process of a study must have the same setup."""

    base: RunConfig
    space: SearchSpace
    objective: str = "seconds"
    threshold: float | None = None  # the env's reward threshold (solved at or above it)
    unsolved_penalty: float = 2.0
    stays_solved_weight: float = 0.0
    min_stays_solved: float = 0.0

    @property
    def direction(self) -> str:
        return OBJECTIVES[self.objective][0]

    def attrs(self) -> dict[str, Any]:
        """The study attribute that identifies the setup (the device may differ per machine)."""
        base = self.base.to_dict()
        del base["device"], base["torch_threads"]
        return {
            "command": "tune",
            "objective": self.objective,
            "unsolved_penalty": self.unsolved_penalty,
            "stays_solved_weight": self.stays_solved_weight,
            "min_stays_solved": self.min_stays_solved,
            "space": space_as_dict(self.space),
            "base": base,
        }

    def defaults(self) -> dict[str, Any]:
        """The base config's values of the searched keys: the study's first trial."""
        return {key: value_of(self.base, key) for key in self.space}

    def grid(self) -> list[dict[str, Any]]:
        """Every combination of the space's values (a UsageError for a range)."""
        points: list[dict[str, Any]] = [{}]
        for key, r in self.space.items():
            if isinstance(r, LogRange):
                raise UsageError(f"a grid needs a finite set of values; {key} is a range")
            options = list(r.named) if isinstance(r, Variants) else list(r.options)
            points = [{**p, key: v} for p in points for v in options]
        return points

    def config(self, params: dict[str, Any]) -> RunConfig:
        """The config of a trial with ``params`` (a Variants key holds the variant's name)."""
        values: dict[str, Any] = {}
        for key, value in params.items():
            r = self.space[key]
            values.update(r.named[value] if isinstance(r, Variants) else {key: value})
        return with_values(self.base, values)


def score(
    setup: Setup, summary: dict[str, Any], longest: float = 0.0
) -> tuple[float, dict[str, Any]]:
    """The score of a finished run and what it was made from (trial attributes).

    ``longest``: the longest whole run (training seconds) of the study so far. An unsolved run
    scores the penalty times its whole run in env steps, or times the longest run in seconds (at
    least its own): a fast run that never solves must not beat a slower one that does.
    """
    records = summary["evaluations"]
    st = stability(records, setup.threshold)
    solved = summary["solved_at_steps"] is not None
    # Solved at the last evaluation only: nothing shows it stays solved.
    stays = (st.stays_solved if st.stays_solved is not None else 0.0) if solved else None
    if setup.objective in ("seconds", "steps"):
        key = "solved_at_seconds" if setup.objective == "seconds" else "solved_at_steps"
        if setup.objective == "seconds":
            whole = max(summary["train_seconds"], longest)
        else:
            whole = summary["env_steps"]
        value = summary[key] if solved else setup.unsolved_penalty * whole
    elif setup.objective == "final":
        value = summary["final_eval_mean"]
    else:
        value = area_under_curve(records)
    if setup.stays_solved_weight and solved:
        worse = setup.stays_solved_weight * (1 - stays)
        value *= 1 + worse if setup.direction == "minimize" else 1 - worse
    attrs = {
        "status": summary["status"],
        "solved_at_steps": summary["solved_at_steps"],
        "solved_at_seconds": summary["solved_at_seconds"],
        "final_eval_mean": summary["final_eval_mean"],
        "stays_solved": stays,
        "auc": area_under_curve(records),
        "env_steps": summary["env_steps"],
        "train_seconds": summary["train_seconds"],
    }
    if setup.min_stays_solved:  # <= 0: feasible (Optuna's convention)
        attrs["constraint"] = setup.min_stays_solved - (stays or 0.0)
    return float(value), attrs


def area_under_curve(records: list[dict[str, Any]]) -> float:
    """Trapezoid area under evaluation return against env steps, over its span."""
    if not records:
        return math.nan
    x = np.array([r["env_steps"] for r in records], dtype=np.float64)
    y = np.array([r["mean_return"] for r in records], dtype=np.float64)
    span = x[-1] - x[0]
    area = ((y[1:] + y[:-1]) / 2 * np.diff(x)).sum()  # the trapezoid rule
    return float(y[0]) if span == 0 else float(area / span)


def intermediate_value(setup: Setup, record: dict[str, Any]) -> float:
    """What a periodic evaluation reports to the pruner: its mean return, negated where the
    objective is minimised so that better is better in the study's direction.

    Not the time so far: Optuna's median pruner compares a trial's *best* value so far with the
    others' at the same step, and a time that only grows is best at its first evaluation.
    """
    sign = -1.0 if setup.direction == "minimize" else 1.0
    return sign * float(record["mean_return"])


def check_space(setup: Setup) -> None:
    """Every corner of the search space, and every variant, must make a valid config (checked
    before any trial)."""
    ranges = {k: r for k, r in setup.space.items() if not isinstance(r, Variants)}
    low = {k: r.low if isinstance(r, LogRange) else min(r.options) for k, r in ranges.items()}
    high = {k: r.high if isinstance(r, LogRange) else max(r.options) for k, r in ranges.items()}
    tries = [low, high]
    for key, r in setup.space.items():
        if isinstance(r, Variants):
            tries += [{**low, key: name} for name in r.named]
    for params in tries:
        try:
            setup.config(params)
        except UsageError as e:
            shown = ", ".join(f"{k}={v}" for k, v in params.items())
            raise UsageError(f"the search space cannot run ({shown}): {e}") from None

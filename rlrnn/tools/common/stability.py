"""Does a run stay solved? Measures over a run's periodic evaluations (its summary).

A run is *solved* at its first periodic evaluation whose mean return reaches the env's reward
threshold. What happens afterwards is what a user who keeps the final weights cares about:

- ``stays_solved``: the fraction of the evaluations *after* the first solve that are still at or
  above the threshold (1.0 for a run that never dips; None when no evaluation came after it);
- ``worst_after_solve``: the lowest evaluation mean after the first solve (None likewise).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple


class Stability(NamedTuple):
    solved_index: int | None  # index of the first evaluation at or above the threshold
    after_solve: int  # evaluations after the first solve
    held: int  # of those, how many stayed at or above the threshold
    worst_after_solve: float | None

    @property
    def stays_solved(self) -> float | None:
        return self.held / self.after_solve if self.after_solve else None


def stability(records: Sequence[dict[str, Any]], threshold: float | None) -> Stability:
    """Stability of the evaluations ``records`` (each with a ``mean_return``), in order."""
    means = [r["mean_return"] for r in records]
    if threshold is None:
        return Stability(None, 0, 0, None)
    first = next((i for i, m in enumerate(means) if m >= threshold), None)
    if first is None:
        return Stability(None, 0, 0, None)
    after = means[first + 1 :]
    return Stability(
        solved_index=first,
        after_solve=len(after),
        held=sum(m >= threshold for m in after),
        worst_after_solve=min(after) if after else None,
    )


def pooled_stays_solved(results: Sequence[Stability]) -> float | None:
    """The fraction of all post-solve evaluations, pooled over runs, that stayed solved."""
    total = sum(r.after_solve for r in results)
    return sum(r.held for r in results) / total if total else None

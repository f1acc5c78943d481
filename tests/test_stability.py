"""The stays-solved measures over a run's periodic evaluations."""

from rlrnn.tools.common.seed_stats import bootstrap_interval, iqm
from rlrnn.tools.common.stability import pooled_stays_solved, stability


def evals(*means: float) -> list[dict[str, float]]:
    return [{"mean_return": m} for m in means]


def test_counts_only_evaluations_after_the_first_solve():
    result = stability(evals(20, 480, 500, 217, 476, 500), 475)
    assert result.solved_index == 1
    assert (result.after_solve, result.held) == (4, 3)
    assert result.stays_solved == 0.75
    assert result.worst_after_solve == 217


def test_unsolved_or_just_solved_runs_have_no_stability():
    assert stability(evals(20, 30), 475).stays_solved is None
    last = stability(evals(20, 500), 475)
    assert last.solved_index == 1 and last.stays_solved is None and last.worst_after_solve is None
    assert stability(evals(500, 500), None).solved_index is None


def test_pooled_fraction_weights_runs_by_their_evaluations():
    a = stability(evals(500, 500, 500, 500), 475)  # 3 of 3
    b = stability(evals(500, 100), 475)  # 0 of 1
    assert pooled_stays_solved([a, b]) == 0.75
    assert pooled_stays_solved([stability(evals(1), 475)]) is None


def test_iqm_drops_the_outer_quarters_of_the_runs():
    assert iqm([0, 10, 20, 1000]) == 15  # the middle two of four
    assert iqm([500] * 19 + [199.4]) == 500  # one collapsed seed of twenty is an outer one
    assert iqm([3.0]) == 3.0


def test_bootstrap_interval_resamples_runs_and_gives_none_for_one_run():
    assert bootstrap_interval([480.0], iqm) is None  # no [x, x] interval from one seed
    runs = [500.0] * 18 + [199.4, 300.0]
    low, high = bootstrap_interval(runs, lambda r: sum(r) / len(r))
    assert low < sum(runs) / len(runs) < high <= 500  # around the mean, below the best run
    assert bootstrap_interval([7.0, 7.0, 7.0], iqm) == (7.0, 7.0)  # no spread, no width
    # Undefined for every resample (no run solved: no stays-solved share): no interval.
    assert bootstrap_interval([None, None], lambda r: float("nan")) is None

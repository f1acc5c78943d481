"""The stays-solved measures over a run's periodic evaluations."""

from rlrnn.tools.stability import pooled_stays_solved, stability


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

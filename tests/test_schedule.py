"""Evaluations and resume checkpoints scale with the batch: whole iterations, and at most a
hundred a run when the interval asked for is shorter than one iteration."""

import pytest

import rlrnn.runs.trainer
from rlrnn.learning.config import PPOConfig, RunConfig
from rlrnn.runs.schedule import MAX_PER_RUN, checkpoint_every, eval_every
from rlrnn.runs.training import train


def config(num_envs: int, total_timesteps: int, **run) -> RunConfig:
    ppo = PPOConfig(num_envs=num_envs, num_minibatches=1, total_timesteps=total_timesteps)
    return RunConfig(ppo=ppo, **run)


def per_run(every: int, c: RunConfig) -> int:
    return c.ppo.num_iterations * c.ppo.batch_size // every


def test_the_defaults_keep_their_schedule():
    c = RunConfig()
    assert (eval_every(c), checkpoint_every(c)) == (4096, 8192)  # every 4 and 8 iterations


def test_at_8_envs_the_intervals_are_rounded_to_whole_iterations():
    c = config(8, 100_000, eval_interval=1000, checkpoint_interval=3000)  # batch 128
    assert (eval_every(c), checkpoint_every(c)) == (1024, 3072)  # 8 and 24 iterations
    assert per_run(eval_every(c), c) == 97


@pytest.mark.parametrize("num_envs", [4096, 16_384])
def test_at_thousands_of_envs_a_run_evaluates_at_most_a_hundred_times(num_envs):
    c = config(num_envs, 50_000_000)  # 16,384 envs: 262,144 steps an iteration, 190 of them
    batch = c.ppo.batch_size
    for every in (eval_every(c), checkpoint_every(c)):
        assert every % batch == 0 and every >= batch  # never more than once an iteration
        assert MAX_PER_RUN // 2 < per_run(every, c) <= MAX_PER_RUN
    if num_envs == 16_384:
        assert eval_every(c) == checkpoint_every(c) == 2 * batch


def test_a_long_run_at_the_defaults_keeps_every_evaluation():
    c = config(64, 10_000_000)  # 9,765 iterations: the user's interval is honoured
    assert (eval_every(c), checkpoint_every(c)) == (4096, 8192)
    assert per_run(eval_every(c), c) > 2000


def test_zero_still_means_never():
    c = config(16_384, 50_000_000, eval_interval=0, checkpoint_interval=0)
    assert eval_every(c) == checkpoint_every(c) == 0


def test_a_run_with_a_batch_larger_than_its_intervals_evaluates_once_an_iteration(
    tmp_path, monkeypatch
):
    saves = []
    original = rlrnn.runs.trainer.save_training_state
    monkeypatch.setattr(
        rlrnn.runs.trainer,
        "save_training_state",
        lambda *args: saves.append(args[-1]) or original(*args),
    )
    # 8 envs x 16 steps = 128 env steps an iteration, 6 iterations; asked for every 50 steps.
    c = RunConfig(
        ppo=PPOConfig(num_envs=8, num_steps=16, num_minibatches=1, total_timesteps=768),
        eval_interval=50,
        eval_episodes=1,
        checkpoint_interval=50,
    )
    summary = train(c, tmp_path / "run", show_progress=False)
    assert [e["env_steps"] for e in summary["evaluations"]] == [128 * k for k in range(1, 7)]
    assert saves == ["running"] * 6 + ["finished"]

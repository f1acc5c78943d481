"""What a training run tells its user as it goes: the SB3 agents' TensorBoard scalars under the
names rlrnn's trainer writes, and ``--compile`` saying it compiles before the minutes it takes."""

import functools
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from rlrnn.learning import compiled
from rlrnn.learning.config import AgentConfig, PPOConfig, RunConfig
from rlrnn.runs.training import train

# The training statistics both kinds of run log (rlrnn's trainer: rlrnn.runs.training).
SHARED = {
    "losses/value_loss",
    "losses/policy_loss",
    "losses/entropy",
    "losses/approx_kl",
    "losses/clipfrac",
    "losses/explained_variance",
    "charts/learning_rate",
    "charts/SPS",
    "charts/episodic_return",
    "charts/episodic_length",
    "eval/mean_return",
    "eval/std_return",
}
TINY = PPOConfig(total_timesteps=1024, num_envs=8, num_steps=32)


def scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of the run's ``tb/`` event files (one folder: one TensorBoard run)."""
    events = EventAccumulator(str(run_dir / "tb"))
    events.Reload()
    return {
        tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]
    }


@pytest.mark.parametrize("agent", ["sb3-ppo", "sb3-recurrentppo"])
def test_sb3_runs_log_their_training_under_rlrnns_names(tmp_path, tiny_run, agent):
    ours = scalars(tiny_run("lstm"))
    assert set(ours) >= SHARED  # the names are rlrnn's trainer's own
    run_dir = tmp_path / agent
    config = RunConfig(agent=AgentConfig(agent=agent), ppo=TINY, eval_interval=512)
    train(config, run_dir, show_progress=False)
    logged = scalars(run_dir)
    assert set(logged) >= SHARED
    assert [p.name for p in (run_dir / "tb").iterdir() if p.is_dir()] == []  # no sb3_1/ apart
    # One point per update, at the env step the update trained on, the last one included.
    batch = TINY.num_envs * TINY.num_steps
    updates = list(range(batch, TINY.total_timesteps + 1, batch))
    for tag in ("losses/value_loss", "losses/entropy", "charts/SPS", "losses/clipfrac"):
        assert [step for step, _ in logged[tag]] == updates, tag
    # The same quantities as rlrnn's: entropy (not SB3's minus-entropy loss) near ln 2 for two
    # actions, a fraction in [0, 1], episode returns of the cart-pole's size.
    assert all(0.5 < v <= 0.6932 for _, v in logged["losses/entropy"])
    assert all(0.0 <= v <= 1.0 for _, v in logged["losses/clipfrac"])
    assert all(v > 0 for _, v in logged["losses/value_loss"])
    assert all(5 <= v <= 500 for _, v in logged["charts/episodic_return"])
    assert [step for step, _ in logged["eval/mean_return"]] == [512, 1024]


def test_compile_says_so_before_it_starts(tmp_path, monkeypatch, capsys):
    """Through train(): the notice is on stderr before any compiling, and its time after.
    (Compiled with torch.compile's "eager" backend: the same call path, without minutes of
    code generation.)"""
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))
    warm_up = compiled._warm_up
    before: list[str] = []

    def watched(*args, **kwargs):
        before.append(capsys.readouterr().err)
        return warm_up(*args, **kwargs)

    monkeypatch.setattr(compiled, "_warm_up", watched)
    torch._dynamo.reset()
    config = RunConfig(
        agent=AgentConfig(agent="gru"),
        ppo=PPOConfig(total_timesteps=128, num_envs=4, num_steps=8, num_minibatches=2),
        eval_interval=0,
        eval_episodes=1,
        compile=True,
    )
    try:
        train(config, tmp_path / "run", show_progress=False)
    finally:
        torch._dynamo.reset()
    assert len(before) == 1
    assert f"rlrnn: {compiled.COMPILING}" in before[0].splitlines()
    assert "rlrnn: compiled in " in capsys.readouterr().err

"""The hidden-state probe: ridge regression on known data, the real pipeline and the command."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from envs import TensorCartPole, TensorPendulum
from rlrnn.cli import main
from rlrnn.errors import UsageError
from rlrnn.learning.config import AgentConfig, RunConfig
from rlrnn.runs.loading import build_agent
from rlrnn.tools.probe.probe import (
    ALPHAS,
    collect,
    fit_probe,
    fit_ridge,
    has_hidden_state,
    r2_scores,
    require_hidden_state,
    run_probe,
)

ROOT = Path(__file__).resolve().parents[1]
ENV = "PositionOnlyCartPole-v1"
PENDULUM = "PositionOnlyPendulum-v1"
VELOCITY_KEYS = [v.key for v in TensorCartPole.HIDDEN_VELOCITIES]


@pytest.fixture(scope="module")
def lstm_run(tiny_run) -> Path:
    return tiny_run("lstm")


@pytest.fixture(scope="module")
def pendulum_run(tiny_run) -> Path:
    return tiny_run("lstm", PENDULUM)


def test_ridge_recovers_a_linear_map_and_finds_nothing_in_noise():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 12)) * rng.uniform(0.01, 100, size=12)  # wildly scaled features
    W = rng.normal(size=(12, 2))
    Y = X @ W + np.array([3.0, -1.0])
    probe = fit_ridge(X[:400], Y[:400], alpha=1e-8)
    assert np.all(r2_scores(Y[400:], probe.predict(X[400:])) > 0.9999)
    noise = rng.normal(size=(600, 2))
    r2 = r2_scores(noise[400:], fit_ridge(X[:400], noise[:400], 1e-3).predict(X[400:]))
    assert np.all(r2 < 0.1) and np.all(r2 > -0.2)


def test_alpha_is_chosen_on_held_out_episodes():
    rng = np.random.default_rng(1)
    episode = np.repeat(np.arange(10), 30)
    X = rng.normal(size=(300, 80))  # many features, few samples: plain least squares overfits
    Y = X[:, :2] + rng.normal(scale=2.0, size=(300, 2))
    probe = fit_probe(X, Y, episode)
    assert probe.alpha in ALPHAS and probe.alpha >= 1e-2
    assert fit_probe(X, Y, episode, alpha=0.5).alpha == 0.5


def test_r2_is_nan_for_a_constant_target_and_constant_features_are_harmless():
    Y = np.stack([np.arange(5.0), np.ones(5)], 1)
    r2 = r2_scores(Y, Y)
    assert r2[0] == 1.0 and np.isnan(r2[1])
    X = np.stack([np.arange(5.0), np.zeros(5)], 1)  # the second feature never changes
    assert np.allclose(fit_ridge(X, Y, 0.0).predict(X)[:, 0], Y[:, 0])


def test_collect_aligns_features_with_the_state_each_observation_came_from():
    torch.manual_seed(0)
    agent = build_agent(RunConfig(), 2, 2)
    data = collect(agent, ENV, episodes=3, seed=5)
    n = len(data.velocities)
    assert data.features[0].shape == (n, 64)  # h and c of one 32-wide LSTM layer
    assert data.episode.tolist() == sorted(data.episode.tolist())
    assert set(data.episode.tolist()) == {0, 1, 2}
    for e in range(3):
        steps = data.step[data.episode == e]
        assert steps.tolist() == list(range(len(steps)))
    # Start states are drawn from [-0.05, 0.05]: the first velocities of each episode are too.
    assert np.all(np.abs(data.velocities[data.step == 0]) <= 0.05)


def test_a_recurrent_state_holds_the_velocities_a_feedforward_core_cannot():
    """Along the same (random) trajectories: even an untrained LSTM's state is a memory of
    recent positions, so it holds the velocities; an MLP's features see one observation only."""
    torch.manual_seed(0)
    lstm = build_agent(RunConfig(), 2, 2)
    mlp = build_agent(RunConfig(agent=AgentConfig(agent="mlp")), 2, 2)
    results = run_probe(lstm, ENV, episodes=30, seed=0, deterministic=False, baselines=(mlp,))
    memory, feedforward = results
    assert memory.features.startswith("hidden state") and feedforward.features.startswith("core")
    for key in VELOCITY_KEYS:
        assert memory.r2_previous[key] > 0.9
        assert feedforward.r2_previous[key] < 0.8
        assert memory.r2[key] > feedforward.r2[key] + 0.15
    assert memory.train_episodes == 22 and memory.test_episodes == 8
    assert 0 < len(memory.example_true) < memory.test_samples  # one of the 8 held-out episodes


def test_probe_command_writes_figure_and_json(lstm_run, capsys):
    assert main(["probe", str(lstm_run), "--episodes", "6", "--untrained", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["figure"] == str(lstm_run / "probe.png")  # default: beside the checkpoint
    with Image.open(lstm_run / "probe.png") as image:
        assert image.format == "PNG" and image.size[0] > 500
    assert [p["label"].split()[0] for p in report["probes"]] == ["lstm", "untrained"]
    for p in report["probes"]:
        assert set(p["r2"]) == set(VELOCITY_KEYS) == set(p["r2_previous_step"])
        for value in [*p["r2"].values(), *p["r2_previous_step"].values()]:
            assert value is None or -10 < value <= 1
        assert p["train_episodes"] + p["test_episodes"] == 6
    assert not list(lstm_run.glob(".*.tmp*"))  # no temporary files


def test_probe_command_text_output(lstm_run, tmp_path, capsys):
    out = tmp_path / "p.png"
    argv = ["probe", str(lstm_run / "final.pt"), "--episodes", "4", "--out", str(out)]
    assert main([*argv, "--compare", str(lstm_run), "--stochastic"]) == 0
    text = capsys.readouterr().out
    assert "R² now" in text and "cart velocity" in text and f"Figure: {out}" in text
    assert out.is_file()


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["{tmp}/no-run"], "checkpoint not found"),
        (["{tmp}/junk.pt"], "cannot read checkpoint"),
        (["{run}", "--out", "{tmp}/p.jpg"], "unknown file type '.jpg'; use .png"),
        (["{run}", "--out", "{tmp}/missing/p.png"], "does not exist"),
        (["{run}", "--out", "{tmp}"], "unknown file type"),
        (["{run}", "--episodes", "2"], "--episodes must be >= 3"),
        (["{run}", "--test-fraction", "1.5"], "test fraction must be in (0, 1)"),
        (["{run}", "--alpha", "-1"], "alpha must be >= 0"),
        (["{run}", "--episodes", "many"], "invalid int value: 'many'"),
        (["{run}", "--env", "Acrobot-v1"], "the probe reads the velocities in the state of"),
    ],
)
def test_probe_bad_input_is_one_line_exit_2(lstm_run, tmp_path, capsys, args, fragment, cli):
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    args = [a.replace("{tmp}", str(tmp_path)).replace("{run}", str(lstm_run)) for a in args]
    out = [] if "--out" in args else ["--out", str(tmp_path / "p.png")]
    assert cli(["probe", *args, *out]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0], err
    assert not (tmp_path / "p.png").exists()


def test_probe_refuses_an_env_without_hidden_velocities_in_one_line():
    torch.manual_seed(0)
    assert not has_hidden_state("Acrobot-v1") and not has_hidden_state("MountainCar-v0")
    with pytest.raises(UsageError, match="reads the velocities in the state of") as refused:
        collect(build_agent(RunConfig(), 2, 2), "Acrobot-v1", episodes=3)
    assert len(str(refused.value).splitlines()) == 1 and "'Acrobot-v1'" in str(refused.value)
    with pytest.raises(UsageError):  # a variant id with an impossible parameter: none either
        require_hidden_state("NoisyPositionOnlyCartPole-sigma-1-v1")


@pytest.mark.parametrize(
    ("env_id", "hidden"),
    [
        (PENDULUM, TensorPendulum.HIDDEN_VELOCITIES),
        ("ContinuousPositionOnlyCartPole-v1", TensorCartPole.HIDDEN_VELOCITIES),
    ],
)
def test_the_probe_reads_the_pendulum_and_the_continuous_cartpole(env_id, hidden):
    """Each env's own velocities, as its tensor env names them: the pendulum's one, θ̇."""
    torch.manual_seed(0)
    assert require_hidden_state(env_id) == hidden
    agent = build_agent(RunConfig(env_id=env_id), 2, 1, continuous=True)
    data = collect(agent, env_id, episodes=3, seed=5)
    assert data.velocities.shape == (len(data.episode), len(hidden)) and data.hidden == hidden
    (result,) = run_probe(agent, env_id, episodes=6, seed=0)
    assert list(result.r2) == list(result.r2_previous) == [v.key for v in hidden]
    assert result.example_true.shape == result.example_predicted.shape
    assert result.example_true.shape[1] == len(hidden)
    if env_id == PENDULUM:  # an untrained LSTM's state is a memory of recent angles
        assert [(v.key, v.label, v.unit) for v in hidden] == [
            ("angular_velocity", "angular velocity", "rad/s")
        ]
        assert result.r2["angular_velocity"] > 0.9


def test_probe_command_on_a_pendulum_run_reports_the_angular_velocity(pendulum_run, capsys):
    out = pendulum_run / "p.png"
    argv = ["probe", str(pendulum_run), "--episodes", "4", "--out", str(out)]
    assert main([*argv, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["env_id"] == PENDULUM
    (p,) = report["probes"]
    assert set(p["r2"]) == set(p["r2_previous_step"]) == {"angular_velocity"}
    assert -10 < p["r2"]["angular_velocity"] <= 1
    with Image.open(out) as image:  # one panel
        assert image.format == "PNG" and image.size[0] > 500
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "R² now           angular velocity " in text and "cart velocity" not in text


def test_probe_module_entry_point_reports_missing_run(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "rlrnn.cli", "probe", str(tmp_path / "nothing")],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "checkpoint not found" in lines[0]

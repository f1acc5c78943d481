"""Gradient flow through the recurrence: exact values, vanishing and exploding, the command."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rlrnn.cli import main
from rlrnn.errors import UsageError
from rlrnn.tools.gradflow.gradflow import (
    clipping_run,
    fresh_core,
    gradient_flow,
    gradient_norms,
    rollout_observations,
    set_forget_bias,
    standardise,
)

ENV = "PositionOnlyCartPole-v1"


@pytest.fixture(scope="module")
def inputs() -> torch.Tensor:
    return standardise(rollout_observations(ENV, batch=16, steps=48, seed=0))


@pytest.fixture(scope="module")
def runs(tiny_run) -> dict[str, Path]:
    return {agent: tiny_run(agent) for agent in ("gru", "mlp")}


def test_rollouts_are_real_cartpole_observations():
    obs = rollout_observations(ENV, batch=4, steps=30, seed=1)
    assert obs.shape == (30, 4, 2)
    assert obs[:, :, 1].abs().max() < 0.21 * 2  # pole angles stay inside the (doubled) bound
    assert obs[0].abs().max() <= 0.05  # the start states


def test_norms_match_backprop_written_out_for_a_vanilla_rnn():
    torch.manual_seed(0)
    core = fresh_core("rnn", 2, 5, 1)
    x = torch.randn(3, 4, 2)
    norms = gradient_norms(core, x, seed=3)
    # h_t = tanh(W_x x_t + b + U h_{t-1}) from h_0 = 0; L = sum_b u_b . h_3.
    W_x, U, b = (p.detach().double().numpy() for p in (core.weights_x[0], core.weights_h[0],
                                                       core.biases[0]))  # fmt: skip
    u = torch.randn(4, 5, generator=torch.Generator().manual_seed(3)).double().numpy()
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    hs = [np.zeros((4, 5))]
    for t in range(3):
        hs.append(np.tanh(x[t].double().numpy() @ W_x.T + b + hs[-1] @ U.T))
    grad = u  # dL/dh_3
    expected = []
    for t in (3, 2, 1):  # k = 1, 2, 3: gradient with respect to h_{t-1}
        grad = (grad * (1 - hs[t] ** 2)) @ U
        expected.append(np.linalg.norm(grad, axis=1).mean())
    np.testing.assert_allclose(norms, expected, rtol=1e-5)


@pytest.mark.parametrize("name", ["rnn", "gru", "mingru", "lstm"])
def test_norms_are_finite_and_fade_for_fresh_cores(inputs, name):
    norms = gradient_norms(fresh_core(name, 2, 16, 1), inputs)
    assert norms.shape == (48,) and np.all(np.isfinite(norms)) and np.all(norms > 0)
    assert norms[-1] < 1e-3 * norms[0]  # torch-style initialisation forgets within 48 steps


def test_two_layer_lstm_gradient_reaches_both_layers(inputs):
    norms = gradient_norms(fresh_core("lstm", 2, 8, 2), inputs[:6])
    assert norms.shape == (6,) and np.all(norms > 0)


def rnn_with_gain(gain: float) -> torch.nn.Module:
    core = fresh_core("rnn", 2, 64, 1, seed=0)
    with torch.no_grad():
        core.weights_h[0].copy_(torch.randn(64, 64, generator=torch.Generator().manual_seed(0)))
        core.weights_h[0].mul_(gain / 8.0)  # spectral radius about ``gain``
    return core


def test_vanilla_rnn_explodes_with_large_and_vanishes_with_small_recurrent_weights(inputs):
    exploding = gradient_norms(rnn_with_gain(3.0), inputs)
    vanishing = gradient_norms(rnn_with_gain(0.5), inputs)
    assert exploding[-1] > 1e4 * exploding[0]
    assert vanishing[-1] < 1e-8 * vanishing[0]


def test_open_forget_gate_carries_the_gradient(inputs):
    closed = gradient_norms(fresh_core("lstm", 2, 16, 1), inputs)
    open_gate = gradient_norms(set_forget_bias(fresh_core("lstm", 2, 16, 1), 4.0), inputs)
    assert open_gate[-1] > 1e-2 * open_gate[0]
    assert closed[-1] < 1e-6 * closed[0]
    with pytest.raises(UsageError, match="needs an lstm core"):
        set_forget_bias(fresh_core("gru", 2, 4, 1), 1.0)


def test_gradient_flow_rejects_feedforward_and_unknown_cores():
    with pytest.raises(UsageError, match="no recurrent state"):
        fresh_core("mlp", 2, 8, 1)
    with pytest.raises(UsageError, match="unknown agent 'transformer'"):
        fresh_core("transformer", 2, 8, 1)
    core = fresh_core("rnn", 3, 8, 1)
    with pytest.raises(UsageError, match="reads 3 inputs"):
        gradient_flow([("rnn", core, None)], ENV, steps=4, batch=2)


def test_clipping_run_records_norms_before_and_after_clipping():
    clipped = clipping_run("rnn", 0.05, seed=0, total_timesteps=1024, eval_episodes=2)
    free = clipping_run("rnn", 0.0, seed=0, total_timesteps=1024, eval_episodes=2)
    assert clipped.env_steps == free.env_steps == 1024
    assert len(clipped.pre_clip) == len(clipped.applied) == 1
    assert clipped.applied[0] <= 0.05 * 1.001 < clipped.pre_clip[0]
    assert clipped.clipped_fraction > 0.5 and free.clipped_fraction == 0
    assert free.applied == free.pre_clip
    assert 0 < clipped.eval_mean <= 500


def test_gradflow_command_with_a_trained_run(runs, tmp_path, capsys):
    out = tmp_path / "flow.png"
    argv = ["gradflow", str(runs["gru"]), "--cores", "rnn", "lstm", "--forget-bias", "3",
            "--steps", "12", "--batch", "8", "--clip-steps", "1024", "--clip-seeds", "0",
            "--out", str(out), "--json"]  # fmt: skip
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    labels = [c["label"] for c in report["curves"]]
    assert labels == [
        "gru trained (gru)",
        "rnn fresh (H=32)",
        "lstm fresh (H=32)",
        "lstm fresh (H=32, forget bias 3)",
    ]
    for curve in report["curves"]:
        assert len(curve["norms"]) == 12 and all(np.isfinite(curve["norms"]))
    assert [r["max_grad_norm"] for r in report["clipping"]] == [0.0, 0.5]
    assert "first run's agent" in report["observations"]
    with Image.open(out) as image:
        assert image.format == "PNG"
    assert [p.name for p in tmp_path.iterdir()] == ["flow.png"]


def test_gradflow_command_text_without_runs(tmp_path, capsys):
    out = tmp_path / "flow.png"
    argv = ["gradflow", "--steps", "5", "--batch", "4", "--clip-steps", "0", "--out", str(out)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    for name in ("rnn fresh", "gru fresh", "lstm fresh"):
        assert name in text
    assert "k=1" in text and "k=5" in text and "Clipping" not in text and out.is_file()


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--steps", "0"], "steps must be >= 1"),
        (["--batch", "0"], "batch must be >= 1"),
        (["--cores", "mlp"], "agent 'mlp' has no recurrent state"),
        (["--cores", "transformer"], "unknown agent 'transformer'"),
        (["--cores"], "nothing to measure"),
        (["{mlp}"], "has no recurrent state"),
        (["{tmp}/no-run"], "checkpoint not found"),
        (["--out", "{tmp}/flow.svg"], "unknown file type '.svg'; use .png"),
        (["--out", "{tmp}/missing/flow.png"], "does not exist"),
        (["--clip-steps", "-1"], "clip steps must be >= 0"),
        (["--clip-norms", "-0.5"], "max grad norms must be >= 0"),
        (["--clip-agent", "sb3-ppo"], "the clipping runs train rlrnn agents"),
        (["--steps", "x"], "invalid int value: 'x'"),
    ],
)
def test_gradflow_bad_input_is_one_line_exit_2(runs, tmp_path, capsys, args, fragment, cli):
    args = [a.replace("{tmp}", str(tmp_path)).replace("{mlp}", str(runs["mlp"])) for a in args]
    out = [] if "--out" in args else ["--out", str(tmp_path / "flow.png")]
    small = (
        ["--batch", "2", "--steps", "3"] if "--steps" not in args and "--batch" not in args else []
    )
    assert cli(["gradflow", *small, *args, *out, "--clip-seeds", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0], err
    assert list(tmp_path.iterdir()) == []

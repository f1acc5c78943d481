"""The command line, run as a user runs it."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
TINY = [  # enough training that the policy reads its observations (noise changes its returns)
    "--total-timesteps", "2048", "--num-envs", "16", "--num-steps", "16",
    "--eval-interval", "1024", "--eval-episodes", "4",
]  # fmt: skip


def run(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / script), *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("cli") / "run"
    result = run("train.py", *TINY, "--run-dir", str(run_dir))
    assert result.returncode == 0, result.stderr
    assert "Trained lstm on PositionOnlyCartPole-v1" in result.stdout
    return run_dir


def test_train_writes_a_complete_run_directory(trained_run):
    names = {p.name for p in trained_run.iterdir()}
    assert {
        "config.json",
        "final.pt",
        "best.pt",
        "summary.json",
        "learning_curve.png",
        "tb",
    } <= names
    summary = json.loads((trained_run / "summary.json").read_text())
    for key in ("env_steps", "train_seconds", "solved_at_steps", "solved_at_seconds"):
        assert key in summary
    assert summary["env_steps"] == 2048
    assert 0 < summary["final_eval_mean"] <= 500 and summary["final_eval_std"] >= 0
    assert [e["env_steps"] for e in summary["evaluations"]] == [1024, 2048]
    config = json.loads((trained_run / "config.json").read_text())
    assert config["ppo"]["num_envs"] == 16 and config["agent"]["agent"] == "lstm"
    assert list((trained_run / "tb").glob("events.out.tfevents.*"))


def test_evaluate_prints_json(trained_run):
    result = run("evaluate.py", str(trained_run), "--episodes", "5", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["episodes"] == 5
    assert 0 < report["mean_return"] <= 500 and report["std_return"] >= 0


def test_evaluate_human_readable_and_best_checkpoint(trained_run):
    result = run("evaluate.py", str(trained_run), "--episodes", "3", "--checkpoint", "best")
    assert result.returncode == 0, result.stderr
    header, changed, columns, values = result.stdout.strip().splitlines()
    assert "best.pt): 3 episodes, deterministic actions, seed 10000" in header
    assert changed == "changed: nothing (as trained)"
    assert columns.split() == ["return", "mean", "+/-", "std", "min", "max", "mean", "length"]
    mean, _, std, low, high, length = values.split()
    assert float(low) <= float(mean) <= float(high) and float(std) >= 0 and float(length) > 0


def test_evaluate_robustness_options_change_the_episodes_and_say_so(trained_run):
    def report(*args: str) -> dict:
        result = run("evaluate.py", str(trained_run), "--episodes", "6", "--json", *args)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    plain = report()
    short = report("--max-episode-steps", "5")
    assert short["max_episode_steps"] == 5 and short["max_return"] <= 5 < plain["max_return"]
    noisy = report("--obs-noise", "0.5")
    assert noisy["obs_noise"] == 0.5 and plain["obs_noise"] == 0.0
    assert noisy["mean_return"] != plain["mean_return"]  # a different observation stream
    assert report("--obs-noise", "0.5") == noisy  # ... and a reproducible one
    text = run("evaluate.py", str(trained_run), "--episodes", "2", "--obs-noise", "0.1",
               "--max-episode-steps", "9").stdout  # fmt: skip
    assert "changed: Gaussian observation noise, sigma 0.1; episode limit 9 steps" in text


def test_console_script_and_mlp_agent(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "rlrnn.cli", "train", *TINY, "--agent", "mlp", "--quiet",
         "--run-dir", str(tmp_path / "mlp")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "mlp" / "summary.json").read_text())["agent"] == "mlp"


def test_help_lists_every_config_field():
    from dataclasses import fields

    from rlrnn.learning.config import AgentConfig, PPOConfig, RunConfig

    text = run("train.py", "--help").stdout
    for cls in (AgentConfig, PPOConfig, RunConfig):
        for f in fields(cls):
            if f.name not in ("agent", "ppo") or cls is AgentConfig:
                assert "--" + f.name.replace("_", "-") in text, f.name


@pytest.mark.parametrize(
    "command", ["train", "evaluate", "compare", "tune", "agents", "probe", "gradflow", "export"]
)
def test_help_shows_each_default_once(command, capsys):
    from rlrnn.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert "(default: None)" not in text
    options = text.split(" --")
    assert all(o.count("(default:") <= 1 for o in options), [
        o for o in options if o.count("(default:") > 1
    ]
    if command == "compare":
        assert "(default: 3; --full: 5)" in text and "(default: reports/compare)" in text


def assert_usage_error(result: subprocess.CompletedProcess, fragment: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert fragment in lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--env", "NoSuchEnv-v0"], "unknown env id 'NoSuchEnv-v0'"),
        (["--env", "Blackjack-v1"], "has a Tuple observation space; rlrnn needs Box"),
        (["--agent", "transformer"], "invalid choice: 'transformer'"),
        (["--num-envs", "6", "--num-minibatches", "4"], "must divide num_envs"),
        (["--num-steps", "0"], "num_steps must be >= 1"),
        (["--learning-rate", "fast"], "invalid float value: 'fast'"),
        (["--backend", "torch", "--agent", "gru"], "backend 'torch' is for the lstm agents"),
        (["--agent", "framestack", "--frame-stack", "0"], "frame_stack (k) must be >= 1, got 0"),
        (["--agent", "sb3-ppo", "--backend", "torch"], "backend 'torch' is for the lstm agents"),
    ],
)
def test_train_bad_input_is_one_line_and_exit_2(tmp_path, args, fragment):
    result = run("train.py", *args, "--run-dir", str(tmp_path / "run"))
    assert_usage_error(result, fragment)
    assert not (tmp_path / "run").exists()


def test_train_refuses_unwritable_or_used_run_directory(tmp_path, trained_run):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert_usage_error(run("train.py", "--run-dir", str(blocker / "run")), "cannot write run dir")
    assert_usage_error(run("train.py", "--run-dir", str(trained_run)), "already holds a run")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_request_without_cuda_is_a_clear_error(tmp_path):
    result = run("train.py", "--device", "cuda", "--run-dir", str(tmp_path / "run"))
    assert_usage_error(result, "CUDA is not available")


def test_evaluate_bad_input_is_one_line_and_exit_2(tmp_path, trained_run):
    assert_usage_error(run("evaluate.py", str(tmp_path / "nothing")), "checkpoint not found")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes((trained_run / "final.pt").read_bytes()[:500])
    assert_usage_error(run("evaluate.py", str(corrupt)), "damaged or not an rlrnn checkpoint")
    assert_usage_error(run("evaluate.py", str(trained_run), "--episodes", "0"), "--episodes")
    bad_noise = run("evaluate.py", str(trained_run), "--obs-noise", "-0.1")
    assert_usage_error(bad_noise, "--obs-noise must be >= 0, got -0.1")
    bad_limit = run("evaluate.py", str(trained_run), "--max-episode-steps", "0")
    assert_usage_error(bad_limit, "--max-episode-steps must be >= 1, got 0")

"""Runs that survive: resume, Ctrl-C / SIGTERM, kill -9, divergence guards, checkpoint checks."""

import dataclasses
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from rlrnn.checkpoint import FORMAT_VERSION, load_checkpoint, read_checkpoint
from rlrnn.cli import main
from rlrnn.config import AgentConfig, PPOConfig, RunConfig
from rlrnn.errors import TrainingDiverged, TrainingInterrupted, UsageError
from rlrnn.ppo import RecurrentPPO
from rlrnn.training import train

ROOT = Path(__file__).resolve().parents[1]
SMALL = RunConfig(
    seed=7,
    ppo=PPOConfig(total_timesteps=4096, num_envs=16, num_steps=16),
    eval_interval=1024,
    eval_episodes=3,
    checkpoint_interval=512,
)
SMALL_ARGS = [
    "--seed", "7", "--num-envs", "16", "--num-steps", "16", "--eval-interval", "1024",
    "--eval-episodes", "3", "--checkpoint-interval", "256",
]  # fmt: skip


def weights(path: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(path)["model"]


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


def stop_at(monkeypatch, env_steps: int, signum: int = signal.SIGINT) -> None:
    """Send ``signum`` to this process once training reaches ``env_steps`` (a real signal)."""
    original = RecurrentPPO.iterate

    def iterate(self):
        out = original(self)
        if self.env_steps == env_steps:
            os.kill(os.getpid(), signum)
        return out

    monkeypatch.setattr(RecurrentPPO, "iterate", iterate)


KL_ADAPTIVE = dataclasses.replace(SMALL, ppo=dataclasses.replace(SMALL.ppo, desired_kl=0.002))


@pytest.mark.parametrize("config", [SMALL, KL_ADAPTIVE], ids=["linear-lr", "kl-adaptive-lr"])
def test_interrupt_and_resume_gives_the_same_weights_as_a_straight_run(
    tmp_path, monkeypatch, config
):
    straight = train(config, tmp_path / "straight", show_progress=False)
    stop_at(monkeypatch, 2048)
    with pytest.raises(TrainingInterrupted) as stopped:
        train(config, tmp_path / "resumed", show_progress=False)
    assert stopped.value.exit_code == 130
    assert "Resume: python train.py --resume" in str(stopped.value)
    summary = json.loads((tmp_path / "resumed" / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["env_steps"] == 2048
    assert not (tmp_path / "resumed" / "final.pt").exists()
    monkeypatch.undo()

    resumed = train(config, tmp_path / "resumed", show_progress=False, resume=True)
    assert resumed["status"] == "finished" and resumed["env_steps"] == 4096
    assert_same_weights(tmp_path / "straight" / "final.pt", tmp_path / "resumed" / "final.pt")
    assert_same_weights(tmp_path / "straight" / "best.pt", tmp_path / "resumed" / "best.pt")
    assert resumed["evaluations"] == [
        {**e, "train_seconds": r["train_seconds"]}
        for e, r in zip(straight["evaluations"], resumed["evaluations"], strict=True)
    ]  # the same evaluations, before and after the stop
    events = list((tmp_path / "resumed" / "tb").glob("events.out.tfevents.*"))
    assert len(events) == 2  # the resumed run appends its own event file


def run_script(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        **kwargs,
    )


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_a_real_training_process_cleanly_and_it_resumes(tmp_path, signum):
    run_dir = tmp_path / "run"
    process = run_script(*SMALL_ARGS, "--total-timesteps", "200000", "--run-dir", str(run_dir))
    wait_for(run_dir / "last.pt", process)
    process.send_signal(signum)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signum
    assert "Traceback" not in err
    assert f"stopped by {signal.Signals(signum).name}" in err
    assert f"Resume: python train.py --resume {run_dir}" in err
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted" and 0 < summary["env_steps"] < 200000
    _, _, extra = load_checkpoint(run_dir / "last.pt")
    assert extra["env_steps"] == summary["env_steps"] and extra["status"] == "interrupted"

    resumed = run_script("--resume", str(run_dir), "--total-timesteps", "8192", "--quiet")
    _, err = resumed.communicate(timeout=120)
    if summary["env_steps"] >= 8192:  # the machine was fast: nothing left to do
        assert resumed.returncode == 2 and "pass a larger --total-timesteps" in err
        return
    assert resumed.returncode == 0, err
    final = json.loads((run_dir / "summary.json").read_text())
    assert final["status"] == "finished" and final["env_steps"] == 8192


def test_kill_9_at_random_moments_leaves_a_loadable_run(tmp_path):
    run_dir = tmp_path / "run"
    rng = random.Random(0)
    for attempt in range(5):
        args = ["--resume", str(run_dir)] if (run_dir / "last.pt").exists() else None
        if args is None:
            if run_dir.exists():  # killed before its first checkpoint: start again
                for p in sorted(run_dir.rglob("*"), reverse=True):
                    p.unlink() if p.is_file() else p.rmdir()
            args = [*SMALL_ARGS, "--run-dir", str(run_dir)]
        process = run_script(*args, "--total-timesteps", "400000", "--quiet")
        wait_for(run_dir / "config.json", process)  # training has begun (or resumed) ...
        time.sleep(rng.uniform(0.0, 1.5))  # ... somewhere in it, possibly mid-write
        process.kill()  # SIGKILL: no handler runs
        process.communicate()
        assert process.returncode == -signal.SIGKILL, attempt
        for checkpoint in run_dir.glob("*.pt"):  # every checkpoint left behind loads
            _, config, _ = load_checkpoint(checkpoint)
            assert config.seed == 7
        for name in ("config.json", "summary.json"):
            if (run_dir / name).exists():
                json.loads((run_dir / name).read_text())
    # The last good checkpoint resumes: run it to a finish a little further on.
    done = load_checkpoint(run_dir / "last.pt")[2]["env_steps"]
    finish = run_script("--resume", str(run_dir), "--total-timesteps", str(done + 1024), "--quiet")
    _, err = finish.communicate(timeout=120)
    assert finish.returncode == 0, err
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "finished"
    assert not list(run_dir.glob(".*.tmp*"))  # leftovers of the killed writes are cleared
    load_checkpoint(run_dir / "final.pt")


def poison(monkeypatch, iterations: set[int]) -> None:
    """Make the update at the given iterations produce NaN weights, as a blow-up would."""
    original = RecurrentPPO.update

    def update(self, rollout, progress):
        stats = original(self, rollout, progress)
        if self.iteration in iterations:
            with torch.no_grad():
                next(self.agent.parameters()).fill_(float("nan"))
        return stats

    monkeypatch.setattr(RecurrentPPO, "update", update)


def test_a_non_finite_update_is_rolled_back_and_training_goes_on(tmp_path, monkeypatch):
    poison(monkeypatch, {0, 3, 4})  # the very first update too, before Adam has any state
    summary = train(SMALL, tmp_path / "run", show_progress=False)
    assert summary["status"] == "finished" and summary["divergence_restores"] == 3
    agent, _, _ = load_checkpoint(tmp_path / "run" / "final.pt")
    assert all(torch.isfinite(p).all() for p in agent.parameters())


def test_repeated_divergence_stops_the_run_naming_step_and_cause(tmp_path, monkeypatch, capsys):
    poison(monkeypatch, set(range(5, 100)))
    config = RunConfig(
        seed=7, ppo=PPOConfig(total_timesteps=4096, num_envs=16, num_steps=16, max_grad_norm=0)
    )
    with pytest.raises(TrainingDiverged) as diverged:
        train(config, tmp_path / "run", show_progress=False)
    message = str(diverged.value)
    assert "training diverged at env step 2,048" in message  # iterations 5, 6, 7 failed
    assert "learning rate (0.004)" in message and "--max-grad-norm 0" in message
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "diverged"
    agent, _, _ = load_checkpoint(tmp_path / "run" / "last.pt")  # the last good weights
    assert all(torch.isfinite(p).all() for p in agent.parameters())
    # Through the CLI: one line and exit code 1.
    code = main(["train", "--run-dir", str(tmp_path / "cli"), "--seed", "7", "--quiet"])
    assert code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("rlrnn train: error: training diverged at env step") and "\n" not in err


def test_checkpoint_mismatch_says_what_differs(tmp_path):
    run = tmp_path / "run"
    train(RunConfig(ppo=PPOConfig(total_timesteps=1024), eval_interval=0), run, False)
    payload = torch.load(run / "final.pt", weights_only=True)
    config = json.loads(payload["config"])
    config["agent"]["hidden_size"] = 16
    payload["config"] = json.dumps(config)
    torch.save(payload, tmp_path / "edited.pt")
    with pytest.raises(UsageError, match=r"does not match its agent lstm \(hidden_size 16") as e:
        load_checkpoint(tmp_path / "edited.pt")
    assert "actor_core.weights.0 is (128, 34) in the file, (64, 18) in the agent" in str(e.value)
    config["agent"]["agent"] = "gru"
    config["agent"]["hidden_size"] = 32
    payload["config"] = json.dumps(config)
    torch.save(payload, tmp_path / "edited.pt")
    with pytest.raises(UsageError, match=r"missing actor_core\.weights_x\.0") as e:
        load_checkpoint(tmp_path / "edited.pt")
    assert "unexpected actor_core.weights.0" in str(e.value)
    payload["version"] = FORMAT_VERSION + 1
    torch.save(payload, tmp_path / "newer.pt")
    with pytest.raises(UsageError, match="written by a newer rlrnn"):
        load_checkpoint(tmp_path / "newer.pt")


def test_resume_refuses_a_changed_run(tmp_path, capsys):
    run = tmp_path / "run"
    train(SMALL, run, show_progress=False)
    assert main(["train", "--resume", str(run), "--hidden-size", "8"]) == 2
    err = capsys.readouterr().err
    assert "changes agent.hidden_size (32 -> 8); only ppo.total_timesteps" in err
    assert main(["train", "--resume", str(run)]) == 2
    assert "already has 4,096 of its 4,096 env steps" in capsys.readouterr().err
    config = RunConfig.from_dict(json.loads((run / "config.json").read_text()))
    assert config == SMALL
    assert AgentConfig() == config.agent

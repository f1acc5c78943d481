"""Runs that survive: resume, Ctrl-C / SIGTERM, kill -9, divergence guards, checkpoint checks."""

import dataclasses
import json
import os
import random
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from processes import children_of, start_training, still_running, wait_for, wait_for_children

from rlrnn.cli import describe_error, main
from rlrnn.errors import TrainingDiverged, TrainingInterrupted, UsageError
from rlrnn.learning.config import AgentConfig, PPOConfig, RunConfig
from rlrnn.learning.ppo import PPOLearner
from rlrnn.runs.checkpoint import FORMAT_VERSION, read_checkpoint
from rlrnn.runs.loading import load_checkpoint
from rlrnn.runs.training import train

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
    original = PPOLearner.iterate

    def iterate(self):
        out = original(self)
        if self.env_steps == env_steps:
            os.kill(os.getpid(), signum)
        return out

    monkeypatch.setattr(PPOLearner, "iterate", iterate)


KL_ADAPTIVE = dataclasses.replace(SMALL, ppo=dataclasses.replace(SMALL.ppo, desired_kl=0.002))
CHUNKED = dataclasses.replace(SMALL, ppo=dataclasses.replace(SMALL.ppo, bptt_len=4))


@pytest.mark.parametrize(
    "config", [SMALL, KL_ADAPTIVE, CHUNKED], ids=["linear-lr", "kl-adaptive-lr", "bptt-len"]
)
def test_interrupt_and_resume_gives_the_same_weights_as_a_straight_run(
    tmp_path, monkeypatch, config
):
    straight = train(config, tmp_path / "straight", show_progress=False)
    stop_at(monkeypatch, 2048)
    with pytest.raises(TrainingInterrupted) as stopped:
        train(config, tmp_path / "resumed", show_progress=False)
    assert stopped.value.exit_code == 130
    assert stopped.value.run_dir == str(tmp_path / "resumed")  # the library names no command
    assert f"saved {tmp_path / 'resumed' / 'last.pt'}" in str(stopped.value)
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


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_a_real_training_process_cleanly_and_it_resumes(tmp_path, signum):
    run_dir = tmp_path / "run"
    process = start_training(*SMALL_ARGS, "--total-timesteps", "200000", "--run-dir", str(run_dir))
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

    resumed = start_training("--resume", str(run_dir), "--total-timesteps", "8192", "--quiet")
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
        process = start_training(*args, "--total-timesteps", "400000", "--quiet")
        wait_for(run_dir / "config.json", process)  # training has begun (or resumed) ...
        time.sleep(rng.uniform(0.0, 1.5))  # ... somewhere in it, possibly mid-write
        process.kill()  # SIGKILL: no handler runs
        process.communicate()
        assert process.returncode == -signal.SIGKILL, attempt
        # every checkpoint left behind loads (a killed write's hidden .tmp file is no checkpoint)
        for checkpoint in run_dir.glob("[!.]*.pt"):
            _, config, _ = load_checkpoint(checkpoint)
            assert config.seed == 7
        for name in ("config.json", "summary.json"):
            if (run_dir / name).exists():
                json.loads((run_dir / name).read_text())
    # The last good checkpoint resumes: run it to a finish a little further on.
    done = load_checkpoint(run_dir / "last.pt")[2]["env_steps"]
    finish = start_training(
        "--resume", str(run_dir), "--total-timesteps", str(done + 1024), "--quiet"
    )
    _, err = finish.communicate(timeout=120)
    assert finish.returncode == 0, err
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "finished"
    assert not list(run_dir.glob(".*.tmp*"))  # leftovers of the killed writes are cleared
    load_checkpoint(run_dir / "final.pt")


def poison(monkeypatch, iterations: set[int]) -> None:
    """Make the update at the given iterations produce NaN weights, as a blow-up would."""
    original = PPOLearner.update

    def update(self, rollout, progress):
        stats = original(self, rollout, progress)
        if self.iteration in iterations:
            with torch.no_grad():
                next(self.agent.parameters()).fill_(float("nan"))
        return stats

    monkeypatch.setattr(PPOLearner, "update", update)


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
    assert "learning rate (0.004)" in message and "max_grad_norm 0" in message
    assert "--max-grad-norm 0" in describe_error(diverged.value)  # as the command line says it
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


# ---------------------------------------------------------------- issue 9: signals, disks, envs


def start_compare(out: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "rlrnn.cli", "compare", "--out", str(out), "--quiet", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        start_new_session=True,  # its own process group, as a shell job is
    )


def test_ctrl_c_while_compare_workers_start_is_one_line_and_leaves_no_process(tmp_path):
    compare = start_compare(tmp_path / "report", "--agents", "mlp", "lstm", "--workers", "2")
    workers = wait_for_children(compare, 2)  # the workers exist and are still importing torch
    os.killpg(compare.pid, signal.SIGINT)  # what a Ctrl-C in the terminal does
    _, err = compare.communicate(timeout=180)
    assert compare.returncode == 130, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    assert lines[0].startswith("rlrnn compare: stopped by SIGINT: 0 of 6 runs finished")
    assert "no report written. Resume: rlrnn compare --out" in lines[0]
    assert still_running(workers) == []


def test_sigterm_to_compare_stops_its_training_workers_cleanly(tmp_path):
    from rlrnn.tools.compare.compare import next_step, plan_runs

    out = tmp_path / "report"
    args = ["--agents", "lstm", "--seeds", "2", "--workers", "2", "--total-timesteps", "400000"]
    compare = start_compare(out, *args)
    deadline = time.monotonic() + 180
    while not list(out.glob("runs/*/last.pt")):  # a worker is training
        assert compare.poll() is None and time.monotonic() < deadline, compare.communicate()
        time.sleep(0.05)
    workers = children_of(compare.pid)
    compare.send_signal(signal.SIGTERM)  # to the parent alone, as `kill` or `timeout` send it
    _, err = compare.communicate(timeout=180)
    assert compare.returncode == 143, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    assert lines[0].startswith("rlrnn compare: stopped by SIGTERM: 0 of 2 runs finished (none)")
    assert "lstm s0" in lines[0] and "(rlrnn's runs keep their last.pt)" in lines[0]
    assert f"Resume: rlrnn compare --out {out} --quiet {' '.join(args)}" in lines[0]
    assert still_running(workers) == []
    assert not (out / "results.csv").exists()
    overrides = {"device": "cpu", "ppo.total_timesteps": 400000}
    for spec in plan_runs(["lstm"], [0, 1], "PositionOnlyCartPole-v1", out, overrides):
        if (spec.run_dir / "last.pt").exists():  # stopped cleanly: the same command resumes it
            summary = json.loads((spec.run_dir / "summary.json").read_text())
            assert summary["status"] == "interrupted", summary["status"]
            assert next_step(spec) == "resume"
            assert not (spec.run_dir / ".rlrnn-lock").exists()


def test_sigterm_stops_a_recording_at_once_and_keeps_the_existing_files(tmp_path, tiny_run):
    gif, mp4 = tmp_path / "old.gif", tmp_path / "old.mp4"
    gif.write_bytes(b"an older GIF")
    mp4.write_bytes(b"an older MP4")
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "evaluate.py"), str(tiny_run("mlp")), "--episodes", "1",
         "--gif", str(gif), "--video", str(mp4), "--render-episodes", "60",
         "--render-max-steps", "100"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".old.mp4.*.tmp.mp4")):  # both recordings are under way
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.05)
    time.sleep(0.5)
    helpers = children_of(process.pid)  # ffmpeg
    process.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    _, err = process.communicate(timeout=60)
    assert time.monotonic() - sent < 15  # not the minute or so 60 episodes take
    assert process.returncode == 143, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    assert "stopped by SIGTERM while rendering" in lines[0] and "not written" in lines[0]
    assert gif.read_bytes() == b"an older GIF" and mp4.read_bytes() == b"an older MP4"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.gif", "old.mp4"]
    assert still_running(helpers) == []


@pytest.fixture
def small_disk(tmp_path, monkeypatch):
    """``(folder, mounted, fill)``: a folder on a 320 KB tmpfs where this machine lets us mount
    one; elsewhere a folder where, after three files, every file rlrnn writes there fails with
    ENOSPC (in this process). ``fill()`` leaves it (almost) no room at once."""
    import errno
    import shutil

    from rlrnn import files

    folder = tmp_path / "disk"
    folder.mkdir()
    mounted = (
        os.geteuid() == 0
        and subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=320k", "tmpfs", str(folder)], capture_output=True
        ).returncode
        == 0
    )
    calls = {"n": 0}
    if not mounted:
        replace = files.os.replace

        def full(source: str, target: str) -> None:  # the last step of every atomic write
            if Path(target).is_relative_to(folder):
                calls["n"] += 1
                if calls["n"] > 3:
                    raise OSError(errno.ENOSPC, "No space left on device")
            replace(source, target)

        monkeypatch.setattr(files.os, "replace", full)

    def fill() -> None:
        if mounted:
            (folder / ".filler").write_bytes(bytes(shutil.disk_usage(folder).free - 20_000))
        calls["n"] = 3

    yield folder, mounted, fill
    if mounted:
        subprocess.run(["umount", str(folder)], check=True)


def test_a_full_disk_during_training_is_one_line_and_keeps_what_was_written(small_disk, capsys):
    disk, mounted, _ = small_disk
    run_dir = disk / "run"
    args = [*SMALL_ARGS, "--total-timesteps", "200000", "--run-dir", str(run_dir), "--quiet"]
    if mounted:  # a real process on a real full disk
        result = subprocess.run(
            [sys.executable, str(ROOT / "train.py"), *args],
            capture_output=True, text=True, cwd=ROOT, timeout=300,
        )  # fmt: skip
        code, err = result.returncode, result.stderr
    else:
        code, err = main(["train", *args]), capsys.readouterr().err
    assert code == 74, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    assert "No space left on device" in lines[0] and f"{run_dir} keeps the files" in lines[0]
    assert not list(run_dir.glob(".*.tmp*"))  # no half-written file
    for checkpoint in run_dir.glob("*.pt"):  # and every file left loads
        load_checkpoint(checkpoint)
    if (run_dir / "last.pt").exists():
        assert f"then resume: python train.py --resume {run_dir}" in lines[0]


def test_a_full_disk_during_a_gif_keeps_the_old_file(small_disk, tiny_run, capsys):
    disk, _, fill = small_disk
    gif = disk / "balance.gif"
    gif.write_bytes(b"the old GIF")
    run = tiny_run("mlp")
    fill()
    args = ["evaluate", str(run), "--episodes", "1", "--gif", str(gif)]
    assert main([*args, "--render-max-steps", "60"]) == 74
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"cannot write {gif}: No space left on device" in err[0]
    assert gif.read_bytes() == b"the old GIF"
    assert sorted(p.name for p in disk.iterdir()) in (["balance.gif"], [".filler", "balance.gif"])


@pytest.mark.parametrize(
    ("env_id", "what"), [("NanObs-v0", "observations"), ("InfReward-v0", "rewards")]
)
@pytest.mark.filterwarnings("ignore:.*(inf|NaN) value")  # gymnasium's env checker notices too
def test_divergence_caused_by_the_env_blames_the_env(tmp_path, env_id, what):
    sys.path.insert(0, str(Path(__file__).with_name("hostile")))
    try:
        import hostile_envs  # noqa: F401  (registers the misbehaving envs)
    finally:
        sys.path.pop(0)
    config = RunConfig(
        env_id=env_id,
        ppo=PPOConfig(total_timesteps=4096, num_envs=4, num_steps=16),
        eval_interval=0,
    )
    with pytest.raises(TrainingDiverged) as diverged:
        train(config, tmp_path / "run", show_progress=False)
    message = str(diverged.value)
    assert f"after the env produced non-finite {what} (NaN or inf)" in message
    assert "learning rate" not in message


def test_an_env_leaving_its_observation_space_is_one_line_naming_the_env(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).with_name("hostile"))}
    args = ["--env", "spaces_envs:OutOfSpaceObs-v0", "--total-timesteps", "4096", "--quiet"]
    result = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *args, "--run-dir", str(tmp_path / "run")],
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.endswith(
        "error: env 'spaces_envs:OutOfSpaceObs-v0' returned the observation 7, outside its"
        " observation space Discrete(3): the env is at fault"
    )


def test_printed_commands_quote_paths_with_spaces(tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "my runs" / "run 1"
    args = ["train", "--run-dir", str(run_dir), "--total-timesteps", "512", "--eval-interval", "0"]
    assert main([*args, "--num-envs", "16"]) == 0
    quoted = shlex.quote(str(run_dir))
    assert f"Evaluate it: python evaluate.py {quoted} --episodes 100" in capsys.readouterr().out
    stop_at(monkeypatch, 512)
    again = tmp_path / "my runs" / "run 2"
    args = ["train", "--run-dir", str(again), "--total-timesteps", "1024", "--num-envs", "16"]
    assert main([*args, "--eval-interval", "0", "--quiet"]) == 130
    resume = f"Resume: python train.py --resume {shlex.quote(str(again))}"
    assert resume in capsys.readouterr().err

"""Who may write and delete a run folder: one writer at a time (a lock naming its holder), and
nothing deleted that rlrnn cannot prove it made (its marker), never without saying so."""

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from processes import start_training, wait_for

from rlrnn.cli import main
from rlrnn.errors import UsageError
from rlrnn.learning.config import PPOConfig, RunConfig
from rlrnn.runs.folder import LOCK, MARKER, made_by_rlrnn, prepare_run_dir
from rlrnn.runs.lock import RunLock
from rlrnn.runs.training import train
from rlrnn.tools.compare.compare import plan_runs

ROOT = Path(__file__).resolve().parents[1]
SMALL_ARGS = [
    "--seed", "7", "--num-envs", "16", "--num-steps", "16", "--eval-interval", "1024",
    "--eval-episodes", "3", "--checkpoint-interval", "256", "--quiet",
]  # fmt: skip
TINY = RunConfig(ppo=PPOConfig(total_timesteps=512, num_envs=16, num_steps=16), eval_interval=0)


def test_two_trainings_started_together_into_one_run_dir_one_is_refused(tmp_path):
    run_dir = tmp_path / "run"
    args = [*SMALL_ARGS, "--total-timesteps", "4096", "--run-dir", str(run_dir)]
    first, second = start_training(*args), start_training(*args)
    results = [(p.wait(timeout=300), p.communicate()[1]) for p in (first, second)]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    refusal = next(err for code, err in results if code == 2).strip().splitlines()
    assert len(refusal) == 1 and "Traceback" not in refusal[0]
    assert "already holds a run" in refusal[0] or "is in use by process" in refusal[0]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["env_steps"] == 4096
    assert len(list((run_dir / "tb").glob("events.out.tfevents.*"))) == 1  # one writer's logs
    assert not (run_dir / LOCK).exists()


def test_resume_of_a_live_run_is_refused_naming_its_process(tmp_path, capsys):
    run_dir = tmp_path / "run"
    live = start_training(*SMALL_ARGS, "--total-timesteps", "400000", "--run-dir", str(run_dir))
    try:
        wait_for(run_dir / "last.pt", live)
        # A resume valid but for the lock: past any step count the live run can save meanwhile
        # (it keeps writing last.pt; a total below its newest count is refused before the lock).
        resume = ["train", "--resume", str(run_dir), "--total-timesteps", str(400_000 + 512)]
        code = main([*resume, "--quiet"])
        lines = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(lines) == 1, lines
        assert f"is in use by process {live.pid} on {socket.gethostname()}" in lines[0]
        assert "one process writes a run at a time" in lines[0]
    finally:
        live.send_signal(signal.SIGINT)
        _, err = live.communicate(timeout=120)
    assert live.returncode == 130, err
    assert not (run_dir / LOCK).exists()  # released on the way out
    done = json.loads((run_dir / "summary.json").read_text())["env_steps"]
    resume = ["train", "--resume", str(run_dir), "--total-timesteps", str(done + 512), "--quiet"]
    assert main(resume) == 0, capsys.readouterr().err
    assert not (run_dir / LOCK).exists()


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_stale_lock_is_taken_over_and_every_way_out_releases_the_lock(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    stale = {"pid": dead_pid(), "host": socket.gethostname(), "time": "yesterday"}
    (run_dir / LOCK).write_text(json.dumps(stale))
    train(TINY, run_dir, show_progress=False)  # the dead process's lock does not stop it
    assert not (run_dir / LOCK).exists()
    with RunLock(run_dir), RunLock(run_dir):  # re-entrant within one process
        assert json.loads((run_dir / LOCK).read_text())["pid"] == os.getpid()
    assert not (run_dir / LOCK).exists()
    with pytest.raises(ValueError), RunLock(run_dir):
        raise ValueError("an error inside")
    assert not (run_dir / LOCK).exists()


def test_a_second_process_is_refused_while_the_lock_is_held(tmp_path):
    hold = (
        "from rlrnn.runs.lock import RunLock;"
        f" RunLock({str(tmp_path)!r}).__enter__(); print('held')"
    )

    def take_lock_elsewhere() -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-c", hold],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )

    with RunLock(tmp_path):
        other = take_lock_elsewhere()
    assert other.returncode == 1 and "held" not in other.stdout
    assert f"is in use by process {os.getpid()}" in other.stderr
    # Once released, the other process takes it.
    again = take_lock_elsewhere()
    assert again.returncode == 0 and "held" in again.stdout


def test_rlrnn_marks_the_folders_it_makes_and_only_those(tmp_path):
    assert made_by_rlrnn(prepare_run_dir(tmp_path / "new"))
    train(TINY, tmp_path / "made-by-train", show_progress=False)
    assert made_by_rlrnn(tmp_path / "made-by-train")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("a user's folder")
    train(TINY, mine, show_progress=False)
    assert not made_by_rlrnn(mine) and (mine / "notes.txt").read_text() == "a user's folder"


def test_compare_clears_only_what_rlrnn_wrote_and_says_so(tmp_path, capsys):
    out = tmp_path / "report"
    args = ["--agents", "mlp", "--seeds", "1", "--total-timesteps", "1024", "--workers", "1"]
    args += ["--episodes", "3", "--out", str(out), "--quiet"]
    overrides = {"device": "cpu", "ppo.total_timesteps": 1024}
    spec = plan_runs(["mlp"], [0], "PositionOnlyCartPole-v1", out, overrides)[0]
    run = prepare_run_dir(spec.run_dir)  # a run that stopped before its first checkpoint
    (run / "config.json").write_text(spec.config.to_json())
    (run / "tb").mkdir()
    (run / "tb" / "events.out.tfevents.1.vm.1.0").write_text("its logs")
    (run / ".summary.json.abcd1234.tmp.json").write_text("a killed write")
    (run / "notes.txt").write_text("the user's")
    (run / "tb" / "mine.txt").write_text("the user's too")
    assert main(["compare", *args]) == 0
    err = capsys.readouterr().err
    assert f"cleared {run} (it stopped before its first checkpoint): removed 3 files" in err
    assert (run / "notes.txt").read_text() == "the user's"
    assert (run / "tb" / "mine.txt").read_text() == "the user's too"
    assert json.loads((run / "summary.json").read_text())["status"] == "finished"
    assert (run / MARKER).exists() and not (run / LOCK).exists()


def test_clear_refuses_a_folder_without_the_marker(tmp_path):
    from rlrnn.runs.folder import clear_run

    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(UsageError, match="cannot tell that it made that folder"):
        clear_run(tmp_path)
    assert (tmp_path / "config.json").exists()

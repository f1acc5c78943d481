"""A run folder is data: a symbolic link (or a hard link, or a FIFO) put inside it never makes
rlrnn write over, truncate or delete a file outside it, on any path that writes or removes a
run's files (the lock, the marker, the write probe, checkpoints, config and summary, ``tb/``,
compare's clearing, resume's leftovers). A refused case is one line, exit code 2, and the file
the link points to is untouched. And a run refused before it wrote anything leaves nothing."""

import json
import os
import shutil
from pathlib import Path

import pytest

from rlrnn.cli import main
from rlrnn.errors import UsageError
from rlrnn.files import atomic_write_text, make_writable_dir
from rlrnn.learning.config import PPOConfig, RunConfig
from rlrnn.runs.folder import (
    LOCK,
    MARKER,
    clear_run,
    made_by_rlrnn,
    prepare_run_dir,
    rlrnn_files,
    temp_files,
)
from rlrnn.runs.lock import RunLock, writing_run
from rlrnn.runs.training import train
from rlrnn.tools.compare.compare import plan_runs, run_one

TINY = RunConfig(ppo=PPOConfig(total_timesteps=512, num_envs=16, num_steps=16), eval_interval=0)
MORE = ["--total-timesteps", "2560", "--quiet"]  # the tiny run has 2,048 steps: a resume goes on


def state(root: Path) -> dict[str, tuple]:
    """Every entry under ``root`` (links not followed): kind, size, modification time, bytes."""
    found = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            found[str(path.relative_to(root))] = ("link", os.readlink(path))
        elif path.is_file():
            st = path.stat()
            found[str(path.relative_to(root))] = ("file", st.st_size, st.st_mtime_ns, st.st_ino)
        else:
            found[str(path.relative_to(root))] = ("folder",)
    return found


def one_error_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in lines[0], lines
    assert "error:" in lines[0]
    return lines[0]


@pytest.fixture
def run(tiny_run, tmp_path) -> Path:
    """A copy of a finished run, its last.pt resumable; its files' victims go in ``outside``."""
    (tmp_path / "outside").mkdir()
    return Path(shutil.copytree(tiny_run("lstm"), tmp_path / "run"))


def victim(run: Path, text: str = "the user's file\n") -> Path:
    path = run.parent / "outside" / "victim.txt"
    path.write_text(text)
    return path


# ---------------------------------------------------------------- the lock


@pytest.mark.parametrize("kind", ["symlink", "hardlink", "fifo"])
def test_a_lock_that_is_a_link_or_a_fifo_is_refused_and_its_target_untouched(run, kind, capsys):
    target = victim(run)
    lock = run / LOCK
    if kind == "symlink":
        lock.symlink_to(target)
    elif kind == "hardlink":
        os.link(target, lock)
    else:
        os.mkfifo(lock)
    before, outside = state(run), state(run.parent / "outside")
    assert main(["train", "--resume", str(run), *MORE]) == 2  # once opened O_CREAT, followed
    line = one_error_line(capsys)
    assert str(lock) in line
    assert {"symlink": "is a symbolic link", "hardlink": "is a hard link", "fifo": "not a plain"}[
        kind
    ] in line
    assert target.read_text() == "the user's file\n"
    assert state(run) == before and state(run.parent / "outside") == outside
    with pytest.raises(UsageError), RunLock(run):
        pass
    assert target.read_text() == "the user's file\n"


def test_a_dangling_lock_link_creates_nothing_where_it_points(run, capsys):
    lock = run / LOCK
    lock.symlink_to(run.parent / "outside" / "made-by-rlrnn.txt")
    assert main(["train", "--resume", str(run), *MORE]) == 2
    assert "is a symbolic link" in one_error_line(capsys)
    assert list((run.parent / "outside").iterdir()) == []


# ---------------------------------------------------------------- the write probe


def test_a_write_probe_link_is_never_written_and_the_resume_goes_on(run, capsys):
    target = victim(run)
    (run / ".write-test").symlink_to(target)
    make_writable_dir(run, "run directory")  # checked with a file of its own, not that name
    assert main(["train", "--resume", str(run), *MORE]) == 0, capsys.readouterr().err
    assert target.read_text() == "the user's file\n"  # was truncated to 0 bytes
    assert (run / ".write-test").is_symlink()
    assert json.loads((run / "summary.json").read_text())["env_steps"] == 2560
    assert not [p for p in run.iterdir() if p.name.startswith(".write-test.")]


# ------------------------------------------ the run's own files, the marker and tb/


def linked(run: Path, name: str) -> Path:
    """Move ``run/name`` out of the folder and leave a link to it in its place."""
    place = run / name
    outside = run.parent / "outside" / name.replace("/", "_")
    if not place.exists():  # a folder SB3 would write (tb/sb3_1/), with logs of its own
        outside.mkdir()
        (outside / "events.out.tfevents.1.host.1.0").write_text("someone's logs")
    else:
        shutil.move(place, outside)
    place.symlink_to(outside, target_is_directory=outside.is_dir())
    return outside


NAMES = [MARKER, "config.json", "summary.json", "last.pt", "best.pt", "final.pt"]
NAMES += ["learning_curve.png", "tb", "tb/sb3_1"]


@pytest.mark.parametrize("name", NAMES)
def test_a_link_in_place_of_a_runs_file_is_refused_before_anything_is_written(run, name):
    outside = linked(run, name)
    before, elsewhere = state(run), state(run.parent / "outside")
    saved = json.loads((run / "config.json").read_text())
    config = RunConfig.from_dict({**saved, "ppo": {**saved["ppo"], "total_timesteps": 2560}})
    with pytest.raises(UsageError, match="is a symbolic link, and rlrnn follows no link inside"):
        train(config, run, show_progress=False, resume=True)
    assert state(run) == before  # no lock left, no new event file, nothing replaced
    assert state(run.parent / "outside") == elsewhere  # what the link points to: untouched
    assert outside.exists()


def test_a_link_in_tb_is_never_followed_by_a_new_run_either(tmp_path):
    outside = tmp_path / "their-logs"
    outside.mkdir()
    (outside / "events.out.tfevents.1.host.1.0").write_text("someone's logs")
    run = tmp_path / "run"
    (run / "tb").mkdir(parents=True)
    (run / "tb" / "sb3_1").symlink_to(outside, target_is_directory=True)
    with pytest.raises(UsageError, match=r"tb/sb3_1 is a symbolic link"):
        train(TINY, run, show_progress=False)
    assert [p.name for p in outside.iterdir()] == ["events.out.tfevents.1.host.1.0"]
    assert sorted(p.name for p in run.iterdir()) == ["tb"]  # no marker, no lock


def test_a_marker_that_is_a_link_or_a_fifo_proves_nothing(tmp_path):
    real = tmp_path / "real"
    prepare_run_dir(real)
    linked_marker = tmp_path / "linked"
    linked_marker.mkdir()
    (linked_marker / MARKER).symlink_to(real / MARKER)
    fifo = tmp_path / "fifo"
    fifo.mkdir()
    os.mkfifo(fifo / MARKER)  # reading it would wait forever
    assert made_by_rlrnn(real)
    assert not made_by_rlrnn(linked_marker) and not made_by_rlrnn(fifo)


def test_an_atomic_write_replaces_a_link_and_never_writes_its_target(tmp_path):
    target = tmp_path / "victim.txt"
    target.write_text("the user's file\n")
    link = tmp_path / "summary.json"
    link.symlink_to(target)
    atomic_write_text(link, "{}")
    assert not link.is_symlink() and link.read_text() == "{}"
    umask = os.umask(0)
    os.umask(umask)
    assert link.stat().st_mode & 0o777 == 0o666 & ~umask  # as a file made with open(): readable
    assert target.read_text() == "the user's file\n"


# ---------------------------------------------------------------- removing


def stopped_run(out: Path) -> Path:
    """A compare run that stopped before its first checkpoint: rlrnn clears it before training."""
    overrides = {"device": "cpu", "ppo.total_timesteps": 1024}
    spec = plan_runs(["mlp"], [0], "PositionOnlyCartPole-v1", out, overrides)[0]
    run = prepare_run_dir(spec.run_dir)
    (run / "config.json").write_text(spec.config.to_json())
    (run / "tb").mkdir()
    (run / "tb" / "events.out.tfevents.1.vm.1.0").write_text("its logs")
    return run


COMPARE = ["compare", "--agents", "mlp", "--seeds", "1", "--total-timesteps", "1024"]
COMPARE += ["--episodes", "2", "--workers", "1", "--quiet"]


@pytest.mark.parametrize("name", ["tb", "tb/sb3_1"])
def test_compare_never_clears_through_a_link_in_tb(tmp_path, name, capsys):
    run = stopped_run(tmp_path / "out")
    shutil.rmtree(run / "tb")
    if name == "tb/sb3_1":
        (run / "tb").mkdir()
    outside = tmp_path / "their-logs"
    outside.mkdir()
    (outside / "events.out.tfevents.1.host.1.0").write_text("someone's logs")
    (run / name).symlink_to(outside, target_is_directory=True)
    before = state(tmp_path)
    assert main([*COMPARE, "--out", str(tmp_path / "out")]) == 2
    assert f"{run / name} is a symbolic link" in one_error_line(capsys)
    assert state(tmp_path) == before  # their event file is still there, the run not cleared
    with pytest.raises(UsageError, match="is a symbolic link"):
        clear_run(run)
    assert (outside / "events.out.tfevents.1.host.1.0").read_text() == "someone's logs"


def test_links_named_like_rlrnns_files_are_neither_followed_nor_removed(tmp_path):
    run = stopped_run(tmp_path / "out")
    target = tmp_path / "victim.txt"
    target.write_text("the user's file\n")
    temp = run / ".summary.json.abcd1234.tmp.json"  # a killed write's leftover, by its name
    temp.symlink_to(target)
    (run / "tb" / "events.out.tfevents.2.vm.1.0").symlink_to(target)
    assert temp_files(run) == []  # resume removes these: never a link
    assert all(not p.is_symlink() for p in rlrnn_files(run))
    with pytest.raises(UsageError, match=r"tb/events.out.tfevents.2.vm.1.0 is a symbolic link"):
        clear_run(run)
    (run / "tb" / "events.out.tfevents.2.vm.1.0").unlink()
    assert sorted(clear_run(run)) == ["config.json", "tb/events.out.tfevents.1.vm.1.0"]
    assert temp.is_symlink() and target.read_text() == "the user's file\n"


@pytest.mark.parametrize("linked_part", ["runs", "runs/mlp-s0", "configs"])
def test_compare_refuses_run_folders_reached_through_a_link(tmp_path, linked_part, capsys):
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    (out / linked_part).parent.mkdir(parents=True, exist_ok=True)
    elsewhere.mkdir()
    (out / linked_part).symlink_to(elsewhere, target_is_directory=True)
    assert main([*COMPARE, "--out", str(out)]) == 2
    assert f"{out / linked_part} is a symbolic link" in one_error_line(capsys)
    assert list(elsewhere.iterdir()) == []  # no run folder, marker or lock made there


@pytest.mark.parametrize(
    "linked_part", ["NoisyPositionOnlyCartPoleEasy-v1", "NoisyPositionOnlyCartPoleEasy-v1/configs"]
)
def test_a_suite_refuses_an_env_report_folder_reached_through_a_link(tmp_path, linked_part, capsys):
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    (out / linked_part).parent.mkdir(parents=True, exist_ok=True)
    elsewhere.mkdir()
    (out / linked_part).symlink_to(elsewhere, target_is_directory=True)
    suite = ["compare", "--suite", "memory", "--seeds", "1", "--total-timesteps", "4096"]
    assert main([*suite, "--out", str(out)]) == 2
    assert f"{out / linked_part} is a symbolic link" in one_error_line(capsys)
    assert list(elsewhere.iterdir()) == []


def test_a_run_folder_that_is_itself_a_link_is_the_users_choice(tmp_path):
    (tmp_path / "big-disk" / "run").mkdir(parents=True)
    (tmp_path / "run").symlink_to(tmp_path / "big-disk" / "run", target_is_directory=True)
    train(TINY, tmp_path / "run", show_progress=False)
    assert (tmp_path / "big-disk" / "run" / "final.pt").is_file()
    assert made_by_rlrnn(tmp_path / "run")


# -------------------------------------------- a refused run leaves nothing behind


def refuse(*args, **kwargs):
    raise UsageError("a check refused the run")


@pytest.mark.parametrize("where", ["new", "nested", "empty"])
def test_a_run_refused_before_it_writes_removes_what_rlrnn_made(tmp_path, monkeypatch, where):
    monkeypatch.setattr("rlrnn.runs.trainer.build_agent", refuse)  # after the folder is claimed
    run = {"new": tmp_path / "run", "nested": tmp_path / "a" / "b" / "run"}.get(where)
    if run is None:
        run = tmp_path / "run"
        run.mkdir()  # the user's empty folder: it stays, empty
    with pytest.raises(UsageError, match="a check refused the run"):
        train(TINY, run, show_progress=False)
    assert sorted(p.name for p in tmp_path.rglob("*")) == (["run"] if where == "empty" else [])


def test_a_refused_run_keeps_the_users_files_and_a_started_one_keeps_its_own(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("my notes")
    with pytest.raises(UsageError), writing_run(mine):
        raise UsageError("refused")
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
    started = tmp_path / "started"
    with pytest.raises(KeyboardInterrupt), writing_run(started):
        (started / "config.json").write_text("{}")  # it wrote something: a run, kept
        raise KeyboardInterrupt
    assert sorted(p.name for p in started.iterdir()) == [MARKER, "config.json"]


def test_a_compare_run_refused_in_its_worker_leaves_no_folder(tmp_path, monkeypatch):
    monkeypatch.setattr("rlrnn.runs.trainer.build_agent", refuse)
    spec = plan_runs(["mlp"], [0], "PositionOnlyCartPole-v1", tmp_path / "out", {"device": "cpu"})
    (tmp_path / "out").mkdir()
    with pytest.raises(UsageError, match="a check refused the run"):
        run_one(spec[0], episodes=2)
    assert list((tmp_path / "out").iterdir()) == []  # nor runs/, which rlrnn made for it


def test_a_cli_run_folder_refused_after_it_was_made_is_removed(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("rlrnn.runs.trainer.build_agent", refuse)
    args = ["train", "--run-dir", str(tmp_path / "runs" / "new"), "--total-timesteps", "2048"]
    assert main([*args, "--quiet"]) == 2
    assert "a check refused the run" in one_error_line(capsys)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["study.log", "trials"])
def test_tune_refuses_a_link_in_its_report_folder_and_writes_nothing_through_it(
    tmp_path, name, capsys
):
    out, victim = tmp_path / "out", tmp_path / "victim"
    out.mkdir()
    if name == "trials":
        victim.mkdir()
    else:
        victim.write_text("")
    (out / name).symlink_to(victim, target_is_directory=victim.is_dir())
    tune = ["tune", "--trials", "1", "--total-timesteps", "4096", "--quiet", "--out", str(out)]
    assert main(tune) == 2
    assert f"{out / name} is a symbolic link" in one_error_line(capsys)
    assert (list(victim.iterdir()) == []) if victim.is_dir() else victim.read_text() == ""


def test_clearing_walks_a_tb_nested_thousands_deep_without_a_traceback(tmp_path):
    run = tmp_path / "run"
    folders = [run / "tb"]
    for _ in range(1100):  # deeper than Python's recursion limit, within the path length limit
        folders.append(folders[-1] / "d")
    run.mkdir()
    for folder in folders:  # one at a time: makedirs recurses too
        folder.mkdir()
    event = folders[-1] / "events.out.tfevents.1.vm.1.0"
    event.write_text("")
    try:
        assert event in rlrnn_files(run)
    finally:  # removed here, deepest first: a recursive rmtree (pytest's) would fail on it
        event.unlink()
        for folder in reversed(folders):
            folder.rmdir()

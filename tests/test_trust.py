"""No code runs from a file: an env id a checkpoint or run folder names is made only if already
registered, through every command that opens one; naming it yourself with --env trusts it.

The crafted files name ``evilenv:Evil-v0``, and ``evilenv.py`` lies beside them (and on the
path): importing it would leave a marker file. The refusals are in the bad-input sweep; here are
the commands that go on without the file's env, and the control showing that the marker does
appear when the user trusts the module."""

import json
import shutil
from pathlib import Path

import pytest
import torch

from envs.batched import is_registered
from rlrnn.errors import UsageError
from rlrnn.runs.checkpoint import env_id_from_file
from rlrnn.tools.compare.compare import plan_runs

EVIL = "evilenv:Evil-v0"


def crafted(source: Path, target: Path, env_id: str = EVIL) -> None:
    payload = torch.load(source, weights_only=True)
    payload["config"] = json.dumps({**json.loads(payload["config"]), "env_id": env_id})
    torch.save(payload, target)


@pytest.fixture(scope="module")
def shared(tmp_path_factory, tiny_run) -> Path:
    """A stranger's files: a crafted checkpoint, a comparison whose checkpoints name the env,
    and the module they name."""
    folder = tmp_path_factory.mktemp("shared")
    (folder / "evilenv.py").write_text(
        "import pathlib\n"
        "import gymnasium as gym\n"
        "pathlib.Path(__file__).with_name('IMPORTED').write_text('code from a file ran')\n"
        "gym.register('Evil-v0', entry_point='envs.cartpole:PositionOnlyCartPoleEnv')\n"
    )
    run = tiny_run("lstm")
    crafted(run / "best.pt", folder / "evil.pt")
    # A comparison's run whose config.json is right but whose checkpoints name the module.
    out = folder / "report"
    spec = plan_runs(["lstm"], [0], "PositionOnlyCartPole-v1", out, {"device": "cpu"})[0]
    shutil.copytree(run, spec.run_dir)
    (spec.run_dir / "config.json").write_text(spec.config.to_json())  # what compare would ask
    for name in ("best.pt", "final.pt"):
        crafted(spec.run_dir / name, spec.run_dir / name)
    return folder


def command(entry: str, *args: str, cwd: Path) -> dict:
    return {"entry": entry, "args": list(args), "cwd": str(cwd), "path": [str(cwd)]}


def test_commands_that_do_not_need_the_files_env_go_on_without_importing_it(shared, forked):
    report = forked(
        [
            command(
                "evaluate", "evil.pt", "--env", "PositionOnlyCartPole-v1", "--episodes", "3",
                "--json", cwd=shared,
            ),
            command(
                "rlrnn", "probe", "evil.pt", "--env", "PositionOnlyCartPole-v1", "--episodes",
                "4", "--out", str(shared / "probe.png"), cwd=shared,
            ),
            command(  # re-uses the run and evaluates its checkpoints on the command's env
                "rlrnn", "compare", "--agents", "lstm", "--seeds", "1", "--episodes", "3",
                "--out", "report", "--quiet", cwd=shared,
            ),
        ]
    )  # fmt: skip
    for result in report["results"]:
        assert result["returncode"] == 0, result["stderr"]
    evaluation = json.loads(report["results"][0]["stdout"])
    assert evaluation["trained_env_id"] == EVIL and evaluation["env_id"] != EVIL
    assert (shared / "report" / "results.csv").is_file()
    assert not (shared / "IMPORTED").exists()


def test_naming_the_module_yourself_trusts_it(shared, forked, tmp_path):
    """The control: the marker does appear once the user names the module on the command line,
    so its absence elsewhere means the module never ran."""
    folder = tmp_path / "copy"
    shutil.copytree(shared, folder, ignore=shutil.ignore_patterns("report", "IMPORTED"))
    (result,) = forked(
        [command("evaluate", "evil.pt", "--env", EVIL, "--episodes", "2", cwd=folder)]
    )["results"]
    assert result["returncode"] == 0, result["stderr"]
    assert (folder / "IMPORTED").exists()


def test_is_registered_refuses_a_module_not_imported_yet():
    assert is_registered("PositionOnlyCartPole-v1") and is_registered("CartPole-v1")
    assert is_registered("envs.cartpole:PositionOnlyCartPole-v1")  # imported already
    assert not is_registered("this:CartPole-v1")  # installed, not imported: it would run
    assert not is_registered(EVIL) and not is_registered("NoSuchEnv-v0")
    with pytest.raises(UsageError, match=f"pass env_id {EVIL}"):
        env_id_from_file(EVIL, Path("x.pt"))
